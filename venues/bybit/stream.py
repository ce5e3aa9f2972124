"""Bybit v5 public spot stream: one socket subscribed to orderbook.N, publicTrade and kline
topics, kept alive with Bybit's own `{"op": "ping"}` every 20 s. Book snapshots and deltas
are checked in `u` order; a delta that skips one drops the topic's book and resubscribes it,
so the next thing it yields for that symbol is a fresh snapshot. Closed klines become Bars,
each exactly once and in order: a socket quiet past `silence_s` is reopened, and the bars it
missed are fetched over REST (market.binance_ws.BarContinuity, as for Binance's stream)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import (
    AsyncGenerator,
    Callable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, Unpack

from pydantic import BaseModel, ConfigDict
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from market.binance_ws import Backfill, Bar, BarContinuity, BarGap, BarRefused, Reconnected
from market.orderbook import BookSnapshot, DepthUpdate
from market.reconnect import DROPPED, FeedStats, Reconnect, ReconnectingStream, drop_reason

log = logging.getLogger(__name__)

STREAM_URL = "wss://stream.bybit.com/v5/public/spot"
PING_INTERVAL_S = 20.0  # Bybit drops a public connection that sends nothing for longer
_INTERVALS = {"1": "1m", "3": "3m", "5": "5m", "15": "15m", "30": "30m", "60": "1h", "D": "1d"}


class PublicTrade(BaseModel):
    """One trade on Bybit; `buyer_is_maker` when the taker sold, as for Binance's trades."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    trade_id: str
    price: float
    quantity: float
    trade_time: int
    buyer_is_maker: bool
    trade_count: int = 1


BybitEvent = BookSnapshot | DepthUpdate | PublicTrade | Bar | BarGap | BarRefused | Reconnected


@dataclass(slots=True)
class BybitStreamStats(FeedStats):
    """Bybit's counters besides every feed's: the books' sequence checks."""

    book_gaps: int = 0
    resubscribes: int = 0
    dropped_deltas: int = 0  # deltas that arrived while a book waited for its new snapshot


def book_topic(symbol: str, depth: int = 200) -> str:
    return f"orderbook.{depth}.{symbol}"


def kline_topic(symbol: str, interval: str = "1") -> str:
    return f"kline.{interval}.{symbol}"


def trade_topic(symbol: str) -> str:
    return f"publicTrade.{symbol}"


