"""`agent-arb scan` and `run`, once the flags are parsed: over the store's same-minute bars or
the bundled real day, or handed to both venues' live order books (agent.cli.arb_books)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable

from pydantic import ValidationError

from agent.cli.arb_books import checked_book_args, refuse_book_flags, scan_books
from agent.cli.arb_report import report_run
from agent.cli.arb_run import check_run_mode, paper_start, run_books
from agent.cli.common import notify
from arbitrage.bars import (
    BAR_NOTICE,
    CrossBars,
    books_at,
    bundled_cross_bars,
    stored_cross_bars,
    summarize,
)
from arbitrage.journal import PairJournal
from arbitrage.live_books import BINANCE_TAKER_BPS, VENUES
from arbitrage.pairs import ArbDesk, ArbLimits, Inventory, PaperLegs
from arbitrage.rebalance import Rebalancer, RebalanceRule
from arbitrage.spread import VenueBook
from config import Settings
from core.errors import UserError
from market.models import iso_ms, parse_symbol
from store import Store
from store.candles import count_candles
from venues.names import parse_exchange

TRANSFER_FEES = (0.0002, 1.0)  # BTC and USDT per transfer, about the networks' withdrawal fees


def _venues(raw: str) -> tuple[str, str]:
    names = [parse_exchange(n) for n in raw.split(",") if n.strip()]
    if len(names) != 2 or names[0] == names[1]:
        raise UserError(f"invalid --exchanges {raw!r}: name two different ones, e.g. binance,bybit")
    for name in names:
        if name not in VENUES:
            raise UserError(
                f"invalid --exchanges {raw!r}: {name} is not one of the crypto venues "
                f"agent-arb pairs ({', '.join(VENUES)})"
            )
    return names[0], names[1]


def _fees(raw: str | None, venues: tuple[str, str], settings: Settings) -> tuple[float, float]:
    if raw is None:
        known = {"binance": BINANCE_TAKER_BPS, "bybit": settings.bybit.taker_fee_bps}
        return known[venues[0]], known[venues[1]]
    try:
        fees = tuple(float(x) for x in raw.split(","))
    except ValueError:
        fees = ()
    if len(fees) != 2 or not all(0 <= f <= 100 for f in fees):
        raise UserError(f"invalid --fee-bps {raw!r}: two fees 0-100, one per exchange, e.g. 10,10")
    return fees[0], fees[1]


def _bars(store: Store, symbol: str, venues: tuple[str, str]) -> CrossBars:
    """The store's bars when both venues have the symbol there; else the bundled real day."""
    if all(count_candles(store, symbol, "1m", exchange=v) for v in venues):
        return stored_cross_bars(store, symbol, venues)
    if symbol != "BTCUSDT" or set(venues) != {"binance", "bybit"}:
        return stored_cross_bars(store, symbol, venues)  # says which venue lacks the bars
    bars = bundled_cross_bars(venues)
    notify(
        "notice: the store lacks binance and bybit BTCUSDT 1m bars; using the bundled real day "
        "(binance BTCBUSD, bybit BTCUSDT, 2022-12-13 UTC): it is not live data, and BUSD is not USDT"
    )
    return bars


