"""Binance spot market streams over one combined WebSocket: validated events, every closed bar
exactly once and in order (gaps backfilled over REST), reconnection with backoff and jitter."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal, Protocol, Unpack

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from core.errors import UserError
from market.models import INTERVAL_MS, Candle, iso_ms
from market.orderbook import DepthUpdate
from market.reconnect import (
    DROPPED,
    FeedStats,
    Reconnect,
    ReconnectingStream,
    drop_reason,
)
from market.reconnect import StreamSilent as StreamSilent
from market.reconnect import StreamUnavailable as StreamUnavailable
from market.reconnect import backoff_delay as backoff_delay
from market.validation import bar_problem

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

STREAM_URL = "wss://stream.binance.com:9443"
DEFAULT_MAX_CONNECTION_AGE_S = 23 * 3600.0  # Binance closes every connection at 24 h
# How far past the clock a closed bar's close_time may lie: what is left of the skew between
# the exchange and a clock set by it (or by NTP). Later than that, the bar is not final yet (a
# forming bar flagged closed) or misdated: refused, so the final bar for its minute still counts.
EARLY_TOLERANCE_MS = 5_000
_PROTOCOL = ConfigDict(frozen=True, populate_by_name=True, allow_inf_nan=False)


class StreamRefused(UserError):
    """The server refused the handshake with a 4xx that retrying cannot cure (a bad stream)."""


class Bar(Candle):
    """A closed bar of one symbol and interval; `source` tells how it reached the consumer
    ("flat": the loop made it at the last close for a minute the feed never delivered)."""

    symbol: str
    interval: str
    source: Literal["stream", "backfill", "trades", "flat"] = "stream"


class Kline(BaseModel):
    """The `k` object of a kline event; `closed` (x) is true once per bar, when it is final."""

    model_config = _PROTOCOL

    open_time: int = Field(alias="t")
    close_time: int = Field(alias="T")
    symbol: str = Field(alias="s")
    interval: str = Field(alias="i")
    first_trade_id: int = Field(-1, alias="f")
    last_trade_id: int = Field(-1, alias="L")
    open: float = Field(alias="o")
    close: float = Field(alias="c")
    high: float = Field(alias="h")
    low: float = Field(alias="l")
    volume: float = Field(alias="v")
    trades: int = Field(alias="n")
    closed: bool = Field(alias="x")
    quote_volume: float = Field(alias="q")
    taker_buy_volume: float = Field(alias="V")
    taker_buy_quote_volume: float = Field(alias="Q")


class KlineEvent(BaseModel):
    model_config = _PROTOCOL

    event_type: Literal["kline"] = Field("kline", alias="e")
    event_time: int = Field(alias="E")
    symbol: str = Field(alias="s")
    kline: Kline = Field(alias="k")

    def bar(self) -> Bar:
        k = self.kline
        return Bar(
            symbol=self.symbol,
            interval=k.interval,
            open_time=k.open_time,
            open=k.open,
            high=k.high,
            low=k.low,
            close=k.close,
            volume=k.volume,
            close_time=k.close_time,
            quote_volume=k.quote_volume,
            trades=k.trades,
            taker_buy_volume=k.taker_buy_volume,
            taker_buy_quote_volume=k.taker_buy_quote_volume,
        )


class Trade(BaseModel):
    """One trade; `buyer_is_maker` true means the seller was the taker."""

    model_config = _PROTOCOL

    event_type: Literal["trade"] = Field("trade", alias="e")
    event_time: int = Field(alias="E")
    symbol: str = Field(alias="s")
    trade_id: int = Field(alias="t")
    price: float = Field(alias="p")
    quantity: float = Field(alias="q")
    trade_time: int = Field(alias="T")
    buyer_is_maker: bool = Field(alias="m")

    @property
    def trade_count(self) -> int:
        return 1


class AggTrade(BaseModel):
    """Trades of one taker order at one price, aggregated by Binance."""

    model_config = _PROTOCOL

    event_type: Literal["aggTrade"] = Field("aggTrade", alias="e")
    event_time: int = Field(alias="E")
    symbol: str = Field(alias="s")
    agg_trade_id: int = Field(alias="a")
    price: float = Field(alias="p")
    quantity: float = Field(alias="q")
    first_trade_id: int = Field(alias="f")
    last_trade_id: int = Field(alias="l")
    trade_time: int = Field(alias="T")
    buyer_is_maker: bool = Field(alias="m")

    @property
    def trade_count(self) -> int:
        return self.last_trade_id - self.first_trade_id + 1


Payload = Annotated[KlineEvent | Trade | AggTrade | DepthUpdate, Field(discriminator="event_type")]


class CombinedMessage(BaseModel):
    """The `/stream?streams=` envelope around every payload."""

    model_config = ConfigDict(frozen=True)

    stream: str
    data: Payload


class Reconnected(BaseModel):
    """The stream was reopened; anything stateful on the old connection (a book) must resync."""

    model_config = ConfigDict(frozen=True)

    planned: bool  # the age limit, not a failure
    reason: str  # why the previous connection ended
    attempts: int  # failures since the last message (the drop itself counts as one)


class BarGap(BaseModel):
    """Closed bars that are missing and could not be backfilled: reported, never invented."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    interval: str
    missing_open_times: list[int]
    reason: str


