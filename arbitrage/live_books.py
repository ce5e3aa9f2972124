"""Both venues' live order books, as the book-based scan and the chat's spread tool read them:
Binance's diff-depth stream synced from REST snapshots and Bybit's orderbook stream (snapshot
plus `u`-checked deltas), each in its own Books, read as VenueBooks with each venue's taker fee.
A book that is not synced is simply absent, so nothing is priced off half a book."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterable, Callable, Mapping

from pydantic import BaseModel, ConfigDict

from arbitrage.spread import Scan, VenueBook, scan
from market.books import Books, SnapshotFetch

BINANCE_TAKER_BPS = 10.0  # Binance spot's standard taker fee, without BNB or VIP discounts
BOOK_LEVELS = 200  # levels per side read for the VWAP walk: Bybit's orderbook.200 depth
VENUES = ("binance", "bybit")


class CrossBooks:
    """One Books per venue. Binance's needs a REST snapshot fetch; Bybit's stream pushes its
    own snapshots (and resubscribes on a gap), so its Books has none."""

    def __init__(self, fees_bps: Mapping[str, float], binance_snapshot: SnapshotFetch) -> None:
        unknown = set(fees_bps) - set(VENUES)
        if unknown or len(fees_bps) != 2:
            raise ValueError(f"fees for binance and bybit, got {sorted(fees_bps)}")
        self.fees_bps = dict(fees_bps)  # its order is the scan's venue order
        self.books = {"binance": Books(binance_snapshot), "bybit": Books(None)}

    async def follow(self, venue: str, events: AsyncIterable[object]) -> None:
        """Feed one venue's stream into its books until the stream ends or is cancelled."""
        books = self.books[venue]
        async for event in events:
            await books.on_event(event)

    def venue_books(self, symbol: str) -> list[VenueBook]:
        """The synced books of `symbol`, in fee order; fewer than two while one is syncing."""
        found = []
        for venue, fee in self.fees_bps.items():
            quote = self.books[venue].quote(symbol, levels=BOOK_LEVELS)
            if quote is not None:
                found.append(
                    VenueBook(
                        venue=venue,
                        bids=[(level.price, level.quantity) for level in quote.bids],
                        asks=[(level.price, level.quantity) for level in quote.asks],
                        time_ms=quote.event_time_ms,
                        taker_fee_bps=fee,
                    )
                )
        return found


class BookScan(BaseModel):
    """One look at both books: the scan, or which book is still missing."""

    model_config = ConfigDict(frozen=True)

    time_ms: int
    waiting_for: list[str]  # venues without a synced two-sided book yet
    book_ages_ms: dict[str, int]
    scan: Scan | None = None


def look(
    cross: CrossBooks,
    symbol: str,
    quantity: float,
    now_ms: int,
    *,
    max_age_ms: int,
    threshold_bps: float = 0.0,
    slippage_bps: float = 0.0,
) -> BookScan:
    """Scan both books now for `quantity`, refusing a book older than `max_age_ms`."""
    books = [b.model_copy(update={"slippage_bps": slippage_bps}) for b in cross.venue_books(symbol)]
    ages = {b.venue: b.age_ms(now_ms) for b in books}
    missing = [v for v in cross.fees_bps if v not in ages]
    if missing:
        return BookScan(time_ms=now_ms, waiting_for=missing, book_ages_ms=ages)
    found = scan(*books, quantity, now_ms, max_age_ms=max_age_ms, threshold_bps=threshold_bps)
    return BookScan(time_ms=now_ms, waiting_for=[], book_ages_ms=ages, scan=found)


async def watch(
    cross: CrossBooks,
    streams: Mapping[str, AsyncIterable[object]],
    take: Callable[[int], BookScan],
    *,
    seconds: float,
    every_s: float,
    show: Callable[[BookScan], None],
    clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    done: Callable[[], bool] = lambda: False,
) -> list[BookScan]:
    """Follow every venue's stream and `take` a look every `every_s` for `seconds`, or until
    `done()`; a stream that fails (a refused URL, reconnects given up) ends the watch with its
    error."""
    followers = [asyncio.create_task(cross.follow(v, s)) for v, s in streams.items()]
    looks: list[BookScan] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        while loop.time() < end and not done():
            await asyncio.sleep(min(every_s, max(0.0, end - loop.time())))
            for task in followers:
                if task.done():
                    task.result()  # raises the stream's error
            looks.append(take(clock_ms()))
            show(looks[-1])
    finally:
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
    return looks


BOOKS_THREAD = "venue-books"


class BackgroundBooks:
    """CrossBooks kept current by their streams on a daemon thread's own event loop, for a
    caller without one (the UI's chat); `venue_books` may be read from any thread."""

    def __init__(self, cross: CrossBooks, streams: Mapping[str, AsyncIterable[object]]) -> None:
        self.cross = cross
        self._streams = dict(streams)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=BOOKS_THREAD, daemon=True
        )
        self._tasks: list[asyncio.Future[None]] = []  # held: the loop keeps only weak references

    def start(self) -> BackgroundBooks:
        self._thread.start()
        self._tasks = [
            asyncio.run_coroutine_threadsafe(self.cross.follow(venue, events), self._loop)
            for venue, events in self._streams.items()
        ]
        return self

    def venue_books(self, symbol: str) -> list[VenueBook]:
        return self.cross.venue_books(symbol)

    def stop(self) -> None:
        """End the streams and let them close their sockets before the loop stops: a socket
        left open makes the venue wait out its close timeout for a goodbye that never comes."""
        asyncio.run_coroutine_threadsafe(_cancel_others(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()


async def _cancel_others() -> None:
    """Cancel every other task on the running loop and wait until each has unwound."""
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
