"""Binance as the live loop sees it, on 127.0.0.1: REST klines of synthetic 1m BTCUSDT bars up to
this minute (what `--feed binance` loads at start and backfills from) and a combined kline stream
the test writes to, message by message, so a test plays exactly the bars an exchange could send.

The bars are synthetic (a smooth price the test shapes per minute); what is real is the wire
layout, Binance's 12-field kline array and its kline event, as in tests/fixtures/binance."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from loopback_binance import LoopbackBinance
from websockets.asyncio.server import Server, ServerConnection, serve

MINUTE = 60_000


def last_closed_minute(now_ms: int | None = None) -> int:
    """The open time of the newest bar closed by this machine's clock."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return now - now % MINUTE - MINUTE


class LiveBinance(LoopbackBinance):
    """REST klines of `price(open_time)` bars up to `horizon_ms` (default: now), with per-minute
    overrides (a zero or NaN row); `skew_ms` sets the exchange's clock against this machine's
    (negative: the exchange is behind). Like Binance, klines include the bar still forming by
    the exchange's clock, with the values it has so far (`forming`)."""

    def __init__(self, price: Callable[[int], float]) -> None:
        super().__init__()
        self.price = price
        self.horizon_ms: int | None = None
        self.overrides: dict[int, dict[str, Any]] = {}
        self.skew_ms = 0
        self.forming: dict[str, Any] | None = None  # None: no forming bar is served

    def exchange_now_ms(self) -> int:
        return int(time.time() * 1000) + self.skew_ms

    def row(self, open_time: int, **over: Any) -> list[Any]:
        """Binance's kline array for the bar opening at `open_time`."""
        o, c = self.price(open_time), self.price(open_time + MINUTE)
        bar = {"o": o, "h": max(o, c) * 1.0005, "l": min(o, c) * 0.9995, "c": c, "v": 12.5}
        bar |= over
        return [
            open_time,
            *(str(bar[k]) for k in "ohlcv"),
            open_time + MINUTE - 1,
            str(12.5 * float(bar["c"])),
            100,
            "6.0",
            str(6.0 * float(bar["c"])),
            "0",
        ]

    def kline_message(self, open_time: int, *, closed: bool = True, **over: Any) -> str:
        """The combined-stream kline event of that bar."""
        a = self.row(open_time, **over)
        k = {"t": a[0], "T": a[6], "s": "BTCUSDT", "i": "1m", "f": 1, "L": 2, "o": a[1]}
        k |= {"c": a[4], "h": a[2], "l": a[3], "v": a[5], "n": a[8], "x": closed}
        k |= {"q": a[7], "V": a[9], "Q": a[10], "B": "0"}
        data = {"e": "kline", "E": self.exchange_now_ms(), "s": "BTCUSDT", "k": k}
        return json.dumps({"stream": "btcusdt@kline_1m", "data": data})

    def _route(self, path: str, params: dict[str, str]) -> tuple[int, object]:
        if path == "/api/v3/time":
            return 200, {"serverTime": self.exchange_now_ms()}
        return super()._route(path, params)

    def _klines(self, params: dict[str, str]) -> tuple[int, object]:
        start, end = int(params["startTime"]), int(params.get("endTime", 2**62))
        now = self.exchange_now_ms()
        horizon = now if self.horizon_ms is None else self.horizon_ms
        first = -(-start // MINUTE) * MINUTE
        rows = []
        for t in range(first, end + 1, MINUTE):
            if t + MINUTE - 1 < horizon:
                rows.append(self.row(t, **self.overrides.get(t, {})))
            elif self.forming is not None and t <= now < t + MINUTE:
                rows.append(self.row(t, **self.forming))
        return 200, rows[: int(params.get("limit", 500))]


class KlineSocket:
    """A combined-stream WebSocket on its own thread; `send` writes to every open connection."""

    def __init__(self) -> None:
        self.connections = 0
        self._clients: set[ServerConnection] = set()
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def start() -> Server:
            return await serve(self._serve, "127.0.0.1", 0)

        self._server = asyncio.run_coroutine_threadsafe(start(), self._loop).result()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{next(iter(self._server.sockets)).getsockname()[1]}"

    async def _serve(self, ws: ServerConnection) -> None:
        self.connections += 1
        self._clients.add(ws)
        self._ready.set()
        try:
            await ws.wait_closed()
        finally:
            self._clients.discard(ws)

    def wait_connected(self, timeout_s: float = 60) -> None:
        assert self._ready.wait(timeout_s), "the loop never opened the stream"

    def send(self, *messages: str) -> None:
        async def deliver() -> None:
            for ws in list(self._clients):
                for message in messages:
                    await ws.send(message)

        asyncio.run_coroutine_threadsafe(deliver(), self._loop).result()

    def reset(self) -> None:
        """Forget the last connection: the next `wait_connected` waits for a new one."""
        self._ready.clear()

    def stop(self) -> None:
        self._server.close()
        asyncio.run_coroutine_threadsafe(self._server.wait_closed(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
