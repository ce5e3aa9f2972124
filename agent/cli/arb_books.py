"""`agent-arb scan --books`: the cross-venue edge for a size from both venues' live order books
(Binance diff depth + REST snapshots, Bybit orderbook.200), printed every `--every` seconds.
Opt-in, because it needs both streams; the bar-based scan stays the offline default."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime

from agent.cli.common import notify
from arbitrage.book_feeds import book_streams, cross_books
from arbitrage.live_books import BookScan, CrossBooks, look, watch
from arbitrage.spread import Scan
from config import Settings
from core.errors import UserError
from market.binance_ws import StreamUnavailable
from market.models import parse_symbol

_BOOK_FLAGS = ("size", "seconds", "every", "max_age_ms")
RECONNECT_ATTEMPTS = 3  # a scan gives up on a venue it cannot reach, rather than wait forever
BACKOFF_S = 0.5


def checked_book_args(args: argparse.Namespace) -> tuple[float, float, float, int]:
    """(size, seconds, every, max age) with their defaults; a book flag without --books exits 2."""
    given = [f"--{f.replace('_', '-')}" for f in _BOOK_FLAGS if getattr(args, f, None) is not None]
    if not args.books:
        if given:
            raise UserError(f"{', '.join(given)} only apply with --books (the live order books)")
        return 0.0, 0.0, 0.0, 0
    size = 0.01 if getattr(args, "size", None) is None else args.size
    seconds = 30.0 if args.seconds is None else args.seconds
    every = 1.0 if args.every is None else args.every
    max_age = 2_000 if args.max_age_ms is None else args.max_age_ms
    if not (size > 0 and seconds > 0 and every > 0 and max_age > 0):
        raise UserError(
            "invalid --size/--seconds/--every/--max-age-ms: each must be positive, "
            "e.g. --size 0.05 --seconds 30 --every 1 --max-age-ms 2000"
        )
    return size, seconds, every, max_age


def refuse_book_flags(args: argparse.Namespace) -> None:
    """A bar-based scan given a --books flag exits 2 saying so, rather than ignoring it."""
    checked_book_args(args)


def _line(found: Scan | None, waiting: list[str], ages: dict[str, int], now_ms: int) -> str:
    when = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]
    age = ", ".join(f"{v} {a} ms" for v, a in ages.items())
    if waiting:
        return f"{when}  waiting for the {' and '.join(waiting)} book to sync"
    assert found is not None
    if found.edge is None:
        return f"{when}  not priced: {found.refused}"
    e = found.edge
    return (
        f"{when}  buy {e.buy_venue} {e.buy_vwap:,.2f}  sell {e.sell_venue} {e.sell_vwap:,.2f}  "
        f"gross {e.gross_bps:+.2f}  costs {e.costs_bps:.2f}  net {e.net_bps:+.2f} bps "
        f"({e.net_quote:+.4f} quote)  profitable up to {found.max_profitable_quantity:g}  "
        f"books {age} old"
    )


def follow_books(
    settings: Settings,
    cross: CrossBooks,
    symbol: str,
    take: Callable[[int], BookScan],
    *,
    seconds: float,
    every: float,
    show: Callable[[BookScan], None],
    done: Callable[[], bool] = lambda: False,
) -> list[BookScan]:
    """Both venues' streams of `symbol` into `cross`, a look every `every` s for `seconds` (or
    until `done()`); a venue that cannot be followed exits 2 in one line."""

    async def main() -> list[BookScan]:
        streams = book_streams(
            settings, [symbol], max_attempts=RECONNECT_ATTEMPTS, backoff_base_s=BACKOFF_S
        )
        async with contextlib.AsyncExitStack() as stack:
            for stream in streams.values():
                await stack.enter_async_context(stream)
            return await watch(
                cross, streams, take, seconds=seconds, every_s=every, show=show, done=done
            )

    try:
        return asyncio.run(main())
    except StreamUnavailable as exc:
        raise UserError(f"cannot follow both books: {exc}") from None


def scan_books(args: argparse.Namespace, settings: Settings, fees: dict[str, float]) -> int:
    size, seconds, every, max_age = checked_book_args(args)
    symbol = parse_symbol(args.symbol)
    cross = cross_books(settings, fees)
    notify(
        f"notice: book-based: {symbol} {size:g} walked through both live books every {every:g} s "
        f"for {seconds:g} s, both taker fees ({', '.join(f'{v} {f:g}' for v, f in fees.items())} "
        f"bps), books older than {max_age} ms refused"
    )

    def take(now_ms: int) -> BookScan:
        return look(
            cross,
            symbol,
            size,
            now_ms,
            max_age_ms=max_age,
            threshold_bps=args.threshold_bps,
            slippage_bps=args.slippage_bps,
        )

    def show(seen: BookScan) -> None:
        if not args.json:
            print(_line(seen.scan, seen.waiting_for, seen.book_ages_ms, seen.time_ms), flush=True)

    looks = follow_books(settings, cross, symbol, take, seconds=seconds, every=every, show=show)
    if args.json:
        out = {"basis": "books", "symbol": symbol, "size": size, "max_age_ms": max_age}
        print(json.dumps(out | {"looks": [seen.model_dump() for seen in looks]}, indent=2))
    return 0
