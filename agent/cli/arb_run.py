"""`agent-arb run --books`: the pair loop deciding from both venues' live order books (with the
book-age limit), on paper or, with `--mode testnet|live`, on both exchanges through their signed
executors, each leg judged by the risk gate. A signed run starts by reconciling the journal's
unfinished pairs with the venues, by the legs' own client order ids, so a restart never sends a
leg twice."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping

from agent.cli.arb_books import checked_book_args, follow_books
from agent.cli.arb_report import report_run
from agent.cli.common import notify
from arbitrage.book_feeds import cross_books
from arbitrage.journal import PairJournal
from arbitrage.live_books import BookScan, look
from arbitrage.pairs import (
    ArbDesk,
    ArbLimits,
    Holdings,
    Inventory,
    LegVenue,
    Pair,
    PaperLegs,
    Side,
)
from arbitrage.signed_legs import SignedLegs, holdings_on
from arbitrage.spread import VenueBook
from config import Settings
from core.errors import UserError
from core.security import loose_env_file
from execution.venues import check_live_allowed, signed_executor
from market.models import parse_symbol
from store import Store

PAPER = "paper"
_PAPER_ONLY = ("base", "quote", "fail_every", "rebalance_at")


def check_run_mode(args: argparse.Namespace) -> None:
    """Testnet and live are opt-in as for agent-trade, and decide from live books only; a flag
    that only means something on paper exits 2 rather than being ignored."""
    check_live_allowed(args.mode, os.environ)
    if args.max_pairs is not None and (not args.books or args.max_pairs < 1):
        raise UserError(f"invalid --max-pairs {args.max_pairs}: at least 1, and with --books")
    if args.mode == PAPER:
        if args.books and args.rebalance_at is not None:
            raise UserError(
                "--rebalance-at rehearses transfers over the bars: with --books inventory moves "
                "by pairs only"
            )
        return
    if args.mode == "live" and (loose := loose_env_file()):
        raise UserError(f"live trading refused: {loose}")
    if not args.books:
        raise UserError(
            f"--mode {args.mode} needs --books: past bar closes must never drive real orders"
        )
    given = [f for f in _PAPER_ONLY if getattr(args, f) is not None]
    if given:
        raise UserError(
            f"--{given[0].replace('_', '-')} is for paper: on the exchanges ({args.mode}) the "
            "inventory is each account's balance"
        )


def paper_start(args: argparse.Namespace, venues: tuple[str, ...]) -> dict[str, Holdings]:
    base = 0.5 if args.base is None else args.base
    quote = 10_000.0 if args.quote is None else args.quote
    if base < 0 or quote < 0:
        raise UserError("invalid --base/--quote: starting inventory cannot be negative")
    return {v: Holdings(base=base, quote=quote) for v in venues}


def run_books(
    args: argparse.Namespace,
    settings: Settings,
    store: Store,
    fees: Mapping[str, float],
    limits: ArbLimits,
    drill: Callable[[str, str, Side], bool] | None,
) -> int:
    """Follow both books, step the desk at each look, and report the pairs."""
    _, seconds, every, max_age = checked_book_args(args)
    symbol = parse_symbol(args.symbol)
    limits = limits.model_copy(update={"max_book_age_ms": max_age})
    journal = PairJournal(store, args.account)
    past = journal.pairs()
    venues = tuple(fees)
    legs: LegVenue
    if args.mode == PAPER:
        if past:
            raise UserError(f"account {args.account!r} already has pairs: use a new --account")
        inventory = Inventory(paper_start(args, venues))
        legs, lot = PaperLegs(inventory, drill), _whole
    else:
        elsewhere = {p.mode for p in past} - {args.mode}
        if elsewhere:
            raise UserError(
                f"account {args.account!r} holds {', '.join(sorted(elsewhere))} pairs: use "
                f"another --account for {args.mode}"
            )
        signed = _signed(args, settings, store, symbol, venues)
        inventory, legs, lot = signed.inventory, signed, signed.lot
        past = _reconciled(signed, past, journal)
    start = {v: h.model_copy() for v, h in inventory.holdings.items()}
    desk = ArbDesk(limits, inventory, legs, journal, past=past, lot=lot, mode=args.mode)
    before = len(desk.pairs)
    cross = cross_books(settings, dict(fees))
    notify(
        f"notice: book-based: {symbol} {limits.quantity:g} per pair from both live books every "
        f"{every:g} s for up to {seconds:g} s, books older than {max_age} ms refused"
    )
    last: dict[str, VenueBook] = {}

    def take(now_ms: int) -> BookScan:
        seen = look(cross, symbol, limits.quantity, now_ms, max_age_ms=max_age)
        if seen.scan is not None:
            books = {
                b.venue: b.model_copy(update={"slippage_bps": args.slippage_bps})
                for b in cross.venue_books(symbol)
            }
            last.update(books)
            desk.step(books, now_ms)
        return seen

    def done() -> bool:
        return args.max_pairs is not None and len(desk.pairs) - before >= args.max_pairs

    looks = follow_books(
        settings, cross, symbol, take, seconds=seconds, every=every, show=lambda _: None, done=done
    )
    if not last:
        raise UserError(
            f"both books never synced together in {seconds:g} s: no pair was tried "
            f"({len(looks)} looks)"
        )
    mark = sum((b.bids[0][0] + b.asks[0][0]) / 2 for b in last.values()) / len(last)
    span = f"{len(looks):,} looks at both live books, {' / '.join(venues)}"
    return report_run(args, desk, start, basis="books", span=span, mark=mark)


def _signed(
    args: argparse.Namespace,
    settings: Settings,
    store: Store,
    symbol: str,
    venues: tuple[str, ...],
) -> SignedLegs:
    """Both venues' signed executors (keys checked, rules from the cache) and the inventory
    their balances hold."""
    executors, rules = {}, {}
    for venue in venues:
        executors[venue], found = signed_executor(
            venue, settings, args.mode, [symbol], store, args.account, notify
        )
        rules[venue] = found[symbol]
    inventory = Inventory({v: holdings_on(executors[v], rules[v]) for v in venues})
    notify(
        f"orders: {' and '.join(f'{v.capitalize()} {args.mode}' for v in venues)}, signed; each "
        "leg through the risk gate"
    )
    return SignedLegs(args.account, symbol, executors, rules, settings.risk, inventory)


def _whole(quantity: float) -> float:
    """Paper takes any quantity."""
    return quantity


def _reconciled(signed: SignedLegs, past: list[Pair], journal: PairJournal) -> list[Pair]:
    """The journal's pairs, the unfinished ones completed by what the venues did."""
    found: list[Pair] = []
    for pair in past:
        mended = signed.recover(pair)
        if mended is not pair:
            journal(mended)
            legs = ", ".join(
                f"{f.venue} {f.side} {f.filled:g}" for f in mended.legs + mended.closes
            )
            notify(f"reconciled {pair.pair_id}: {pair.state.value} → {mended.state.value} ({legs})")
        found.append(mended)
    return found
