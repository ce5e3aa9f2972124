"""A Bybit v5 spot exchange on 127.0.0.1 replaying real captures: REST (instruments-info, the
real 1m bars of 2022-12-13 as /v5/market/kline, or synthetic bars near now, the recorded book,
its clock) with scripted retCodes, and
the public WebSocket replaying the recorded BTCUSDT session, which answers a resubscribe with a
snapshot of its own book as it stands, as Bybit does."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from loopback_thread import serving_thread
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

FIXTURES = Path(__file__).parent / "fixtures" / "bybit"
INSTRUMENTS = FIXTURES / "rest_spot_instruments-info_full_cryptofeed_2026-08-09.json"
SPOT_SESSION = FIXTURES / "ws_spot_BTCUSDT_session_cryptofeed_2026-08-09.jsonl"
CROSS = FIXTURES / "cross_venue"
DAY_2022_12_13_MS = 1_670_889_600_000
MINUTE = 60_000


@cache
def lean_bars(name: str) -> list[list[str]]:
    """A LEAN trade-bar file (ms since midnight, OHLCV) as Bybit kline rows, oldest first."""
    rows = []
    with (CROSS / name).open() as handle:
        for t, o, h, low, c, v in csv.reader(handle):
            start = DAY_2022_12_13_MS + int(t)
            rows.append([str(start), o, h, low, c, v, str(float(c) * float(v))])
    return rows


def session_frames() -> list[dict[str, Any]]:
    """The recorded messages of the spot session (acks left out: the server makes its own)."""
    frames = []
    for line in SPOT_SESSION.read_text().splitlines():
        record = json.loads(line)
        if record["t"] == "recv":
            message = json.loads(record["data"])
            if "topic" in message:
                frames.append(message)
    return frames


def envelope(result: object, code: int = 0, msg: str = "OK") -> dict[str, Any]:
    return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": 0}


@dataclass
class Fault:
    """The next matching GET answers with this instead: a retCode, or an HTTP status."""

    path: str
    ret_code: int = 0
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class LoopbackServer:
    """An HTTP server on 127.0.0.1, served from a thread while the `with` block runs."""

    def _listen(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = serving_thread(self._server)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def kline_message(row: list[str]) -> str:
    """The confirm kline Bybit streams for a bar (a kline row), sent as its minute closes."""
    start = int(row[0])
    data = {
        "start": start, "end": start + 59_999, "interval": "1", "open": row[1], "high": row[2],
        "low": row[3], "close": row[4], "volume": row[5], "turnover": row[6], "confirm": True,
        "timestamp": start + 60_000,
    }  # fmt: skip
    message = {"topic": "kline.1.BTCUSDT", "type": "snapshot", "ts": start + 60_000, "data": [data]}
    return json.dumps(message)


class BybitRest(LoopbackServer):
    """Bybit's public REST; its clock (/v5/market/time) runs `skew_ms` ahead of this machine's."""

    def __init__(self, kline_file: str = "bybit_spot_BTCUSDT_1m_trade_2022-12-13_lean.csv") -> None:
        self.kline_file = kline_file
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.skew_ms = 0
        self._listen(self._handler())

    def exchange_now_ms(self) -> int:
        return int(time.time() * 1000) + self.skew_ms

    def kline_rows(self, start: int, end: int) -> list[list[str]]:
        """The kline rows opening in [start, end], oldest first."""
        return [r for r in lean_bars(self.kline_file) if start <= int(r[0]) <= end]

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, str], object]:
        self.requests.append((path, params))
        fault = next((f for f in self.faults if f.path == path), None)
        if fault is not None:
            self.faults.remove(fault)
            if fault.status != 200:
                return fault.status, fault.headers, "<html>busy</html>"
            return 200, fault.headers, envelope({}, fault.ret_code, f"scripted {fault.ret_code}")
        if path == "/v5/market/time":
            now_ns = self.exchange_now_ms() * 1_000_000
            return 200, {}, envelope({"timeSecond": str(now_ns // 10**9), "timeNano": str(now_ns)})
        if path == "/v5/market/instruments-info":
            body = json.loads(INSTRUMENTS.read_text())
            if "symbol" in params:
                body["result"]["list"] = [
                    e for e in body["result"]["list"] if e["symbol"] == params["symbol"]
                ]
            return 200, {}, body
        if path == "/v5/market/kline":
            if params["symbol"] != "BTCUSDT":
                return 200, {}, envelope({}, 10001, "params error: symbol invalid")
            start, end, limit = int(params["start"]), int(params["end"]), int(params["limit"])
            rows = self.kline_rows(start, end)
            page = rows[-limit:][::-1]  # the newest `limit`, newest first, as Bybit pages
            return 200, {}, envelope({"category": "spot", "symbol": "BTCUSDT", "list": page})
        return 200, {}, envelope({}, 10001, f"unknown path {path}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        rest = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                status, headers, body = rest.answer(url.path, params)
                payload = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


class LiveBybit(BybitRest):
    """Bybit near now: klines of synthetic 1m BTCUSDT bars of `price(open_time)`, closed by
    the exchange's clock and up to `horizon_ms` when set; `row` is a bar as a kline row."""

    def __init__(self, price: Callable[[int], float]) -> None:
        super().__init__()
        self.price = price
        self.horizon_ms: int | None = None

    def row(self, open_time: int) -> list[str]:
        o, c = self.price(open_time), self.price(open_time + MINUTE)
        h, low = max(o, c) * 1.0005, min(o, c) * 0.9995
        return [str(open_time), *(str(x) for x in (o, h, low, c, 12.5, 12.5 * c))]

    def kline_rows(self, start: int, end: int) -> list[list[str]]:
        now = self.exchange_now_ms()
        horizon = now if self.horizon_ms is None else min(now, self.horizon_ms)
        first = -(-start // MINUTE) * MINUTE
        return [self.row(t) for t in range(first, end + 1, MINUTE) if t + MINUTE - 1 < horizon]


class BybitSocket:
    """Plays the recorded session to each subscriber. `skip_deltas` are book deltas (by their
    position in the recording) left unsent but still applied to the server's own book, so the
    client sees a real gap; a resubscribe gets a snapshot of that book."""

    def __init__(
        self,
        skip_deltas: frozenset[int] = frozenset(),
        drop_after: int | None = None,
        stamp: Callable[[int], int] | None = None,
        pace_s: float = 0.0,
    ) -> None:
        self.frames = session_frames()
        self.stamp = stamp  # recorded `ts` -> the `ts` sent (a rebase onto another clock)
        self.pace_s = pace_s  # wall time between frames (0: as fast as the client reads)
        self.skip_deltas = skip_deltas
        self.drop_after = drop_after  # the first connection closes after this many frames
        self.connections = 0
        self.received: list[dict[str, Any]] = []
        self.snapshots_sent = 0
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/v5/public/spot"

    async def __aenter__(self) -> BybitSocket:
        self._server = await serve(self._play, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _play(self, ws: ServerConnection) -> None:
        self.connections += 1
        bids: dict[str, str] = {}
        asks: dict[str, str] = {}
        state = {"u": 0, "ts": 0}
        lock = asyncio.Lock()
        subscribed = asyncio.Event()

        async def snapshot(topic: str) -> None:
            self.snapshots_sent += 1
            data = {
                "s": topic.rsplit(".", 1)[1],
                "b": sorted(([p, q] for p, q in bids.items()), key=lambda x: -float(x[0])),
                "a": sorted(([p, q] for p, q in asks.items()), key=lambda x: float(x[0])),
                "u": state["u"],
                "seq": 0,
            }
            message = {"topic": topic, "ts": state["ts"], "type": "snapshot", "data": data}
            await ws.send(json.dumps(message))

        async def listen() -> None:
            async for raw in ws:
                op = json.loads(raw)
                self.received.append(op)
                if op.get("op") == "ping":
                    await ws.send(json.dumps({"success": True, "ret_msg": "pong", "op": "ping"}))
                    continue
                await ws.send(json.dumps({"success": True, "ret_msg": "", "op": op["op"]}))
                if op["op"] == "subscribe":
                    if subscribed.is_set():
                        async with lock:
                            for topic in op["args"]:
                                if topic.startswith("orderbook."):
                                    await snapshot(topic)
                    subscribed.set()

        listener = asyncio.create_task(listen())
        try:
            await subscribed.wait()
            await self._frames(ws, lock, bids, asks, state)
            await listener
        except ConnectionClosed:
            pass  # the client went away: the replay is over for it
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await listener

    async def _frames(
        self,
        ws: ServerConnection,
        lock: asyncio.Lock,
        bids: dict[str, str],
        asks: dict[str, str],
        state: dict[str, int],
    ) -> None:
        """The recording in order, applied to the server's book as it goes out."""
        drop = self.drop_after if self.connections == 1 else None
        delta = 0
        for sent, message in enumerate(self.frames):
            if sent == drop:
                await ws.close()
                return
            if self.stamp is not None:
                message = {**message, "ts": self.stamp(int(message["ts"]))}
            async with lock:
                data = message["data"]
                if message["topic"].startswith("orderbook."):
                    if message["type"] == "snapshot":
                        bids.clear()
                        asks.clear()
                    for side, book in (("b", bids), ("a", asks)):
                        for price, qty in data[side]:
                            if float(qty) == 0:
                                book.pop(price, None)
                            else:
                                book[price] = qty
                    state["u"], state["ts"] = data["u"], message["ts"]
                    if message["type"] == "delta":
                        delta += 1
                        if delta in self.skip_deltas:
                            continue
                await ws.send(json.dumps(message))
            await asyncio.sleep(self.pace_s)


class SocketThread:
    """A BybitSocket on its own event loop in a thread, for a CLI run as a subprocess."""

    def __init__(self, socket: BybitSocket) -> None:
        self.socket = socket
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> BybitSocket:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.socket.__aenter__(), self._loop).result()
        return self.socket

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.socket.__aexit__(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
