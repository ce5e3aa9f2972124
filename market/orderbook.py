"""A local L2 order book kept in step with Binance's diff-depth stream by the documented spot
procedure (snapshot + buffered diffs, resync on any gap), so spread and fill estimates are true."""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

Level = tuple[float, float]
Side = Literal["buy", "sell"]
DEFAULT_MAX_BUFFER = 10_000  # events held while waiting for a usable snapshot


class DepthUpdate(BaseModel):
    """One `depthUpdate` diff event: absolute quantities per price, 0 removes the level."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, allow_inf_nan=False)

    event_type: Literal["depthUpdate"] = Field("depthUpdate", alias="e")
    event_time: int = Field(alias="E")
    symbol: str = Field(alias="s")
    first_update_id: int = Field(alias="U")
    final_update_id: int = Field(alias="u")
    bids: list[Level] = Field(alias="b")
    asks: list[Level] = Field(alias="a")


class Snapshot(Protocol):
    """What a depth snapshot must carry; `market.binance_rest.DepthSnapshot` is one."""

    @property
    def symbol(self) -> str: ...
    @property
    def last_update_id(self) -> int: ...
    @property
    def bids(self) -> Sequence[Level]: ...
    @property
    def asks(self) -> Sequence[Level]: ...


SnapshotSource = Callable[[], Snapshot]


class BookSnapshot(BaseModel):
    """A whole book at `last_update_id`: fetched over REST, or pushed by a stream that sends
    snapshots itself (Bybit), where it replaces the book at once."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    last_update_id: int
    event_time: int
    bids: list[Level]
    asks: list[Level]


class FillEstimate(BaseModel):
    """What a market order of `requested` would get by walking the book as it stands now."""

    model_config = ConfigDict(frozen=True)

    side: Side
    requested: float
    filled: float
    average_price: float | None
    worst_price: float | None
    levels: int
    complete: bool  # False: the book is too thin (or empty) for the whole quantity
    impact_bps: float | None  # average price versus the best price, positive = worse
    cost_bps: float | None  # average price versus the mid (half the spread + impact), + = worse

    @property
    def shortfall(self) -> float:
        return self.requested - self.filled


