"""`agent-data`: download, import, verify and list the candles in the local store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli.common import (
    EXIT_RUNTIME,
    OneLineParser,
    add_common_args,
    notify,
    parse_utc,
    run,
    settings_from,
)
from agent.cli.flags import finite
from core.collector import imports_frozen
from core.errors import UserError
from market.instruments import AssetClass, home_exchange, parse_instrument
from market.models import INTERVAL_MS, iso_ms, parse_interval
from store import Store, open_store
from venues.names import DEFAULT_EXCHANGE, EXCHANGES, listed_symbols, parse_exchange

if TYPE_CHECKING:  # the parser alone answers --help and a mistyped flag
    from rich.console import Console

    from config import Settings


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="agent-data", description=__doc__)
    add_common_args(parser)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    download = sub.add_parser(
        "download", help="fetch closed klines from an exchange into the store"
    )
    download.add_argument(
        "--symbol", required=True, help="e.g. BTCUSDT or BTCUSDT,ETHUSDT; AAPL on alpaca"
    )
    download.add_argument(
        "--exchange",
        default=DEFAULT_EXCHANGE,
        help=f"{', '.join(EXCHANGES)} (default binance; alpaca: US stocks, needs APCA_API_KEY_ID "
        "and APCA_API_SECRET_KEY)",
    )
    download.add_argument("--interval", default="1m", help=f"one of {', '.join(INTERVAL_MS)}")
    span = download.add_mutually_exclusive_group(required=True)
    span.add_argument("--days", type=finite, help="the last N days up to now")
    span.add_argument("--start", help="UTC start, YYYY-MM-DD[THH:MM] (needs --end)")
    download.add_argument("--end", help="UTC end, exclusive")

    imp = sub.add_parser("import", help="import a CSV (Binance kline layout or OHLCV)")
    imp.add_argument("file", type=Path)
    imp.add_argument("--symbol", required=True)
    imp.add_argument("--interval", required=True)
    imp.add_argument(
        "--exchange", help="the venue the bars are from (default binance; a US stock's: alpaca)"
    )

    sub.add_parser("list", help="symbols, intervals, ranges, rows and gaps in the store")

    sub.add_parser("status", help="which database the store runs on, its schema and hypertables")

    verify = sub.add_parser("verify", help="check stored candles for gaps and bad rows")
    verify.add_argument("--symbol")
    verify.add_argument("--exchange", help=f"only this venue's bars: {' or '.join(EXCHANGES)}")
    return parser


def _download_plan(args: argparse.Namespace) -> tuple[str, str, list[str], tuple[int, int] | None]:
    """The interval, exchange, symbols and the --start/--end window (None: --days), checked
    before the store is opened, so a bad flag leaves no database behind."""
    interval = parse_interval(args.interval)
    exchange = parse_exchange(args.exchange)
    symbols = listed_symbols(exchange, args.symbol)
    if args.days is not None:
        if args.days <= 0:
            raise UserError(f"invalid --days {args.days:g}: must be greater than 0")
        if args.end is not None:  # it was never read, so a typo went to the network unseen
            parse_utc(args.end, "--end")
            raise UserError(f"--end {args.end} needs --start: --days counts back from now")
        return interval, exchange, symbols, None
    if not args.end:
        raise UserError("--start needs --end")
    start_ms = parse_utc(args.start, "--start")
    end_ms = parse_utc(args.end, "--end") - INTERVAL_MS[interval]
    if end_ms < start_ms:
        raise UserError(f"--end {args.end} is not after --start {args.start}")
    return interval, exchange, symbols, (start_ms, end_ms)


def _download(
    args: argparse.Namespace,
    plan: tuple[str, str, list[str], tuple[int, int] | None],
    settings: Settings,
    store: Store,
    console: Console,
) -> int:
    with imports_frozen():  # the HTTP clients, only to download
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        from core.clock import SystemClock
        from market.source import CandleSource
        from store.candles import upsert_candles
        from venues.registry import UNAVAILABLE, market_data

    interval, exchange, symbols, window = plan
    step = INTERVAL_MS[interval]
    client = market_data(exchange, settings, cache_dir=settings.data_dir / "http-cache")
    source = CandleSource(store, SystemClock(), notify)
    start_ms, end_ms = window or source.window(interval, args.days)
    expected = (end_ms - start_ms) // step + 1
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with client, Progress(*columns, console=console, transient=True) as progress:
        for symbol in symbols:
            task = progress.add_task(f"{symbol} {interval}", total=expected)
            try:
                bars = client.klines(
                    symbol,
                    interval,
                    start_ms,
                    end_ms,
                    on_page=lambda rows, t=task: progress.update(t, completed=rows),
                )
            except UNAVAILABLE as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_RUNTIME
            added = upsert_candles(store, symbol, interval, bars, exchange=exchange)
            progress.remove_task(task)
            console.print(
                f"{exchange} {symbol} {interval}: {len(bars):,} closed bars "
                f"{iso_ms(start_ms)} → {iso_ms(end_ms)} UTC, {added:,} new in the store"
            )
    return 0


def _import(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Every row is checked before the store is opened, and written in one transaction: a bad
    file leaves no database behind and no part of itself in one."""
    with imports_frozen():  # pandas and the store, after the parser
        from agent.cli.equity import kept_line, session_line
        from market.corporate import CorporateActions, read_actions
        from market.source import load_csv_candles
        from runtime.hours import TradingHours
        from store.candles import upsert_candles
        from store.corporate import save_actions

    (symbol, kind), interval = parse_instrument(args.symbol), parse_interval(args.interval)
    stock = kind is AssetClass.EQUITY
    exchange = home_exchange(symbol)
    if args.exchange is not None:
        exchange = parse_exchange(args.exchange)
        listed_symbols(exchange, symbol)  # a stock on a crypto venue, or a coin on Alpaca: exit 2
    frame = load_csv_candles(args.file, interval, notify, whole=True, stock=stock)
    actions = read_actions(args.file, interval) if stock else {}
    store = open_store(settings.resolved_database_url, settings.timescaledb)
    try:
        added = upsert_candles(store, symbol, interval, frame, exchange=exchange)
        save_actions(store, symbol, interval, actions)
    finally:
        store.close()
    venue = "" if exchange == home_exchange(symbol) else f"{exchange} "
    console.print(
        f"{venue}{symbol} {interval}: read {len(frame):,} valid bars from {args.file.name}, "
        f"{added:,} new in the store"
    )
    if kind is AssetClass.EQUITY:  # pre- and post-market rows are kept; the calendar marks them
        notify(session_line(symbol, frame, TradingHours(INTERVAL_MS[interval])))
        notify(kept_line(CorporateActions({symbol: actions})))
    return 0


