"""`agent-backtest`'s run, once its flags are checked: the bars, the store, the engine and the
report (agent.cli.backtest loads it after parsing)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from agent.cli.backtest_flags import _build_strategy, _config, _note, _rules, check_exchange
from agent.cli.common import EXIT_RUNTIME, notify, settings_from, write_chunks, write_file
from agent.cli.equity import check_flags, equity_interval, equity_run, parse_symbols, whole_file
from agent.cli.window import Window, load_frames, venue_rules, with_warmup
from backtest import BacktestResult, run_backtest
from backtest.config import BacktestConfig
from backtest.data import to_bar_arrays, warmup_arrays
from backtest.metrics import warmup_shortfall
from backtest.report import build_report
from backtest.runs import save_run
from backtest.sweep import (
    SweepData,
    parse_grid,
    plan,
    rank,
    resolve_metric,
    run_processes,
    run_ray,
)
from backtest.terminal import fmt, metric_text, render
from core.clock import SystemClock
from core.collector import collector_relaxed
from core.errors import UserError
from execution.feed import BarArrays
from market.instruments import AssetClass, home_exchange
from market.models import iso_ms, parse_interval
from risk.limits import RiskLimits
from runtime.strategy import Strategy
from store import Store, open_store


def warmup_line(warmup: BarArrays) -> str:
    """What the report says of the warm-up its indicators and the gate's ATR started from."""
    first = iso_ms(int(warmup.open_time[0]))
    return f"warm-up: {len(warmup):,} bars before the window, from {first} UTC (as the paper loop)"


def classic_run(
    strategy: Strategy,
    data: SweepData,
    config: BacktestConfig,
    limits: RiskLimits,
    note: Callable[[str], None],
) -> BacktestResult:
    """A classic strategy over the window from its warm-up, saying when the warm-up leaves it
    nothing to trade on: agent-backtest's run and the UI's."""
    result = run_backtest(
        data.bars,
        strategy,
        data.rules,
        config,
        limits=limits,
        fee_fn=data.fees,
        hours=data.hours,
        actions=data.actions,
        keep_signals=False,  # the report counts signals and verdicts
        warmup=data.warmup,
    )
    shortfall = warmup_shortfall(strategy.name, result.warmup_left, len(data.bars))
    if shortfall:
        note(f"notice: {shortfall}: it cannot trade")
    return result


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
    result = classic_run(strategy, data, config, limits, lambda line: _note(notes, line))
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
            *(metric_text(m, row.metrics[m]) for m in shown),
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


def run_parsed(
    args: argparse.Namespace,
    typed: set[str],
    cls: type[Strategy] | None,
    params: dict[str, Any],
) -> int:
    """The run the checked flags ask for: one backtest, a sweep, or the agent's."""
    interval = parse_interval(args.interval)
    llm: dict[str, Any] = {}
    if cls is None:  # the agent, LangGraph and the LLM client load only when the agent runs
        from agent.cli.agent_backtest import agent_params, llm_overrides, run_agent_backtest

        llm = llm_overrides(args)
    settings = settings_from(args, llm=llm)
    if cls is None:
        agent_params(args, settings)  # bad agent flags fail before any data is loaded
    config = _config(args, interval, settings.backtest)
    strategy = None
    if cls is not None and args.sweep:
        resolve_metric(args.rank_by)
        fixed = [name for name in parse_grid(cls.name, args.sweep) if name in params]
        if fixed:  # the sweep's values would replace the flag's without a word
            shown = fixed[0].replace("_", "-")
            raise UserError(f"--{shown} fixes a parameter --sweep varies: give one or the other")
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
        frames, warm_frames, window = load_frames(
            args, settings, store, symbols, interval, lambda line: _note(notes, line)
        )
        if args.exchange != home_exchange(symbols[0]):  # Bybit's: Alpaca is the one stock venue
            _note(notes, f"notice: {args.exchange} bars and exchange rules, from the store")
        bars, dropped = to_bar_arrays(frames)
        if dropped:
            _note(notes, f"notice: dropped {dropped:,} bars that not every symbol has")
        warmup = warmup_arrays(warm_frames)
        if warmup is not None:
            _note(notes, warmup_line(warmup))
        if kind is AssetClass.EQUITY:
            equity = equity_run(
                args, settings, frames, config, interval, lambda line: _note(notes, line), store
            )
            config = equity.config
            data = SweepData(bars, equity.rules, equity.hours, equity.fees, equity.actions, warmup)
        else:
            known = None
            if args.data is None:  # a user's file trades by the bundled filters
                known = venue_rules(
                    settings, store, symbols, lambda line: _note(notes, line), args.exchange
                )
            data = SweepData(bars, _rules(symbols, notes, known), warmup=warmup)
        if cls is None:
            if warmup is not None:  # the agent's tools read it, as its gate's ATR does
                frames = with_warmup(frames, warm_frames)
            run = (args, typed, settings, data, frames, config, notes, window, store, console)
            return run_agent_backtest(*run)
        del (
            frames,
            warm_frames,
        )  # a classic run reads only the bar arrays: the columns it never reads go
        if strategy is None:
            return _sweep(args, cls, params, data, config, store, console, settings.risk)
        with collector_relaxed():  # few cycles in the run, its report and its row
            return _single(
                args, strategy, data, config, notes, window, store, console, settings.risk
            )
    finally:
        store.close()
