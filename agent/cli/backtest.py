"""`agent-backtest`: replay a classic strategy over historical bars through the risk gate and the
simulated executor, print the report, write JSON/HTML, sweep parameters, check for look-ahead."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from agent.cli.agent_flags import add_agent_args
from agent.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OUTAGE,
    EXIT_RUNTIME,
    EXIT_USER,
    OneLineParser,
    add_common_args,
    notify,
    run,
    settings_from,
    write_chunks,
    write_file,
)
from agent.cli.equity import (
    add_equity_args,
    check_flags,
    equity_interval,
    equity_run,
    parse_symbols,
    whole_file,
)
from agent.cli.flags import given, refuse_inapplicable
from agent.cli.strategy_flags import add_param_args, param_flags
from agent.cli.window import DEFAULT_DAYS, Window, load_frames, venue_rules
from backtest import run_backtest
from backtest.config import BacktestConfig
from backtest.data import to_bar_arrays
from backtest.report import build_report
from backtest.runs import save_run
from backtest.strategies import STRATEGIES
from backtest.sweep import (
    SweepData,
    parse_grid,
    plan,
    rank,
    resolve_metric,
    run_processes,
    run_ray,
)
from backtest.terminal import fmt, render
from config.settings import BacktestSettings
from core.clock import SystemClock
from core.collector import collector_relaxed
from core.errors import UserError
from execution.fees import FeeSchedule
from execution.slippage import FixedBps, VolumeParticipation
from market.instruments import STOCK_EXCHANGE, AssetClass, home_exchange
from market.models import EXCHANGE, INTERVAL_MS, SymbolRules, parse_interval
from market.sample import sample_rules
from risk.limits import RiskLimits
from runtime.strategy import Strategy
from store import Store, open_store

AGENT = "agent"
EPILOG = (
    f"exit codes: 0 done; {EXIT_RUNTIME} look-ahead found (--check-lookahead); {EXIT_USER} a "
    f"usage, config or data mistake, or an LLM endpoint that refuses the key or the request "
    f"(nothing saved); {EXIT_OUTAGE} the LLM endpoint failed llm.breaker_failures decisions in a "
    f'row (timeouts, 5xx, empty replies): a partial report, marked "partial": true; '
    f"{EXIT_INTERRUPTED} interrupted (Ctrl-C). Ctrl-C while the "
    "agent decides lets the decisions in flight finish, then still prints and writes the report, "
    f'marked "partial": true, before exiting with {EXIT_INTERRUPTED}.'
)


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="agent-backtest", description=__doc__, epilog=EPILOG)
    add_common_args(parser)
    parser.add_argument(
        "--strategy", default=AGENT, help=f"{AGENT} (default) or one of {', '.join(STRATEGIES)}"
    )
    parser.add_argument("--symbol", default="BTCUSDT", help="e.g. BTCUSDT or BTCUSDT,ETHUSDT")
    parser.add_argument("--interval", default="1m", help=f"one of {', '.join(INTERVAL_MS)}")
    span = parser.add_mutually_exclusive_group()
    span.add_argument("--days", type=float, help=f"the last N days (default {DEFAULT_DAYS:g})")
    span.add_argument("--start", help="UTC start, YYYY-MM-DD[THH:MM] (needs --end)")
    parser.add_argument("--end", help="UTC end, exclusive")
    parser.add_argument("--data", type=Path, help="a CSV of your own bars for --symbol")
    parser.add_argument(
        "--exchange",
        help="whose stored bars and rules: binance (a coin's default) or bybit; alpaca (a US "
        "stock's)",
    )

    add_param_args(parser.add_argument_group("strategy parameters"))

    account = parser.add_argument_group("account and fills (docs/fills.md)")
    account.add_argument("--cash", type=float, help="starting USDT (setting backtest.cash)")
    account.add_argument(
        "--size", default="all", help="per entry: 'all' equity (default) or a percent, e.g. 25"
    )
    account.add_argument(
        "--allow-short", action="store_true", help="propose shorts (the gate decides)"
    )
    account.add_argument("--stop-loss", type=float, help="stop-loss percent below/above the entry")
    account.add_argument("--take-profit", type=float, help="take-profit percent from the entry")
    account.add_argument(
        "--trailing-stop", type=float, help="trailing stop percent below a long's highest high"
    )
    account.add_argument(
        "--fee-bps", type=float, help="maker and taker fee, 10 = 0.1%% (setting backtest.fee_bps)"
    )
    account.add_argument("--maker-bps", type=float, help="maker fee, if different from --fee-bps")
    account.add_argument(
        "--slippage-bps", type=float, help="taker slippage (setting backtest.slippage_bps)"
    )
    account.add_argument(
        "--max-participation",
        type=float,
        help="volume model: fill at most this fraction of a bar's volume, impact 0.1 x share²",
    )
    account.add_argument("--limit-on-touch", action="store_true", help="a touch fills a limit")

    out = parser.add_argument_group("output")
    out.add_argument("--json", type=Path, help="write the report as JSON")
    out.add_argument("--html", type=Path, help="write a self-contained HTML report")
    out.add_argument("--check-lookahead", action="store_true", help="recompute on truncated data")

    add_agent_args(parser)
    add_equity_args(parser)

    sweep = parser.add_argument_group("sweeps")
    sweep.add_argument(
        "--sweep", action="append", default=[], help="NAME=START:STOP:STEP, repeatable"
    )
    sweep.add_argument("--rank-by", default="return", help="metric to rank a sweep by (return)")
    sweep.add_argument("--executor", choices=("process", "ray"), default="process")
    sweep.add_argument("--workers", type=int, help="parallel processes (default: all cores)")
    sweep.add_argument("--top", type=int, default=10, help="rows of the ranking to print")
    return parser


def _strategy_params(args: argparse.Namespace) -> tuple[type[Strategy] | None, dict[str, Any]]:
    """The classic strategy and its given parameters; (None, {}) for the agent."""
    given = {f: getattr(args, f) for f in param_flags() if getattr(args, f) is not None}
    if args.strategy == AGENT:
        if given or args.sweep:
            flags = ", ".join(f"--{f.replace('_', '-')}" for f in given) or "--sweep"
            raise UserError(f"{flags} does not apply to the agent: pick --strategy sma_cross etc.")
        return None, {}
    cls = STRATEGIES.get(args.strategy)
    if cls is None:
        raise UserError(
            f"unknown strategy {args.strategy!r}: choose {AGENT} or one of {', '.join(STRATEGIES)}"
        )
    foreign = [f for f in given if f not in cls.Params.model_fields]
    if foreign:
        flags = ", ".join(f"--{f.replace('_', '-')}" for f in foreign)
        raise UserError(f"{flags} does not apply to {cls.name}")
    return cls, given


def _build_strategy(cls: type[Strategy], params: dict[str, Any]) -> Strategy:
    try:
        return cls(cls.Params(**params))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise UserError(
            f"invalid {cls.name} parameters: {where + ': ' if where else ''}{message}"
        ) from None


def _size(raw: str) -> float:
    if raw.strip().lower() == "all":
        return 1.0
    try:
        pct = float(raw.strip().rstrip("%"))
    except ValueError:
        pct = float("nan")
    if not 0 < pct <= 100:
        raise UserError(f"invalid --size {raw!r}: 'all' or a percent of equity in (0, 100]")
    return pct / 100


def _percent(value: float | None) -> float | None:
    """A percent flag as a fraction; the config's bounds then name a bad one."""
    return None if value is None else value / 100