class BarRefused(BaseModel):
    """A closed bar that cannot be real (NaN, a price of 0, impossible OHLC): dropped, never
    stepped or stored, and said, so the loop counts it like a gap."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    interval: str
    open_time: int
    reason: str


class MarketClosed(BaseModel):
    """A poll found the market shut: no bar is due before `next_open_ms`. A feed that waits for
    the open says so on every poll, so the loop can show it is alive (a heartbeat)."""

    model_config = ConfigDict(frozen=True)

    next_open_ms: int
    poll_every_ms: int  # the longest wait before the next heartbeat


StreamEvent = (
    Bar | Trade | AggTrade | DepthUpdate | Reconnected | BarGap | BarRefused | MarketClosed
)
Backfill = Callable[[str, str, int, int], Sequence[Bar] | Awaitable[Sequence[Bar]]]


@dataclass(slots=True)
class StreamStats(FeedStats):
    """Binance's counters besides every feed's: reconnects, and klines seen still open."""

    reconnects: int = 0
    planned_reconnects: int = 0
    open_klines: int = 0


def parse_message(raw: str | bytes) -> CombinedMessage:
    """Validate one combined-stream message; raises pydantic.ValidationError."""
    return CombinedMessage.model_validate_json(raw)


def stream_url(base_url: str, streams: Sequence[str]) -> str:
    if not streams:
        raise ValueError("at least one stream is needed, e.g. btcusdt@kline_1m")
    return f"{base_url.rstrip('/')}/stream?streams={'/'.join(streams)}"


def depth_stream(symbol: str) -> str:
    """The diff-depth stream of `symbol` at Binance's fastest pace, for `market.books.Books`."""
    return f"{symbol.lower()}@depth@100ms"


def bars_from_frame(
    frame: pd.DataFrame, symbol: str, interval: str, source: Literal["stream", "backfill"]
) -> list[Bar]:
    """CANDLE_COLUMNS rows (the REST client's and the store's layout) as Bars."""
    return [
        Bar(symbol=symbol, interval=interval, source=source, **row)
        for row in frame.to_dict("records")
    ]


