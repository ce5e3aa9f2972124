"""The order books of every symbol a depth stream carries, kept in sync by snapshot + diffs and
rebuilt after a gap or a reconnect, and the quote that the risk gate, the agent's tools and the
fill model read from them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict

from market.binance_ws import Reconnected
from market.orderbook import (
    DEFAULT_MAX_BUFFER,
    BookSnapshot,
    BookStats,
    DepthUpdate,
    FillEstimate,
    OrderBook,
    Side,
    Snapshot,
)

if TYPE_CHECKING:
    from market.binance_rest import BinanceRestClient

DEFAULT_LEVELS = 5
DEFAULT_DEPTH_BPS = 10.0
SNAPSHOT_LIMIT = 1000  # levels per side asked of /api/v3/depth (weight 50, the docs' advice)

SnapshotFetch = Callable[[str], Snapshot]


class BookLevel(BaseModel):
    model_config = ConfigDict(frozen=True)

    price: float
    quantity: float


class BookQuote(BaseModel):
    """A synced book's top, spread and nearby depth at its last update; only a synced book
    with both sides gives one, so whatever reads a quote may trust its prices."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    best_bid: float
    best_ask: float
    mid: float
    spread_bps: float  # negative if the book is crossed (the gate then vetoes INVALID_MARKET)
    bids: list[BookLevel]  # best first
    asks: list[BookLevel]  # best first
    depth_bps: float
    bid_depth_quote: float  # quote currency bid within depth_bps below the mid
    ask_depth_quote: float  # quote currency offered within depth_bps above the mid
    event_time_ms: int  # exchange time of the last diff applied
    resyncs: int  # times this book was discarded and rebuilt (gaps, reconnects)

    def age_ms(self, now_ms: int) -> int:
        return max(0, now_ms - self.event_time_ms)


class BookSource(Protocol):
    """What tools and the runner call for a book; `Books.quote` is one."""

    def __call__(
        self, symbol: str, *, levels: int = DEFAULT_LEVELS, depth_bps: float = DEFAULT_DEPTH_BPS
    ) -> BookQuote | None: ...


def rest_snapshots(client: BinanceRestClient, limit: int = SNAPSHOT_LIMIT) -> SnapshotFetch:
    """Snapshots from Binance REST `GET /api/v3/depth` (or anything speaking its API)."""
    return lambda symbol: client.depth(symbol, limit=limit)


class Books:
    """Feed it every stream event with `await books.on_event(event)`: depth diffs update their
    symbol's book (created on its first diff), a `Reconnected` discards every book so each
    rebuilds from a new snapshot. Snapshots are fetched in a worker thread, so the event loop
    (and a replay server on it) keeps running; reads may come from any thread. With no
    `snapshot` fetch, the stream pushes `BookSnapshot`s itself (and resubscribes on a gap)."""

    def __init__(
        self, snapshot: SnapshotFetch | None, *, max_buffer: int = DEFAULT_MAX_BUFFER
    ) -> None:
        self._snapshot = snapshot
        self._max_buffer = max_buffer
        self._books: dict[str, OrderBook] = {}
        self._event_ms: dict[str, int] = {}
        self._lock = threading.Lock()

    async def on_event(self, event: object) -> None:
        """Apply a DepthUpdate, resync after a Reconnected; other events are not the book's."""
        if isinstance(event, Reconnected):
            self.invalidate(f"reconnected: {event.reason}")
        elif isinstance(event, BookSnapshot):
            with self._lock:
                self._book(event.symbol).replace(event)
                self._event_ms[event.symbol] = event.event_time
        elif isinstance(event, DepthUpdate):
            symbol = event.symbol
            with self._lock:
                book = self._book(symbol)
                self._note(book, event, book.apply(event))
                if not book.wants_snapshot or self._snapshot is None:
                    return
            try:
                snapshot = await asyncio.to_thread(self._snapshot, symbol)
            except Exception as exc:  # REST down: the book waits, the stream goes on
                with self._lock:
                    book.snapshot_failed(exc)
                return
            with self._lock:
                if book.wants_snapshot:
                    self._note(book, event, book.offer(snapshot))

    def invalidate(self, reason: str) -> None:
        """Discard every book; each resyncs from a snapshot on its next diff."""
        with self._lock:
            for book in self._books.values():
                book.invalidate(reason)

    def quote(
        self, symbol: str, *, levels: int = DEFAULT_LEVELS, depth_bps: float = DEFAULT_DEPTH_BPS
    ) -> BookQuote | None:
        """The book as it stands, or None when `symbol` has no synced two-sided book."""
        with self._lock:
            book = self._books.get(symbol)
            if book is None or not book.synced:
                return None
            bid, ask, depth = book.best_bid, book.best_ask, book.notional_within(depth_bps)
            if bid is None or ask is None or depth is None:
                return None
            mid = (bid[0] + ask[0]) / 2
            return BookQuote(
                symbol=symbol,
                best_bid=bid[0],
                best_ask=ask[0],
                mid=mid,
                spread_bps=(ask[0] - bid[0]) / mid * 10_000,
                bids=[BookLevel(price=p, quantity=q) for p, q in book.bids(levels)],
                asks=[BookLevel(price=p, quantity=q) for p, q in book.asks(levels)],
                depth_bps=depth_bps,
                bid_depth_quote=depth[0],
                ask_depth_quote=depth[1],
                event_time_ms=self._event_ms[symbol],
                resyncs=book.resyncs,
            )

    def fill(self, symbol: str, side: Side, quantity: float) -> FillEstimate | None:
        """What a market order of `quantity` would get by walking the synced book now."""
        with self._lock:
            book = self._books.get(symbol)
            if book is None or not book.synced:
                return None
            return book.average_fill_price(side, quantity)

    def stats(self) -> list[BookStats]:
        with self._lock:
            return [book.stats() for book in self._books.values()]

    def _book(self, symbol: str) -> OrderBook:
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = OrderBook(symbol, None, max_buffer=self._max_buffer)
        return book

    def _note(self, book: OrderBook, event: DepthUpdate, synced: bool) -> None:
        if synced:
            self._event_ms[book.symbol] = max(event.event_time, self._event_ms.get(book.symbol, 0))