def _config(args: argparse.Namespace, interval: str, defaults: BacktestSettings) -> BacktestConfig:
    """The run's account and fills: each flag given, else its setting."""
    fee_bps = defaults.fee_bps if args.fee_bps is None else args.fee_bps
    if fee_bps < 0:
        raise UserError(
            f"invalid --fee-bps {fee_bps:g}: a fee cannot be negative (a maker rebate "
            "goes in --maker-bps)"
        )
    maker_bps = args.maker_bps if args.maker_bps is not None else defaults.maker_bps
    slippage_bps = defaults.slippage_bps if args.slippage_bps is None else args.slippage_bps
    taker = fee_bps / 10_000
    maker = (fee_bps if maker_bps is None else maker_bps) / 10_000
    slippage: FixedBps | VolumeParticipation = FixedBps(bps=slippage_bps)
    if args.max_participation is not None:
        slippage = VolumeParticipation(max_participation=args.max_participation, bps=slippage_bps)
    try:
        return BacktestConfig(
            cash=defaults.cash if args.cash is None else args.cash,
            size_pct=_size(args.size),
            allow_short=args.allow_short,
            fees=FeeSchedule(maker=maker, taker=taker),
            slippage=slippage,
            limit_on_touch=args.limit_on_touch,
            stop_loss_pct=args.stop_loss / 100 if args.stop_loss is not None else None,
            take_profit_pct=args.take_profit / 100 if args.take_profit is not None else None,
            trailing_stop_pct=_percent(args.trailing_stop),
            interval=interval,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"invalid backtest setting {where}: {first['msg']}") from None