class KlineClient(Protocol):
    def klines(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> pd.DataFrame: ...


def rest_backfill(client: KlineClient) -> Backfill:
    """A backfill that asks a venue's REST client (Binance's, Bybit's) for closed klines."""

    def backfill(symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Bar]:
        return bars_from_frame(
            client.klines(symbol, interval, start_ms, end_ms), symbol, interval, "backfill"
        )

    return backfill


class BinanceStream(ReconnectingStream[StreamEvent]):
    """A combined stream that survives disconnects: `async with BinanceStream(...) as s:
    async for event in s` yields validated events until the consumer stops."""

    stats: StreamStats

    def __init__(
        self,
        streams: Sequence[str],
        *,
        base_url: str = STREAM_URL,
        backfill: Backfill | None = None,
        resume_after: Mapping[tuple[str, str], int] | None = None,
        max_connection_age_s: float = DEFAULT_MAX_CONNECTION_AGE_S,
        open_timeout_s: float = 10.0,
        ping_interval_s: float | None = 20.0,
        clock_ms: Callable[[], int] | None = None,
        **reconnect: Unpack[Reconnect],
    ) -> None:
        super().__init__(stream_url(base_url, streams), StreamStats(), **reconnect)
        # The market's now, on the backfill's clock: with it, a reconnect first fetches the bars
        # that closed meanwhile; without, they wait for the stream's next bar to show the gap.
        self._bars = BarContinuity(self.stats, backfill, clock_ms, resume_after)
        self._max_age = max_connection_age_s
        self._open_timeout = open_timeout_s
        self._ping_interval = ping_interval_s

    async def _run(self) -> AsyncGenerator[StreamEvent, None]:
        previous: Reconnected | None = None  # why the last connection ended
        while True:
            try:
                async with connect(
                    self.url,
                    open_timeout=self._open_timeout,
                    ping_interval=self._ping_interval,
                    max_size=2**22,
                ) as ws:
                    self._socket = ws
                    self.stats.connections += 1
                    if previous is not None:
                        self.stats.reconnects += 1
                        self.stats.planned_reconnects += previous.planned
                        log.info("reconnected to %s (%s)", self.url, previous.reason)
                        yield previous.model_copy(update={"attempts": self._failures})
                        for event in await self._bars.catch_up():
                            yield event
                    async with aclosing(self._receive(ws)) as events:
                        async for event in events:
                            yield event
                previous = Reconnected(planned=True, reason="connection age limit", attempts=0)
                continue
            except InvalidStatus as exc:
                status = exc.response.status_code
                if 400 <= status < 500 and status not in (418, 429):
                    raise StreamRefused(f"{self.url} refused the stream: HTTP {status}") from exc
                reason = f"handshake refused: HTTP {status}"
            except DROPPED as exc:
                reason = drop_reason(exc)
            previous = Reconnected(planned=False, reason=reason, attempts=0)
            await self._back_off(reason)

    async def _receive(self, ws: ClientConnection) -> AsyncIterator[StreamEvent]:
        """Events of one connection until it closes or reaches the planned age limit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_age
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.info(
                    "%s: connection is %.0f s old, reconnecting as planned", self.url, self._max_age
                )
                return
            raw = await self._next_message(ws, remaining)
            if raw is None:
                continue
            self._failures = 0
            for event in await self._handle(raw):
                if isinstance(event, Bar):  # counted when delivered, not when fetched
                    self.stats.bars += 1
                    self.stats.backfilled_bars += event.source == "backfill"
                yield event

    async def _handle(self, raw: str | bytes) -> list[StreamEvent]:
        self.stats.messages += 1
        try:
            payload = parse_message(raw).data
        except ValidationError as exc:
            if any(err["type"] == "union_tag_invalid" for err in exc.errors()):
                self.stats.ignored += 1
                log.debug("ignored a message of an unhandled type: %.200r", raw)
            else:
                self.stats.malformed += 1
                log.warning("malformed stream message (%d errors): %.200r", exc.error_count(), raw)
            return []
        if not isinstance(payload, KlineEvent):
            return [payload]
        if not payload.kline.closed:
            self.stats.open_klines += 1
            return []
        return await self._bars.closed_bar(payload.bar())


class BarCounters(Protocol):
    """The counters a stream keeps of its closed bars."""

    bars: int
    duplicate_bars: int
    backfilled_bars: int
    backfill_failures: int
    missing_bars: int
    refused_bars: int


class BarContinuity:
    """Every closed bar of a stream exactly once and in order, whatever the socket does: a bar
    already delivered is dropped, a hole before a bar is backfilled (or reported as a BarGap),
    and after a reconnect the bars that closed meanwhile are fetched at once (with a clock). A
    bar no market could print, or (with a clock) one that closes after the clock, streamed or
    fetched, is refused (a BarRefused) and never delivered; a refused streamed bar leaves a hole
    the next bar fills (its final version, or the backfill's)."""

    def __init__(
        self,
        stats: BarCounters,
        backfill: Backfill | None,
        clock_ms: Callable[[], int] | None,
        resume_after: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self.stats = stats
        self._backfill = backfill
        self._clock = clock_ms
        self.last_open: dict[tuple[str, str], int] = dict(resume_after or {})

    async def closed_bar(self, bar: Bar) -> list[StreamEvent]:
        """Drop what was already delivered; fill what was missed since the last bar."""
        key = (bar.symbol, bar.interval)
        last = self.last_open.get(key)
        if last is not None and bar.open_time <= last:
            self.stats.duplicate_bars += 1
            return []
        refused = self._refused(bar)
        if refused is not None:
            return [refused]
        events: list[StreamEvent] = []
        step = INTERVAL_MS.get(bar.interval)
        if last is not None and step is not None and bar.open_time > last + step:
            expected = _expected(bar.symbol, last + step, bar.open_time - 1, step)
            if expected:
                events.extend(await self._fill(bar.symbol, bar.interval, expected))
        events.append(bar)
        self.last_open[key] = bar.open_time
        return events

    async def catch_up(self) -> list[StreamEvent]:
        """After a reconnect, the closed bars missed meanwhile, fetched before the stream
        resumes, so a quiet market does not hold them back until its next bar. Only the run
        that follows the last delivered bar is taken: a later hole is filled, or reported,
        when the stream's next bar shows it."""
        if self._backfill is None or self._clock is None:
            return []
        now = self._clock()
        events: list[StreamEvent] = []
        for (symbol, interval), last in list(self.last_open.items()):
            step = INTERVAL_MS.get(interval)
            if step is None or last + step > now - step:
                continue
            try:
                rows = await self._fetch(symbol, interval, last + step, now - step)
            except Exception as exc:  # REST down too: the stream's next bar shows the gap
                self.stats.backfill_failures += 1
                log.warning("%s %s: catch-up after a reconnect failed: %s", symbol, interval, exc)
                continue
            got = {b.open_time: b for b in rows if b.symbol == symbol and b.interval == interval}
            while (last := last + step) in got and got[last].close_time < now:
                bar = got[last].model_copy(update={"source": "backfill"})
                events.append(self._refused(bar) or bar)
                self.last_open[(symbol, interval)] = last
        bars = sum(isinstance(e, Bar) for e in events)
        if bars:
            log.info("caught up %d closed bar(s) missed while reconnecting", bars)
        self.stats.bars += bars
        self.stats.backfilled_bars += bars
        return events

    def _refused(self, bar: Bar) -> BarRefused | None:
        """A BarRefused, logged and counted, for a bar that cannot be real; None for a bar that
        can be."""
        problem = bar_problem(bar) or self._early(bar)
        if problem is None:
            return None
        self.stats.refused_bars += 1
        log.warning(
            "%s %s: refused the %s bar of %s: %s",
            bar.symbol,
            bar.interval,
            bar.source,
            iso_ms(bar.open_time),
            problem,
        )
        return BarRefused(
            symbol=bar.symbol, interval=bar.interval, open_time=bar.open_time, reason=problem
        )

    def _early(self, bar: Bar) -> str | None:
        """Why a bar cannot have closed yet by the clock, or None."""
        if self._clock is None:
            return None
        ahead = bar.close_time - self._clock()
        if ahead <= EARLY_TOLERANCE_MS:
            return None
        return f"it closes at {iso_ms(bar.close_time + 1)} UTC, {ahead / 1000:,.0f} s from now"

    async def _fetch(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> Sequence[Bar]:
        assert self._backfill is not None
        if inspect.iscoroutinefunction(self._backfill):
            return await self._backfill(symbol, interval, start_ms, end_ms)
        return await asyncio.to_thread(self._backfill, symbol, interval, start_ms, end_ms)

    async def _fill(self, symbol: str, interval: str, expected: Sequence[int]) -> list[StreamEvent]:
        got: dict[int, Bar] = {}
        refused: dict[int, BarRefused] = {}
        reason = "no backfill source"
        if self._backfill is not None:
            try:
                rows = await self._fetch(symbol, interval, expected[0], expected[-1])
                fetched = {
                    b.open_time: b for b in rows if (b.symbol, b.interval) == (symbol, interval)
                }
                got = {
                    t: fetched[t].model_copy(update={"source": "backfill"})
                    for t in expected
                    if t in fetched
                }
                refused = {t: self._refused(bar) for t, bar in got.items()}
                refused = {t: r for t, r in refused.items() if r is not None}
                got = {t: bar for t, bar in got.items() if t not in refused}
                reason = "the backfill source does not have them"
            except Exception as exc:  # REST down: report the gap, keep streaming
                self.stats.backfill_failures += 1
                reason = f"backfill failed: {exc}"
                log.warning(
                    "%s %s: backfill of %d bar(s) failed: %s", symbol, interval, len(expected), exc
                )
        events: list[StreamEvent] = [(got.get(t) or refused[t]) for t in sorted({*got, *refused})]
        missing = [t for t in expected if t not in got and t not in refused]
        if missing:
            self.stats.missing_bars += len(missing)
            log.warning(
                "%s %s: %d closed bar(s) missing (%s)", symbol, interval, len(missing), reason
            )
            events.append(
                BarGap(symbol=symbol, interval=interval, missing_open_times=missing, reason=reason)
            )
        return events


def _expected(symbol: str, start_ms: int, end_ms: int, step: int) -> Sequence[int]:
    """The bar opens in [start_ms, end_ms] a stream owes: every step for a coin, which trades
    around the clock; for a US stock only those in the exchange's regular hours, on the grid
    of the bar after them, so its nights, weekends and holidays are no gap."""
    from market.instruments import is_stock

    if not is_stock(symbol):
        return range(start_ms, end_ms + 1, step)
    from market.calendar import xnys  # exchange_calendars: only a stock's stream loads it

    return xnys().expected(start_ms, end_ms, step, (end_ms + 1) % step).tolist()


class TradeLike(Protocol):
    """What bar building needs from a trade; Trade and AggTrade both fit."""

    @property
    def price(self) -> float: ...
    @property
    def quantity(self) -> float: ...
    @property
    def trade_time(self) -> int: ...
    @property
    def buyer_is_maker(self) -> bool: ...
    @property
    def trade_count(self) -> int: ...


def interval_label(interval_ms: int) -> str:
    """`10s`, `2m`, `4h`, `1d`: the largest whole unit."""
    for unit, ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if interval_ms % ms == 0:
            return f"{interval_ms // ms}{unit}"
    return f"{interval_ms}ms"


class TradeBarAggregator:
    """Bars of any fixed interval built from trades, for intervals Binance does not stream.
    Windows are epoch-aligned like Binance's; a window without trades is a flat bar at the last
    price with zero volume (as Binance's klines are), unless `fill_empty` is off."""

    def __init__(self, symbol: str, interval_ms: int, *, fill_empty: bool = True) -> None:
        if interval_ms <= 0:
            raise ValueError(f"interval_ms must be positive, got {interval_ms}")
        self.symbol = symbol
        self.interval_ms = interval_ms
        self.interval = interval_label(interval_ms)
        self.fill_empty = fill_empty
        self.late_trades = 0
        self._open: int | None = None  # the current window's open time
        self._last_price = 0.0
        self._reset()

    def add(self, trade: TradeLike) -> list[Bar]:
        """Account one trade (in time order); returns the bars its time closed."""
        t = trade.trade_time
        window = t - t % self.interval_ms
        if self._open is None:
            self._open = window
        elif window < self._open:
            self.late_trades += 1
            return []
        closed = self._advance(window) if window > self._open else []
        price, qty = trade.price, trade.quantity
        if self._n == 0:
            self._o = self._h = self._l = price
        else:
            self._h = max(self._h, price)
            self._l = min(self._l, price)
        self._c = self._last_price = price
        self._n += trade.trade_count
        self._v += qty
        self._qv += price * qty
        if not trade.buyer_is_maker:
            self._tbv += qty
            self._tbqv += price * qty
        return closed

    def close_until(self, time_ms: int) -> list[Bar]:
        """Bars whose window ended before `time_ms`, for a clock tick with no trade in it."""
        if self._open is None:
            return []
        return self._advance(time_ms - time_ms % self.interval_ms)

    @property
    def current(self) -> Bar | None:
        """The bar still forming (None before the first trade or in an empty window)."""
        return self._bar() if self._open is not None and self._n else None

    def _advance(self, window: int) -> list[Bar]:
        assert self._open is not None
        bars: list[Bar] = []
        while self._open < window:
            if self._n or self.fill_empty:
                bars.append(self._bar())
            self._open += self.interval_ms
            self._reset()
        return bars

    def _reset(self) -> None:
        p = self._last_price
        self._o = self._h = self._l = self._c = p
        self._v = self._qv = self._tbv = self._tbqv = 0.0
        self._n = 0

    def _bar(self) -> Bar:
        assert self._open is not None
        return Bar(
            symbol=self.symbol,
            interval=self.interval,
            source="trades",
            open_time=self._open,
            open=self._o,
            high=self._h,
            low=self._l,
            close=self._c,
            volume=self._v,
            close_time=self._open + self.interval_ms - 1,
            quote_volume=self._qv,
            trades=self._n,
            taker_buy_volume=self._tbv,
            taker_buy_quote_volume=self._tbqv,
        )