class BybitStream(ReconnectingStream[BybitEvent]):
    """`async with BybitStream(topics) as s: async for event in s`: validated events until
    the consumer stops, reconnecting with backoff (a `Reconnected` tells books to rebuild)."""

    stats: BybitStreamStats

    def __init__(
        self,
        topics: Sequence[str],
        *,
        url: str = STREAM_URL,
        ping_interval_s: float = PING_INTERVAL_S,
        backfill: Backfill | None = None,
        resume_after: Mapping[tuple[str, str], int] | None = None,
        clock_ms: Callable[[], int] | None = None,
        **reconnect: Unpack[Reconnect],
    ) -> None:
        if not topics:
            raise ValueError("at least one topic is needed, e.g. orderbook.200.BTCUSDT")
        super().__init__(url, BybitStreamStats(), **reconnect)
        self.topics = list(topics)
        self._ping_s = ping_interval_s
        self._bars = BarContinuity(self.stats, backfill, clock_ms, resume_after)
        self._last_u: dict[str, int] = {}  # book topic -> last update id applied
        self._awaiting: set[str] = set()  # book topics resubscribed, waiting for a snapshot

    async def _run(self) -> AsyncGenerator[BybitEvent, None]:
        reason: str | None = None
        while True:
            try:
                async with connect(self.url, ping_interval=None, max_size=2**22) as ws:
                    self._socket = ws
                    self.stats.connections += 1
                    self._last_u.clear()
                    self._awaiting.clear()
                    await ws.send(json.dumps({"op": "subscribe", "args": self.topics}))
                    if reason is not None:
                        yield Reconnected(planned=False, reason=reason, attempts=self._failures)
                        for event in await self._bars.catch_up():
                            yield event
                    pinger = asyncio.create_task(self._ping(ws))
                    try:
                        while True:
                            raw = await self._next_message(ws)
                            self._failures = 0
                            for event in await self._handle(ws, raw):
                                yield event
                    finally:
                        pinger.cancel()
            except DROPPED as exc:
                reason = drop_reason(exc)
            await self._back_off(reason)

    async def _ping(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(self._ping_s)
                await ws.send(json.dumps({"op": "ping"}))

    async def _handle(self, ws: ClientConnection, raw: str | bytes) -> list[BybitEvent]:
        self.stats.messages += 1
        try:
            message: dict[str, Any] = json.loads(raw)
            topic = str(message.get("topic", ""))
            data = message.get("data")
            if topic.startswith("orderbook."):
                return await self._book(ws, topic, message)
            if topic.startswith("publicTrade.") and isinstance(data, list):
                return [_trade(row) for row in data]
            if topic.startswith("kline.") and isinstance(data, list):
                closed = [_bar(topic.rsplit(".", 1)[1], row) for row in data if row.get("confirm")]
                return await self._closed(closed)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.stats.malformed += 1
            log.warning("malformed Bybit message (%s): %.200r", exc, raw)
            return []
        self.stats.ignored += 1  # subscribe acks, pongs, tickers
        return []

    async def _closed(self, closed: list[Bar]) -> list[BybitEvent]:
        """Closed bars through the continuity check: duplicates dropped, holes backfilled."""
        events: list[BybitEvent] = []
        for bar in closed:
            events.extend(await self._bars.closed_bar(bar))
        delivered = [e for e in events if isinstance(e, Bar)]
        self.stats.bars += len(delivered)
        self.stats.backfilled_bars += sum(b.source == "backfill" for b in delivered)
        return events

    async def _book(
        self, ws: ClientConnection, topic: str, message: dict[str, Any]
    ) -> list[BybitEvent]:
        data, ts = message["data"], int(message["ts"])
        u = int(data["u"])
        levels = {
            side: [(float(p), float(q)) for p, q in data.get(side, [])] for side in ("b", "a")
        }
        if message.get("type") == "snapshot":
            self._awaiting.discard(topic)
            self._last_u[topic] = u
            return [
                BookSnapshot(
                    symbol=data["s"],
                    last_update_id=u,
                    event_time=ts,
                    bids=levels["b"],
                    asks=levels["a"],
                )
            ]
        last = self._last_u.get(topic)
        if topic in self._awaiting or last is None:
            self.stats.dropped_deltas += 1
            return []
        if u <= last:
            return []
        if u != last + 1:
            self.stats.book_gaps += 1
            log.warning("%s: update %d after %d, resubscribing for a new snapshot", topic, u, last)
            await self._resubscribe(ws, topic)
            return []
        self._last_u[topic] = u
        return [
            DepthUpdate(
                E=ts,
                s=data["s"],
                U=u,
                u=u,
                b=levels["b"],
                a=levels["a"],  # type: ignore[call-arg]
            )
        ]

    async def _resubscribe(self, ws: ClientConnection, topic: str) -> None:
        self._awaiting.add(topic)
        self.stats.resubscribes += 1
        await ws.send(json.dumps({"op": "unsubscribe", "args": [topic]}))
        await ws.send(json.dumps({"op": "subscribe", "args": [topic]}))


def _trade(row: dict[str, Any]) -> PublicTrade:
    return PublicTrade(
        symbol=row["s"],
        trade_id=str(row["i"]),
        price=float(row["p"]),
        quantity=float(row["v"]),
        trade_time=int(row["T"]),
        buyer_is_maker=row["S"] == "Sell",
    )


def _bar(symbol: str, row: dict[str, Any]) -> Bar:
    interval = _INTERVALS.get(str(row["interval"]), str(row["interval"]))
    start = int(row["start"])
    return Bar(
        symbol=symbol,
        interval=interval,
        open_time=start,
        open=float(row["open"]),
        high=float(row["high"]),
        low=float(row["low"]),
        close=float(row["close"]),
        volume=float(row["volume"]),
        close_time=int(row["end"]),
        quote_volume=float(row["turnover"]),
    )