def _rules(
    symbols: list[str], notes: list[str], known: dict[str, SymbolRules] | None = None
) -> dict[str, SymbolRules]:
    """Real Binance filters (`known`: the venue's, else the bundled capture's); symbols with
    none trade unchecked, said once."""
    known = sample_rules() if known is None else known
    rules: dict[str, SymbolRules] = {}
    for symbol in symbols:
        if symbol in known:
            rules[symbol] = known[symbol]
            continue
        _note(
            notes,
            f"notice: no exchange filters known for {symbol}; orders are not checked "
            "against tickSize, stepSize or minNotional",
        )
        tiny = Decimal("0.00000001")
        rules[symbol] = SymbolRules(
            symbol=symbol,
            base_asset=symbol,
            quote_asset="USDT",
            tick_size=tiny,
            step_size=tiny,
            min_qty=tiny,
            max_qty=Decimal(10**12),
            min_notional=Decimal(0),
        )
    return rules


def check_exchange(args: argparse.Namespace, kind: AssetClass) -> str:
    """The venue whose stored bars the run reads (a stock's, imported or downloaded, are
    Alpaca's; a coin's Binance's unless named); one that cannot apply exits 2."""
    if args.exchange is None:
        return STOCK_EXCHANGE if kind is AssetClass.EQUITY else EXCHANGE
    if args.data is not None:
        raise UserError("--exchange picks the store's bars of a venue: --data reads your own file")
    from venues.registry import listed_symbols, parse_exchange

    exchange = parse_exchange(args.exchange)
    listed_symbols(exchange, args.symbol)  # a stock on a crypto venue, or a coin on Alpaca: exit 2
    return exchange


def _note(notes: list[str], line: str) -> None:
    notes.append(line)
    notify(line)


def _single(
    args: argparse.Namespace,
    strategy: Strategy,
    data: SweepData,
    config: BacktestConfig,
    notes: list[str],
    window: Window,
    store: Store,
    console: Console,
    limits: RiskLimits,
) -> int:
    result = run_backtest(
        data.bars,
        strategy,
        data.rules,
        config,
        limits=limits,
        fee_fn=data.fees,
        hours=data.hours,
        actions=data.actions,
        keep_gate_calls=False,  # the report counts signals and verdicts, not their views
    )
    report = build_report(result, notes, data.rules, window.model_dump())
    console.print(render(report))
    if args.json:
        write_chunks(args.json, report.json_chunks())
        notify(f"wrote {args.json}")
    if args.html:
        from backtest.html import page_files  # plotly loads only when a page is asked for

        for path, text in page_files(args.html, report, result).items():
            write_file(path, text)
        notify(f"wrote {args.html}")
    run_id = save_run(store, report, SystemClock().now_ms())
    notify(f"saved as backtest run #{run_id} in the store")
    if args.check_lookahead:
        from backtest.lookahead import check_lookahead  # loads only when asked for

        problems = check_lookahead(strategy, data.bars, data.rules, config, limits=limits)
        for problem in problems:
            print(f"look-ahead: {problem}", file=sys.stderr)
        if problems:
            return EXIT_RUNTIME
        notify("look-ahead check passed: signals are the same on data truncated at 12 points")
    return 0


