"""A Binance combined-stream WebSocket server on 127.0.0.1 that replays 1m bars as kline events
(the bundled real sample, or a user's own file), so the live loop runs offline through the real
stream client.

With the bundled sample it also streams BTCUSDT diff depth (`btcusdt@depth` and
`btcusdt@depth@100ms`, the same messages: the capture is a 1000 ms stream) from the one real spot
diff-depth capture bundled, re-anchored onto the replayed bars as market.depth_replay explains,
and answers `GET /api/v3/depth?symbol=BTCUSDT&limit=N` on the same port with the matching
snapshot, so a client syncs by Binance's documented procedure. There is no real ETHUSDT depth
capture, so the replay has no ETHUSDT book, and a user's own file has none either: their depth
streams and snapshots are refused, not invented."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

from market.binance_ws import Backfill, Bar, bars_from_frame
from market.depth_replay import DEPTH_STEP_MS, DepthReplay
from market.models import INTERVAL_MS
from market.sample import (
    DEPTH_SAMPLE_SYMBOLS,
    SAMPLE_INTERVAL,
    SAMPLE_SYMBOLS,
    load_depth_sample,
    load_sample,
)

log = logging.getLogger(__name__)

CATCH_UP_BATCH = 32
"""Depth messages already due (`--speed max`, or a replay behind its clock) go out this many
to an event-loop round, not one: a 30-bar replay of the sample plays ~20,000 of them, and a
round each was a quarter of the command's CPU. The stream client reads them in order all the
same, and ahead of its clock the replay still waits for each one's time."""

DEPTH_PATH = "/api/v3/depth"


def _num(value: float) -> str:
    return f"{value:.8f}"  # Binance sends decimals as 8-place strings


def kline_payload(
    symbol: str,
    row: dict[str, Any],
    *,
    closed: bool,
    event_time: int,
    interval: str = SAMPLE_INTERVAL,
) -> dict[str, Any]:
    """One Binance `kline` event for a sample row (trade ids are unknown to the sample: -1)."""
    return {
        "e": "kline",
        "E": event_time,
        "s": symbol,
        "k": {
            "t": int(row["open_time"]),
            "T": int(row["close_time"]),
            "s": symbol,
            "i": interval,
            "f": -1,
            "L": -1,
            "o": _num(row["open"]),
            "c": _num(row["close"]),
            "h": _num(row["high"]),
            "l": _num(row["low"]),
            "v": _num(row["volume"]),
            "n": int(row["trades"]),
            "x": closed,
            "q": _num(row["quote_volume"]),
            "V": _num(row["taker_buy_volume"]),
            "Q": _num(row["taker_buy_quote_volume"]),
            "B": "0",
        },
    }


def partial_row(row: dict[str, Any], fraction: float) -> dict[str, Any]:
    """A synthetic in-progress state of a bar (`x: false`), interpolated from open to close and
    bounded by the final high/low; the sample has no real intrabar data."""
    o, c = row["open"], row["close"]
    price = o + (c - o) * fraction
    return {
        **row,
        "close": price,
        "high": max(o, price),
        "low": min(o, price),
        "volume": row["volume"] * fraction,
        "quote_volume": row["quote_volume"] * fraction,
        "trades": int(row["trades"] * fraction),
        "taker_buy_volume": row["taker_buy_volume"] * fraction,
        "taker_buy_quote_volume": row["taker_buy_quote_volume"] * fraction,
    }


def frame_backfill(
    frames: Mapping[str, pd.DataFrame], bar_interval: str = SAMPLE_INTERVAL
) -> Backfill:
    """The offline counterpart of REST backfill: the replayed bars with open_time in [start,
    end]."""

    def backfill(symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar]:
        if symbol not in frames or interval != bar_interval:
            return []
        frame = frames[symbol]
        window = frame[(frame["open_time"] >= start_ms) & (frame["open_time"] <= end_ms)]
        return bars_from_frame(window, symbol, interval, "backfill")

    return backfill


def sample_backfill(symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar]:
    """Backfill from the bundled sample."""
    return frame_backfill({s: load_sample(s) for s in SAMPLE_SYMBOLS})(
        symbol, interval, start_ms, end_ms
    )