def _list(store: Store, console: Console) -> int:
    with imports_frozen():  # pandas and the store, after the parser
        from rich.table import Table

        from market.source import seed_sample_if_empty
        from store.candles import summarize

    seed_sample_if_empty(store, notify)
    table = Table(title=f"Candles in the store ({store.backend.label})")
    for column in ("exchange", "symbol", "interval", "first open (UTC)", "last open (UTC)"):
        table.add_column(column)
    table.add_column("rows", justify="right")
    table.add_column("missing bars", justify="right")
    for s in summarize(store):
        table.add_row(
            s.exchange,
            s.symbol,
            s.interval,
            iso_ms(s.first_open_ms),
            iso_ms(s.last_open_ms),
            f"{s.rows:,}",
            f"{s.missing_bars:,}",
        )
    console.print(table)
    return 0


def _status(settings: Settings, store: Store, console: Console) -> int:
    with imports_frozen():  # SQLAlchemy's inspection, only for status
        from store.status import store_status

    status = store_status(store, settings.timescaledb)
    for name, value in status.lines():
        console.print(f"{name}: {value}")
    return 0


def _verify(args: argparse.Namespace, store: Store, console: Console) -> int:
    with imports_frozen():  # pandas and the store, after the parser
        from market.validation import in_sessions, validate_candles
        from store.candles import load_candles, summarize

    symbol = parse_instrument(args.symbol)[0] if args.symbol else None
    exchange = parse_exchange(args.exchange) if args.exchange else None
    series = [s for s in summarize(store, symbol) if exchange in (None, s.exchange)]
    if not series:
        which = " ".join(x for x in (exchange, symbol) if x)
        raise UserError(
            f"no stored candles{f' for {which}' if which else ''}; see `agent-data list`"
        )
    problems = 0
    for s in series:
        frame = load_candles(store, s.symbol, s.interval, exchange=s.exchange)
        report = validate_candles(frame, s.interval)
        found = report.problems()
        if parse_instrument(s.symbol)[1] is AssetClass.EQUITY:
            report, missing = in_sessions(report, frame["open_time"].to_numpy(), s.interval)
            found = [*report.problems(), *([missing] if missing else [])]
        status = "; ".join(found) or "ok"
        problems += bool(found)
        venue = "" if s.exchange == home_exchange(s.symbol) else f"{s.exchange} "
        console.print(f"{venue}{s.symbol} {s.interval}: {report.rows:,} bars, {status}")
    return 1 if problems else 0


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    with imports_frozen():  # each sub-command loads its own stack, after the parser
        from rich.console import Console

    console = Console(highlight=False)
    if args.command == "import":
        return _import(args, settings, console)
    plan = _download_plan(args) if args.command == "download" else None
    store = open_store(settings.resolved_database_url, settings.timescaledb)
    try:
        if plan is not None:
            return _download(args, plan, settings, store, console)
        if args.command == "list":
            return _list(store, console)
        if args.command == "status":
            return _status(settings, store, console)
        return _verify(args, store, console)
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