def _sweep(
    args: argparse.Namespace,
    cls: type[Strategy],
    params: dict[str, Any],
    data: SweepData,
    config: BacktestConfig,
    store: Store,
    console: Console,
    limits: RiskLimits,
) -> int:
    metric = resolve_metric(args.rank_by)
    grid = parse_grid(cls.name, args.sweep)
    tasks, skipped = plan(cls.name, params, grid, config, limits)
    if skipped:
        notify(f"notice: skipped {skipped} combinations the strategy refuses (e.g. fast >= slow)")
    if not tasks:
        raise UserError("the sweep grid has no valid combination of parameters")
    from rich.progress import (  # a single backtest loads none of the sweep's parts
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from backtest.deflated import sweep_deflated

    columns = (TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    # refreshed by hand: no display thread runs while the pool forks its workers
    progress = Progress(*columns, console=Console(stderr=True), transient=True, auto_refresh=False)
    with progress:
        task = progress.add_task("sweep", total=len(tasks))

        def advance() -> None:
            progress.advance(task)
            progress.refresh()

        if args.executor == "ray":
            rows = run_ray(tasks, data, args.workers, on_done=advance)
        else:
            rows = run_processes(tasks, data, args.workers, on_done=advance)
    ranked = rank(rows, metric)
    table = Table(
        title=f"{cls.name}: {len(rows)} runs ranked by {metric}",
        caption=f"annualised on {ranked[0].annualisation.describe()}; — is n/a (see --json)",
        caption_justify="left",
    )
    table.add_column("#", justify="right")
    for name in grid:
        table.add_column(name, justify="right")
    shown = [metric, *(m for m in ("Return [%]", "Max. Drawdown [%]", "# Trades") if m != metric)]
    for name in shown:
        table.add_column(name, justify="right")
    for place, row in enumerate(ranked[: args.top], start=1):
        table.add_row(
            str(place),
            *(fmt(row.config["params"][n]) for n in grid),
            *(fmt(row.metrics[m]) for m in shown),
        )
    console.print(table)
    deflated = sweep_deflated(ranked, tasks[0], data)
    console.print(deflated.describe())
    if args.json:
        payload = {
            "rank_by": metric,
            "grid": grid,
            "deflated_sharpe": deflated.model_dump(),
            "results": [r.model_dump(exclude={"trades_json", "summary_sha256"}) for r in ranked],
        }
        write_file(args.json, json.dumps(payload, indent=1))
        notify(f"wrote {args.json}")
    now = SystemClock().now_ms()
    for row in rows:
        save_run(store, row, now)
    notify(f"saved the {len(rows)} runs in the store")
    return 0


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    typed = given(build_parser, argv)
    cls, params = _strategy_params(args)
    refuse_inapplicable(typed, args.strategy, bool(args.sweep))
    interval = parse_interval(args.interval)
    llm: dict[str, Any] = {}
    if cls is None:  # the agent, LangGraph and the LLM client load only when the agent runs
        from agent.cli.agent_backtest import agent_params, llm_overrides, run_agent_backtest

        agent_params(args)  # bad agent flags fail before any data is loaded
        llm = llm_overrides(args)
    settings = settings_from(args, llm=llm)
    config = _config(args, interval, settings.backtest)
    strategy = None
    if cls is not None and args.sweep:
        resolve_metric(args.rank_by)
        parse_grid(cls.name, args.sweep)
    elif cls is not None:
        strategy = _build_strategy(cls, params)
    symbols, kind = parse_symbols(args.symbol)
    check_flags(typed, args, kind)
    args.exchange = check_exchange(args, kind)
    console = Console(highlight=False)
    # a new store is made while the agent's first answers are waited on (store/db.py)
    store = open_store(settings.resolved_database_url, settings.timescaledb, defer=cls is None)
    try:
        if kind is AssetClass.EQUITY:
            interval = equity_interval(args, typed, interval, store, symbols[0], args.exchange)
            config = config.model_copy(update={"interval": interval})
            whole_file(args, interval, store, symbols[0], args.exchange)
        notes: list[str] = []
        frames, window = load_frames(
            args, settings, store, symbols, interval, lambda line: _note(notes, line)
        )
        if args.exchange != home_exchange(symbols[0]):  # Bybit's: Alpaca is the one stock venue
            _note(notes, f"notice: {args.exchange} bars and exchange rules, from the store")
        bars, dropped = to_bar_arrays(frames)
        if dropped:
            _note(notes, f"notice: dropped {dropped:,} bars that not every symbol has")
        if kind is AssetClass.EQUITY:
            equity = equity_run(
                args, settings, frames, config, interval, lambda line: _note(notes, line), store
            )
            config = equity.config
            data = SweepData(bars, equity.rules, equity.hours, equity.fees, equity.actions)
        else:
            known = None
            if args.data is None:  # a user's file trades by the bundled filters
                known = venue_rules(
                    settings, store, symbols, lambda line: _note(notes, line), args.exchange
                )
            data = SweepData(bars, _rules(symbols, notes, known))
        if cls is None:
            run = (args, typed, settings, data, frames, config, notes, window, store, console)
            return run_agent_backtest(*run)
        del frames  # a classic run reads only the bar arrays: the columns it never reads go
        if strategy is None:
            return _sweep(args, cls, params, data, config, store, console, settings.risk)
        with collector_relaxed():  # few cycles in the run, its report and its row
            return _single(
                args, strategy, data, config, notes, window, store, console, settings.risk
            )
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