class BookStats(BaseModel):
    """Counters that tell whether the book can be trusted and how often it had to rebuild."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    synced: bool
    last_update_id: int | None
    bid_levels: int
    ask_levels: int
    updates: int
    resyncs: int
    snapshots: int
    snapshot_failures: int
    snapshots_too_old: int
    stale_events: int
    overflowed_events: int
    foreign_events: int


class OrderBook:
    """One symbol's book: prices (float) map to quantities, with one sorted price list per side
    so the best level is O(1) and walking the book needs no sort. With no snapshot source it
    never fetches: whoever feeds it checks `wants_snapshot` and calls `offer`."""

    def __init__(
        self,
        symbol: str,
        snapshot_source: SnapshotSource | None,
        *,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        self.symbol = symbol
        self._source = snapshot_source
        self._bids: dict[float, float] = {}
        self._asks: dict[float, float] = {}
        self._bid_prices: list[float] = []  # ascending; best bid last
        self._ask_prices: list[float] = []  # ascending; best ask first
        self._synced = False
        self._last_id = -1
        self._buffer: deque[DepthUpdate] = deque()
        self._max_buffer = max_buffer
        self._pending: Snapshot | None = None
        self.updates = 0
        self.resyncs = 0
        self.snapshots = 0
        self.snapshot_failures = 0
        self.snapshots_too_old = 0
        self.stale_events = 0
        self.overflowed_events = 0
        self.foreign_events = 0

    # -- feeding -------------------------------------------------------------------------

    def apply(self, event: DepthUpdate) -> bool:
        """Feed one diff event in stream order; True when the book is in sync afterwards."""
        if event.symbol != self.symbol:
            self.foreign_events += 1
            return self._synced
        if self._synced:
            last = self._last_id
            if event.final_update_id <= last:
                self.stale_events += 1
                return True
            if event.first_update_id <= last + 1:
                _update_side(self._bids, self._bid_prices, event.bids)
                _update_side(self._asks, self._ask_prices, event.asks)
                self._last_id = event.final_update_id
                self.updates += 1
                return True
            self._lose_sync(f"gap: event U={event.first_update_id} after book id {last}")
        if len(self._buffer) >= self._max_buffer:
            self._buffer.popleft()
            self.overflowed_events += 1
        self._buffer.append(event)
        return self._drain()

    def offer(self, snapshot: Snapshot) -> bool:
        """Hand over a snapshot fetched elsewhere (off the event loop, say) when
        `wants_snapshot`; True when the book is in sync afterwards."""
        self.snapshots += 1
        self._pending = self._checked(snapshot)
        return self._drain()

    def replace(self, snapshot: Snapshot) -> None:
        """Install a snapshot the stream itself pushed: it is the whole book, whatever was
        buffered or held before (Bybit sends one on subscribe and after a service restart)."""
        self.snapshots += 1
        self._buffer.clear()
        self._pending = None
        self._install(snapshot)

    def invalidate(self, reason: str = "invalidated") -> None:
        """Discard the book (after a reconnect, say); the next event starts a resync."""
        if self._synced:
            self._lose_sync(reason)
        self._pending = None

    # -- reading -------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced

    @property
    def wants_snapshot(self) -> bool:
        """Events wait in the buffer and no snapshot is in hand to anchor them."""
        return not self._synced and self._pending is None and bool(self._buffer)

    @property
    def last_update_id(self) -> int | None:
        return self._last_id if self._synced else None

    @property
    def best_bid(self) -> Level | None:
        if not self._bid_prices:
            return None
        price = self._bid_prices[-1]
        return price, self._bids[price]

    @property
    def best_ask(self) -> Level | None:
        if not self._ask_prices:
            return None
        price = self._ask_prices[0]
        return price, self._asks[price]

    @property
    def mid(self) -> float | None:
        if not self._bid_prices or not self._ask_prices:
            return None
        return (self._bid_prices[-1] + self._ask_prices[0]) / 2

    @property
    def spread(self) -> float | None:
        """Best ask minus best bid; negative when the book is crossed."""
        if not self._bid_prices or not self._ask_prices:
            return None
        return self._ask_prices[0] - self._bid_prices[-1]

    @property
    def spread_bps(self) -> float | None:
        """Spread relative to the mid, in basis points (what the risk gate's limit reads)."""
        spread, mid = self.spread, self.mid
        if spread is None or not mid:
            return None
        return spread / mid * 10_000

    def bids(self, depth: int | None = None) -> list[Level]:
        """Bid levels, best (highest) first."""
        prices = self._bid_prices[::-1] if depth is None else self._bid_prices[: -depth - 1 : -1]
        return [(p, self._bids[p]) for p in prices]

    def asks(self, depth: int | None = None) -> list[Level]:
        """Ask levels, best (lowest) first."""
        prices = self._ask_prices if depth is None else self._ask_prices[:depth]
        return [(p, self._asks[p]) for p in prices]

    def notional_within(self, bps: float) -> tuple[float, float] | None:
        """Quote currency resting within `bps` of the mid: (bids at or above mid·(1 − bps),
        asks at or below mid·(1 + bps)); None while a side is empty."""
        mid = self.mid
        if mid is None:
            return None
        low, high = mid * (1 - bps / 10_000), mid * (1 + bps / 10_000)
        bids = self._bid_prices[bisect_left(self._bid_prices, low) :]
        asks = self._ask_prices[: bisect_right(self._ask_prices, high)]
        return sum(p * self._bids[p] for p in bids), sum(p * self._asks[p] for p in asks)

    def average_fill_price(self, side: Side, quantity: float) -> FillEstimate:
        """Walk the opposite side (asks for a buy, bids for a sell) until `quantity` is filled."""
        if not quantity > 0:
            raise ValueError(f"quantity must be positive, got {quantity}")
        if side == "buy":
            book, prices = self._asks, iter(self._ask_prices)
        elif side == "sell":
            book, prices = self._bids, reversed(self._bid_prices)
        else:
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        remaining, cost, levels = quantity, 0.0, 0
        best = worst = None
        for price in prices:
            take = min(remaining, book[price])
            if best is None:
                best = price
            cost += take * price
            remaining -= take
            worst = price
            levels += 1
            if remaining <= 0:
                break
        filled = quantity - max(remaining, 0.0)
        average = cost / filled if filled > 0 else None
        sign = 1.0 if side == "buy" else -1.0
        mid = self.mid
        impact = cost = None
        if average is not None and best:
            impact = sign * (average - best) / best * 10_000
        if average is not None and mid:
            cost = sign * (average - mid) / mid * 10_000
        return FillEstimate(
            side=side,
            requested=quantity,
            filled=filled,
            average_price=average,
            worst_price=worst,
            levels=levels,
            complete=remaining <= 0,
            impact_bps=impact,
            cost_bps=cost,
        )

    def stats(self) -> BookStats:
        return BookStats(
            symbol=self.symbol,
            synced=self._synced,
            last_update_id=self.last_update_id,
            bid_levels=len(self._bids),
            ask_levels=len(self._asks),
            updates=self.updates,
            resyncs=self.resyncs,
            snapshots=self.snapshots,
            snapshot_failures=self.snapshot_failures,
            snapshots_too_old=self.snapshots_too_old,
            stale_events=self.stale_events,
            overflowed_events=self.overflowed_events,
            foreign_events=self.foreign_events,
        )

    # -- syncing -------------------------------------------------------------------------

    def _lose_sync(self, reason: str) -> None:
        log.warning(
            "%s order book out of sync (%s): resyncing from a new snapshot", self.symbol, reason
        )
        self.resyncs += 1
        self._synced = False
        self._last_id = -1
        self._bids.clear()
        self._asks.clear()
        self._bid_prices.clear()
        self._ask_prices.clear()

    def _drain(self) -> bool:
        """Bring the book up to the buffer's newest event; at most one snapshot per call, so a
        source that keeps failing or lagging cannot spin."""
        fetched = False
        buffer = self._buffer
        while buffer:
            if self._synced:
                event = buffer.popleft()
                if event.final_update_id <= self._last_id:
                    self.stale_events += 1
                elif event.first_update_id > self._last_id + 1:
                    buffer.appendleft(event)
                    self._lose_sync(
                        f"gap: event U={event.first_update_id} after book id {self._last_id}"
                    )
                else:
                    _update_side(self._bids, self._bid_prices, event.bids)
                    _update_side(self._asks, self._ask_prices, event.asks)
                    self._last_id = event.final_update_id
                    self.updates += 1
                continue
            if self._pending is None:
                if fetched or self._source is None:
                    break
                fetched = True
                self._pending = self._fetch()
                if self._pending is None:
                    break
            snapshot_id = self._pending.last_update_id
            while buffer and buffer[0].final_update_id <= snapshot_id:
                buffer.popleft()
                self.stale_events += 1
            if not buffer:
                break  # keep the snapshot; wait for an event newer than it
            if buffer[0].first_update_id > snapshot_id + 1:
                log.info(
                    "%s snapshot %d is older than the buffered events (first U=%d): fetching anew",
                    self.symbol,
                    snapshot_id,
                    buffer[0].first_update_id,
                )
                self.snapshots_too_old += 1
                self._pending = None
                continue
            self._install(self._pending)
            self._pending = None
        return self._synced

    def _fetch(self) -> Snapshot | None:
        assert self._source is not None
        try:
            snapshot = self._source()
        except Exception as exc:  # a failing REST call must not kill the stream loop
            self.snapshot_failed(exc)
            return None
        self.snapshots += 1
        return self._checked(snapshot)

    def snapshot_failed(self, error: Exception) -> None:
        """Count a snapshot that could not be had; the next event asks again."""
        self.snapshots += 1
        self.snapshot_failures += 1
        log.warning("%s depth snapshot failed: %s; retrying on the next event", self.symbol, error)

    def _checked(self, snapshot: Snapshot) -> Snapshot | None:
        if snapshot.symbol != self.symbol:
            self.snapshot_failures += 1
            log.warning(
                "snapshot for %s given to the %s book: ignored", snapshot.symbol, self.symbol
            )
            return None
        return snapshot

    def _install(self, snapshot: Snapshot) -> None:
        self._bids = {p: q for p, q in snapshot.bids if q > 0}
        self._asks = {p: q for p, q in snapshot.asks if q > 0}
        self._bid_prices = sorted(self._bids)
        self._ask_prices = sorted(self._asks)
        self._last_id = snapshot.last_update_id
        self._synced = True


def _update_side(book: dict[float, float], prices: list[float], levels: Iterable[Level]) -> None:
    for price, qty in levels:
        if qty:
            if price not in book:
                insort(prices, price)
            book[price] = qty
        elif book.pop(price, None) is not None:
            del prices[bisect_left(prices, price)]
