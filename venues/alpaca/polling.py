"""`agent-trade --feed alpaca`: closed stock bars polled from Alpaca's REST bars endpoint, one
request after each bar closes. We poll rather than stream: no Alpaca stream session is captured
that tests could replay, and a bar-close strategy loses nothing to a bar a few seconds late.

Time is Alpaca's: its clock says which bars have closed and when the market next opens, and
between two questions it advances by this machine's monotonic clock. The gate judges a bar's age
by the same time, so a machine whose wall clock drifts neither trades stale bars nor vetoes
fresh ones. Every closed bar Alpaca has is delivered, pre- and post-market included: the
runner's calendar (runtime.hours) decides what may fill, the same way as in a backtest."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from market.binance_ws import Bar, MarketClosed, Reconnected, StreamEvent, bars_from_frame
from market.models import INTERVAL_MS
from venues.alpaca.data import AlpacaData, AlpacaError, Clock

log = logging.getLogger(__name__)
MAX_FAILURES = 5  # polls in a row; with the backoff about half a minute of Alpaca unreachable


def _ms(clock_time: object) -> int:
    return int(clock_time.value // 1_000_000)  # type: ignore[attr-defined]


def last_closed_open(now_ms: int, step_ms: int, settle_ms: int) -> int:
    """The open time of the newest bar that closed at least `settle_ms` before `now_ms`."""
    return (now_ms - settle_ms) // step_ms * step_ms - step_ms


class AlpacaClockTime:
    """Alpaca's clock, advanced locally between the times it is asked."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._at: tuple[int, float] | None = None

    def sync(self, clock: Clock) -> int:
        now = _ms(clock.time)
        self._at = (now, self._monotonic())
        return now

    def now_ms(self) -> int:
        if self._at is None:
            raise RuntimeError("Alpaca's clock has not been asked yet")
        at, since = self._at
        return at + int((self._monotonic() - since) * 1000)


class AlpacaBarPoller:
    """An async stream of closed bars, oldest first, after `after_ms` (the last bar the loop
    holds); a new run starts at the newest closed bar."""

    def __init__(
        self,
        client: AlpacaData,
        symbols: Sequence[str],
        interval: str,
        *,
        after_ms: int | None,
        settle_s: float,
        max_wait_s: float,
        time: AlpacaClockTime | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.symbols = list(symbols)
        self.interval = interval
        self.step = INTERVAL_MS[interval]
        self.after = after_ms
        self.settle_ms = int(settle_s * 1000)
        self.max_wait_s = max_wait_s
        self.time = time or AlpacaClockTime()
        self._sleep = sleep

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        """A failed poll (Alpaca down, a 5xx) is retried after a backoff, and the loop is told
        (a Reconnected event, counted in its status); MAX_FAILURES in a row end the feed with
        the last error. Refused keys (exit 2) end it at once. While the market is shut, each
        poll ends with a MarketClosed event: nothing is due, but the loop is alive."""
        failures = 0
        while True:
            try:
                clock = await asyncio.to_thread(self.client.clock)
                now = self.time.sync(clock)
                newest = last_closed_open(now, self.step, self.settle_ms)
                if self.after is None:  # a new run starts at the first answer's newest bar
                    self.after = newest - self.step
                first = self.after + self.step
                bars = await asyncio.to_thread(self._closed, first, newest)
            except AlpacaError as exc:
                failures += 1
                if failures >= MAX_FAILURES:
                    raise
                log.warning("Alpaca poll failed (%d in a row): %s", failures, exc)
                await self._sleep(min(2.0**failures, self.max_wait_s))
                continue
            if failures:
                yield Reconnected(planned=False, reason="a poll failed", attempts=failures)
                failures = 0
            for bar in bars:
                yield bar
            self.after = max(self.after, newest)
            wait = self._wait_s(clock, now, newest)
            if not clock.is_open:  # the loop's heartbeat while it waits for the open
                yield MarketClosed(
                    next_open_ms=_ms(clock.next_open), poll_every_ms=int(wait * 1000)
                )
            await self._sleep(wait)

    def _closed(self, first: int, last: int) -> list[Bar]:
        """Each symbol's bars opening in [first, last] (a request each), by open time."""
        if first > last:
            return []
        bars = [
            bar
            for symbol in self.symbols
            for bar in bars_from_frame(
                self.client.klines(symbol, self.interval, first, last),
                symbol,
                self.interval,
                "backfill",
            )
        ]
        return sorted(bars, key=lambda b: b.open_time)

    def _wait_s(self, clock: Clock, now: int, newest: int) -> float:
        """Until the next bar has closed and settled; while the market is shut, until the
        first bar after the next open (Alpaca's own answer), never longer than `max_wait_s`."""
        due = newest + 2 * self.step + self.settle_ms
        if not clock.is_open:
            due = max(due, _ms(clock.next_open) + self.step + self.settle_ms)
        return min(max(due - now, 0) / 1000, self.max_wait_s)