class ReplayServer:
    """Streams `<symbol>@kline_1m` for the sample symbols, and BTCUSDT's diff depth, on one
    market timeline that starts when the first client connects and moves on whether or not
    anyone listens, like the real market. A depth message due at a bar's close goes first.

    speed is a multiplier over real time: one 1m bar every 60/speed seconds (inf: no waiting).
    drop_after aborts every connection after that many messages (a test of reconnection);
    stall_after sends a connection nothing more after that many, yet keeps it open (a test of
    the client's watchdog)."""

    def __init__(
        self,
        *,
        speed: float = 1.0,
        start_index: int = 0,
        start_time_ms: int | None = None,
        stop_index: int | None = None,
        partial_updates: int = 0,
        drop_after: int | None = None,
        stall_after: int | None = None,
        frames: Mapping[str, pd.DataFrame] | None = None,
        interval: str = SAMPLE_INTERVAL,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        own = frames is not None
        frames = frames or {s: load_sample(s) for s in SAMPLE_SYMBOLS}
        self._rows = {s: f.to_dict("records") for s, f in frames.items()}
        self._close_times = {s: f["close_time"].reset_index(drop=True) for s, f in frames.items()}
        self._first = next(iter(frames))
        times = frames[self._first]["open_time"].reset_index(drop=True)
        if start_time_ms is not None:
            start_index = int(times.searchsorted(start_time_ms))
        self.start_index = start_index
        self.stop_index = len(times) if stop_index is None else min(stop_index, len(times))
        if not 0 <= self.start_index < self.stop_index:
            raise ValueError(
                f"start {self.start_index} must lie before stop {self.stop_index} in the sample"
            )
        self.interval = interval  # a user's file may hold other bars than the sample's 1m
        self._bar_s = INTERVAL_MS[interval] / 1000
        self.bar_interval_s = 0.0 if math.isinf(speed) else self._bar_s / speed
        self.partial_updates = partial_updates
        self.drop_after = drop_after
        self.stall_after = stall_after
        self.position = self.start_index  # index of the next bar to close
        self.depth = {
            s: DepthReplay(s, load_depth_sample(s), partial(self._price_at, s))
            for s in ([] if own else DEPTH_SAMPLE_SYMBOLS)
        }
        self._streams = {f"{s.lower()}@kline_{interval}" for s in frames} | {
            f"{s.lower()}@depth{speed}" for s in self.depth for speed in ("", "@100ms")
        }
        self.connections = 0
        self.dropped = 0
        self.stalled = 0
        self.finished = asyncio.Event()
        self._host, self._port = host, port
        self._server: Server | None = None
        self._clock: asyncio.Task[None] | None = None
        self._subscribers: dict[ServerConnection, frozenset[str]] = {}
        self._sent: dict[ServerConnection, int] = {}
        self._silent: set[ServerConnection] = set()

    async def __aenter__(self) -> ReplayServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The base URL to hand the client (it appends /stream?streams=...)."""
        if self._server is None:
            raise RuntimeError("the replay server is not started")
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://{self._host}:{port}"

    @property
    def http_url(self) -> str:
        """The REST base URL on the same port (`GET /api/v3/depth` snapshots)."""
        return "http" + self.url.removeprefix("ws")

    def open_time(self, symbol: str, index: int) -> int:
        return int(self._rows[symbol][index]["open_time"])

    def market_now_ms(self) -> int:
        """The replay's clock: just after the last bar it has closed (its first open before)."""
        if self.position == self.start_index:
            return self.open_time(self._first, self.start_index)
        return int(self._rows[self._first][self.position - 1]["close_time"]) + 1

    def _price_at(self, symbol: str, time_ms: int) -> float:
        """The close of the last bar closed before `time_ms` (the first open before any)."""
        closed = int(self._close_times[symbol].searchsorted(time_ms, side="left"))
        rows = self._rows[symbol]
        return float(rows[closed - 1]["close"] if closed else rows[0]["open"])

    async def start(self) -> ReplayServer:
        self._server = await serve(
            self._handler,
            self._host,
            self._port,
            process_request=self._check_request,
            compression=None,  # on this machine deflate costs CPU and saves nothing
        )
        return self

    async def stop(self) -> None:
        """End the replay now: connections are aborted, not closed with a handshake that a
        client which stopped reading would make wait for its timeout."""
        if self._clock is not None:
            self._clock.cancel()
            await asyncio.gather(self._clock, return_exceptions=True)
        self.drop_connections()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop_connections(self) -> int:
        """Abort every open connection without a close frame, as a network failure does."""
        victims = list(self._subscribers)
        for connection in victims:
            self._abort(connection)
        return len(victims)

    def send_raw(self, message: str | bytes, streams: Sequence[str] | None = None) -> None:
        """Push one message as is (a real capture, garbage) to every client, or to those
        subscribed to one of `streams`."""
        targets = [
            c for c, subs in self._subscribers.items() if streams is None or subs & set(streams)
        ]
        broadcast(targets, message)

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path == DEPTH_PATH:
            return self._depth_snapshot(connection, request.path)
        streams = _requested_streams(request.path)
        if not streams:
            return connection.respond(400, "expected /stream?streams=<symbol>@kline_1m[/...]")
        unknown = sorted(set(streams) - self._streams)
        if unknown:
            return connection.respond(
                400, f"the replay serves only {sorted(self._streams)}, not {unknown}"
            )
        return None

    def _depth_snapshot(self, connection: ServerConnection, path: str) -> Response:
        """Binance's answer to `GET /api/v3/depth`, or its error body for a bad request."""
        query = parse_qs(urlsplit(path).query)
        symbol = query.get("symbol", [""])[-1]
        limit = query.get("limit", ["100"])[-1]
        if symbol not in self.depth:
            have = ", ".join(self.depth)
            body = {"msg": f"the replay has no depth capture for {symbol!r}, only for {have}"}
            return _json(connection, 404, body)
        if not limit.isdigit() or not 1 <= int(limit) <= 5000:
            return _json(connection, 400, {"code": -1100, "msg": f"Illegal limit {limit!r}."})
        return _json(connection, 200, self.depth[symbol].snapshot(int(limit)))

    async def _handler(self, connection: ServerConnection) -> None:
        self._subscribers[connection] = frozenset(_requested_streams(connection.request.path))
        self._sent[connection] = 0
        self.connections += 1
        if self._clock is None:
            self._clock = asyncio.create_task(self._play())
        try:
            async for _ in connection:  # Binance ignores what clients send on these URLs
                pass
        except Exception:  # an aborted connection ends here; nothing to clean up but state
            pass
        finally:
            self._subscribers.pop(connection, None)
            self._sent.pop(connection, None)
            self._silent.discard(connection)

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        start_ms = self.open_time(self._first, self.start_index)
        steps = self.partial_updates + 1
        for index in range(self.start_index, self.stop_index):
            rows = {s: r[index] for s, r in self._rows.items()}
            for step in range(1, steps + 1):
                tick = index - self.start_index + step / steps
                await self._play_depth(loop, t0, start_ms, tick * self._bar_s * 1000)
                await _sleep_until(loop, t0 + tick * self.bar_interval_s)
                closed = step == steps
                for symbol, row in rows.items():
                    if closed:
                        payload = kline_payload(
                            symbol,
                            row,
                            closed=True,
                            event_time=int(row["close_time"]) + 1,
                            interval=self.interval,
                        )
                    else:
                        part = partial_row(row, step / steps)
                        event_time = int(row["open_time"] + self._bar_s * 1000 * step / steps)
                        payload = kline_payload(
                            symbol,
                            part,
                            closed=False,
                            event_time=event_time,
                            interval=self.interval,
                        )
                    self._publish(f"{symbol.lower()}@kline_{self.interval}", payload)
            self.position = index + 1
        self.finished.set()
        log.info("replay finished at bar %d", self.stop_index)

    async def _play_depth(
        self, loop: asyncio.AbstractEventLoop, t0: float, start_ms: int, until_ms: float
    ) -> None:
        """Every depth message due by `until_ms` of market time after the replay's start."""
        for symbol, replay in self.depth.items():
            streams = [f"{symbol.lower()}@depth", f"{symbol.lower()}@depth@100ms"]
            while (offset := (replay.sent + 1) * DEPTH_STEP_MS) <= until_ms:
                due = t0 + offset / (self._bar_s * 1000) * self.bar_interval_s
                if due > loop.time() or replay.sent % CATCH_UP_BATCH == 0:
                    await _sleep_until(loop, due)
                payload = replay.next(start_ms + offset)
                for stream in streams:
                    self._publish(stream, payload)

    def _publish(self, stream: str, payload: dict[str, Any]) -> None:
        targets = [
            c for c, subs in self._subscribers.items() if stream in subs and c not in self._silent
        ]
        if not targets:
            return
        broadcast(targets, json.dumps({"stream": stream, "data": payload}, separators=(",", ":")))
        for connection in targets:
            sent = self._sent[connection] = self._sent.get(connection, 0) + 1
            if self.drop_after is not None and sent >= self.drop_after:
                self._abort(connection)
            elif self.stall_after is not None and sent >= self.stall_after:
                self._silent.add(connection)
                self.stalled += 1

    def _abort(self, connection: ServerConnection) -> None:
        self._subscribers.pop(connection, None)
        self._sent.pop(connection, None)
        self.dropped += 1
        connection.transport.abort()


def _requested_streams(path: str) -> list[str]:
    url = urlsplit(path)
    if url.path.rstrip("/") != "/stream":
        return []
    joined = parse_qs(url.query).get("streams", [""])[-1]
    return [s for s in joined.split("/") if s]


def _json(connection: ServerConnection, status: int, body: object) -> Response:
    response = connection.respond(status, json.dumps(body, separators=(",", ":")))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json;charset=UTF-8"
    return response


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    delay = when - loop.time()
    await asyncio.sleep(max(0.0, delay))