def scan(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    venues = _venues(args.exchanges)
    fees = _fees(args.fee_bps, venues, settings)
    if args.books:
        return scan_books(args, settings, dict(zip(venues, fees, strict=True)))
    refuse_book_flags(args)
    bars = _bars(store, parse_symbol(args.symbol), venues)
    notify(BAR_NOTICE)
    summary, series = summarize(bars, fees, args.slippage_bps, args.threshold_bps)
    if args.json:
        out = summary.model_dump() | {"basis": "bars", "spread_bps": series.round(3).tolist()}
        print(json.dumps(out, indent=2))
        return 0
    first, second = summary.labels
    print(
        f"{second} over {first}, {summary.minutes:,} minutes "
        f"{iso_ms(summary.first_open_ms)} → {iso_ms(summary.last_open_ms)} UTC\n"
        f"spread    mean {summary.mean_bps:+.2f} bps, min {summary.min_bps:+.2f}, "
        f"max {summary.max_bps:+.2f}\n"
        f"costs     {summary.costs_bps:.2f} bps (taker fees {fees[0]:g} + {fees[1]:g}, "
        f"slippage 2 × {args.slippage_bps:g})\n"
        f"net       best {summary.best_net_bps:+.2f} bps; {summary.minutes_clearing:,} minutes "
        f"clear {args.threshold_bps:g} bps after costs"
    )
    return 0


def _limits(args: argparse.Namespace) -> ArbLimits:
    try:
        return ArbLimits(
            quantity=args.quantity,
            threshold_bps=args.threshold_bps,
            max_notional_per_leg=args.max_notional,
            max_imbalance=args.max_imbalance,
            daily_loss=args.daily_loss,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(f"invalid --{first['loc'][0]}: {first['msg']}".replace("_", "-")) from None


def _rule(args: argparse.Namespace) -> RebalanceRule | None:
    if args.rebalance_at is None:
        if args.transfer_fee is not None:
            raise UserError(
                "--transfer-fee is what a --rebalance-at transfer costs: without --rebalance-at "
                "nothing is transferred"
            )
        return None
    base_fee, quote_fee = args.transfer_fee or TRANSFER_FEES
    try:
        return RebalanceRule(threshold=args.rebalance_at, base_fee=base_fee, quote_fee=quote_fee)
    except ValueError:
        raise UserError(
            f"invalid --rebalance-at {args.rebalance_at:g}: a share in (0, 1], e.g. 0.3"
        ) from None


def _rebalancer(args: argparse.Namespace, journal: PairJournal) -> Rebalancer | None:
    rule = _rule(args)
    return None if rule is None else Rebalancer(rule, journal.transfer)


def check_flags(args: argparse.Namespace, settings: Settings) -> None:
    """Every flag check that needs no store, run before the store opens: a refused command
    leaves no empty database behind."""
    venues = _venues(args.exchanges)
    _fees(args.fee_bps, venues, settings)
    checked_book_args(args)
    if args.command == "run":
        _limits(args)
        check_run_mode(args)
        _rule(args)


def _drill(every: int | None) -> Callable[[str, str, str], bool] | None:
    if every is None:
        return None
    if every < 1:
        raise UserError(f"invalid --fail-every {every}: at least 1")
    failed: set[str] = set()

    def fail(pair_id: str, venue: str, side: str) -> bool:
        """The pair's sell leg, once: the close that follows goes through."""
        if side != "sell" or int(pair_id[4:]) % every or pair_id in failed:
            return False
        failed.add(pair_id)
        return True

    return fail


def _mark(books: Iterable[VenueBook]) -> float:
    """Both venues' closes averaged: whichever venue is named first, the same value."""
    closes = [b.bids[0][0] for b in books]
    return sum(closes) / len(closes)


def run_pairs(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    venues = _venues(args.exchanges)
    fees = _fees(args.fee_bps, venues, settings)
    limits = _limits(args)
    check_run_mode(args)
    if args.books:
        drill = _drill(args.fail_every)
        return run_books(args, settings, store, dict(zip(venues, fees, strict=True)), limits, drill)
    refuse_book_flags(args)
    bars = _bars(store, parse_symbol(args.symbol), venues)
    notify(BAR_NOTICE + "; each leg fills at its venue's close, up to that minute's volume")
    journal = PairJournal(store, args.account)
    if journal.pairs():
        raise UserError(f"account {args.account!r} already has pairs: use a new --account")
    start = paper_start(args, venues)
    inventory = Inventory(start)
    rebalancer = _rebalancer(args, journal)
    legs = PaperLegs(inventory, _drill(args.fail_every))
    spent = rebalancer.cost_since if rebalancer is not None else lambda since_ms: 0.0
    desk = ArbDesk(limits, inventory, legs, journal, spent=spent)
    for row in range(len(bars.frame)):
        books = books_at(bars, row, fees, args.slippage_bps)
        now_ms = max(b.time_ms for b in books.values())
        if rebalancer is not None:
            mark = _mark(books.values())
            rebalancer.step(inventory, *venues, mark, now_ms, room=desk.loss_room(now_ms))
        desk.step(books, now_ms)
    mark = _mark(books_at(bars, len(bars.frame) - 1, fees, 0.0).values())
    span = f"{len(bars.frame):,} minutes, {bars.labels[0]} / {bars.labels[1]}"
    return report_run(args, desk, start, basis="bars", span=span, mark=mark, rebalancer=rebalancer)
