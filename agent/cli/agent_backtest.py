"""`agent-backtest --strategy agent` (the default): the LLM agent over historical bars through the
same gate and fill model as the classic strategies, with a cost gate, a progress bar, a budget
stop, Ctrl-C to a partial report, and every decision saved in the store."""

from __future__ import annotations

import argparse
import atexit
import gc
import sys
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from agent.cli.agent_flags import consented, require_consent, show_estimate
from agent.cli.common import EXIT_INTERRUPTED, EXIT_OUTAGE, EXIT_RUNTIME, notify, write_file
from agent.cli.flags import offline_notices
from agent.cli.window import Window
from agent.compare import (
    compare,
    open_variant,
    parse_variant,
    render_comparison,
    variant_strategy,
)
from agent.llm import LLMClient
from agent.lookahead import check_agent_lookahead
from agent.model import ChatModel, open_model
from agent.offline import OfflineModel
from agent.outage import OUTAGE
from agent.records import DecisionRecord, save_decisions
from agent.report import agent_report, agent_run_id, check_replayed, render_agent, run_stats
from agent.strategy import AgentParams, AgentStrategy
from backtest import run_backtest
from backtest.config import BacktestConfig
from backtest.runs import save_run
from backtest.scorecard import rule_runs
from backtest.sweep import SweepData
from backtest.terminal import render, render_scorecard
from config import Settings
from core.clock import SystemClock
from core.collector import imports_frozen
from core.errors import UserError
from market.models import INTERVAL_MS, iso_ms
from store import Store
from tools import MarketData

if TYPE_CHECKING:  # the estimate (its store query, SQLAlchemy) loads once it is shown
    from agent.estimate import PerDecision

# At exit the interpreter's teardown runs full collections that rescan every object an agent
# run loaded (pandas, SQLAlchemy, pydantic schemas, the graph) to free nothing the OS is not about
# to reclaim: 0.3 s or more after the report is out. Frozen, they are left out of those scans.
atexit.register(gc.freeze)

HAND_OFF_S = 0.0005  # the interpreter's switch interval while work runs beside the model calls


def llm_overrides(args: argparse.Namespace) -> dict[str, Any]:
    llm: dict[str, Any] = {}
    if args.replay_only:
        llm["mode"] = "replay"
    if args.budget_usd is not None:
        if not args.budget_usd > 0:
            raise UserError(f"invalid --budget-usd {args.budget_usd:g}: must be above 0")
        llm["max_usd"] = args.budget_usd
    return llm


def agent_params(args: argparse.Namespace, settings: Settings) -> AgentParams:
    """The flags, else the settings: a profile's trading.decide_every paces the agent here as it
    does in agent-trade's loop, so a backtest decides on the bars the loop would."""
    if args.compare:
        parse_variant(args.compare)
    every = settings.trading.decide_every if args.decide_every is None else args.decide_every
    try:
        return AgentParams(
            decide_every=every,
            stateful=args.stateful,
            concurrency=args.concurrency,
            samples=args.samples,
        )
    except ValueError as exc:
        first = exc.errors()[0]  # type: ignore[attr-defined]
        flag = "--" + str(first["loc"][0]).replace("_", "-")
        raise UserError(f"invalid {flag}: {first['msg']}") from None


def _per_decision(
    store: Store, model: ChatModel, settings: Settings, strategy: AgentStrategy
) -> PerDecision:
    """Past decisions of this model and prompt when the store has them, else this run's first."""
    from agent.estimate import from_history, from_request

    past = from_history(store, model, strategy.prompt_version)
    if past is not None:
        return past
    symbol, env = strategy.first_decision()
    return from_request(
        env, symbol, strategy.tools, strategy.system_prompt, settings.llm, "this run's first prompt"
    )


def _cadence_notice(from_settings: bool, every: int, strategy: AgentStrategy) -> str | None:
    """How often the agent decides, where the user did not say it or the bars change it."""
    source = "the setting trading.decide_every" if from_settings else "--decide-every"
    if strategy.cadence_min != every:
        return (
            f"notice: the agent decides every {strategy.cadence_min} min: a decision waits for "
            f"a {strategy.market.interval} bar's close, so {source} ({every} min) falls on the "
            "closes where both meet"
        )
    if from_settings:
        return (
            f"notice: the agent decides every {every} min, the setting trading.decide_every "
            "(--decide-every overrides it)"
        )
    return None


def _no_decision_bar(strategy: AgentStrategy, from_settings: bool) -> str:
    """Why the run's bars hold no decision: the warm-up takes them, or none closes on the
    agent's cadence before the last (whose order could not fill)."""
    close, warm = strategy.close_time, strategy.warmup_left
    more = "give more bars (a longer --days, --start/--end or --data file)"
    if len(close) <= warm:
        return (
            f"no decision bar: the run's {len(close):,} bars are fewer than the warm-up of "
            f"{warm:,} bars the agent's indicators need before a decision; {more}"
        )
    every, interval = strategy.p.decide_every, strategy.market.interval
    source = "trading.decide_every" if from_settings else "--decide-every"
    if strategy.cadence_min != every:
        source = f"{source} {every} min on {interval} bars"
    first = iso_ms(int(close[warm]) + 1 - INTERVAL_MS[interval])
    bars = f"{first} → {iso_ms(int(close[-1]) + 1)} UTC"
    window = (
        f"the window {bars}" if not warm else f"the window after {warm:,} bars of warm-up, {bars},"
    )
    return (
        f"no decision bar: the agent decides every {strategy.cadence_min} min ({source}) on the "
        f"close of a bar other than the last (its order could not fill), and {window} holds "
        f"none; {more}"
    )


def run_agent_backtest(
    args: argparse.Namespace,
    typed: set[str],
    settings: Settings,
    data: SweepData,
    frames: dict[str, Any],
    config: BacktestConfig,
    notes: list[str],
    window: Window,
    store: Store,
    console: Console,
) -> int:
    params = agent_params(args, settings)
    variant = parse_variant(args.compare) if args.compare else None
    model = open_model(settings, lambda line: (notes.append(line), notify(line)))
    other = None
    try:
        other = None if variant is None else open_variant(variant, settings, model)
        if isinstance(model, OfflineModel):
            for line in offline_notices(typed, params.samples, args.compare):
                notes.append(line)
                notify(line)
        market = MarketData(frames, config.interval, exchange=args.exchange)
        strategy = AgentStrategy(
            params,
            model=model,
            market=market,
            close_time=data.bars.close_time,
            rules=dict(data.rules),
            cash=config.cash,
            run_id="",
            limits=settings.risk,
            trip_after=settings.llm.breaker_failures,
            market_state=None if data.hours is None else data.hours.state,
        )
        strategy.run_id = agent_run_id(model, data, params, strategy.prompt_version)
        cadence = _cadence_notice(args.decide_every is None, params.decide_every, strategy)
        if cadence is not None:
            notes.append(cadence)
            notify(cadence)
        planned = strategy.planned()
        if planned == 0:
            raise UserError(_no_decision_bar(strategy, args.decide_every is None))
        second = None
        runs = [(model, strategy)]  # each model the run asks, with the agent that asks it
        if variant is not None and other is not None:
            second = variant_strategy(variant, other, strategy, data)
            if other is not model:
                runs.append((other, second))
        estimates = [
            partial(
                show_estimate,
                asked,
                settings,
                planned,
                partial(_per_decision, store, asked, settings, strategy),
                samples=params.samples,
            )
            for asked, _ in runs
        ]
        unconsented = not consented(args) and settings.llm.mode != "replay"
        if not consented(args):  # every model's estimate shown, then a paid run is refused
            # a format still to be probed would be probed to build the prompts: not counted
            counted = settings.llm.decision_format != "probe"
            paying = [
                asked
                for (asked, run), shown in zip(runs, estimates, strict=True)
                if shown(cached=run.cached_decisions if counted else None)
            ]
            require_consent(args, paying)
            for asked, _ in runs:  # every answer is cached: none may be sent after all
                if isinstance(asked, LLMClient):
                    asked.send_nothing()
            estimates = []
        baselines = partial(
            rule_runs,
            data.bars,
            data.rules,
            config,
            strategy.limits,
            data.hours,
            strategy.warmup_left,
            fee_fn=data.fees,
            actions=data.actions,
            warmup=data.warmup,
        )
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="baselines") as pool:
            # a new store is made (open_store put it off), the estimate of a run whose
            # spending was accepted up front (--yes or --budget-usd) shown (its tokenizer
            # loaded), and the rule baselines, which need only the bars, run: one at a wave
            side = _BetweenWaves(
                pool, [store.settle, *estimates, baselines], min(strategy.workers, planned)
            )
            result = _with_progress(strategy, model, planned, data, config, side.answered)
            ruled = side.result()
        check_replayed(strategy, not unconsented)
        report, records, section = agent_report(
            strategy,
            result,
            model,
            data.rules,
            config,
            notes,
            window.model_dump(),
            settings.scorecard.ledger_minutes,
            ruled,
        )
        if variant is not None and second is not None:
            paired = compare(variant, second, strategy, result, records, model, data)
            check_replayed(second, not unconsented)
            if paired.na is not None:
                notify(f"notice: the comparison is n/a: {paired.na}")
            scored = {**(report.scorecard or {}), "compare": paired.model_dump(mode="json")}
            report = report.model_copy(update={"scorecard": scored})
        stats = run_stats(model.stats, None if other in (None, model) else other.stats)
        console.print(render(report))
        console.print(render_agent(section, stats))
        console.print(render_scorecard(report.scorecard or {}))
        if variant is not None:
            console.print(render_comparison(report.scorecard["compare"]))
        _write_outputs(args, report, result, stats)
        run_id = save_run(store, report, SystemClock().now_ms())
        save_decisions(store, records)
        notify(f"saved as backtest run #{run_id} with {len(records):,} decisions in the store")
        if args.check_lookahead and not _lookahead_passed(strategy, frames, records):
            return EXIT_RUNTIME
        return _closing(strategy, records)
    finally:
        model.close()
        if other is not None and other is not model:
            other.close()


class _BetweenWaves:
    """Work that need not delay the model calls, a step a wave: a step starts once a wave of
    answers (one per decision thread) is in and its threads have moved on to their next
    requests, so it runs while the next wave is waited on, not beside those hand-offs. While
    it runs the interpreter is handed on every `HAND_OFF_S`, not every 5 ms, so an answer's
    thread is not held up behind it either. What a step loads and keeps (SQLAlchemy, the
    tokenizer, the baselines' runs) is frozen out of the collector's reach, as a command's own
    imports are: left young, those 100,000 objects were rescanned by the run's next
    collection, 25 ms that fell after the last answer. `result` runs the steps left and
    returns the last one's result."""

    def __init__(self, pool: ThreadPoolExecutor, steps: list[Callable[[], Any]], wave: int) -> None:
        self._pool = pool
        self._steps = steps
        self._wave = wave
        self._answers = 0
        self._started: list[Future[Any]] = []
        self._lock = threading.Lock()

    def answered(self) -> None:
        with self._lock:
            self._answers += 1
            if self._answers % self._wave == 0:
                self._start_next()

    def result(self) -> Any:
        with self._lock:
            while len(self._started) < len(self._steps):
                self._start_next()
        for step in self._started:
            step.result()  # the first failure is raised
        return self._started[-1].result()

    def _start_next(self) -> None:
        if len(self._started) < len(self._steps):
            step = self._steps[len(self._started)]
            self._started.append(self._pool.submit(_handing_on, step))


def _handing_on(step: Callable[[], Any]) -> Any:
    switch = sys.getswitchinterval()
    sys.setswitchinterval(HAND_OFF_S)
    try:
        with imports_frozen():
            return step()
    finally:
        sys.setswitchinterval(switch)


def _with_progress(
    strategy: AgentStrategy,
    model: ChatModel,
    planned: int,
    data: SweepData,
    config: BacktestConfig,
    answered: Callable[[], None],
) -> Any:
    columns = (
        TextColumn("deciding"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[llm]}"),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("deciding", total=planned, llm="")

        def advanced(_: DecisionRecord) -> None:
            answered()
            stats = model.stats
            cost = "cost n/a" if stats.cost_usd is None else f"${stats.cost_usd:.4f}"
            text = f"calls {stats.calls} · cache hits {stats.cache_hits} · {cost}"
            progress.update(task, advance=1, llm=text)

        def interrupted(on_wire: int) -> None:
            asked = f"{on_wire} request{'s' if on_wire != 1 else ''} on the wire"
            waiting = f"waiting for the answers to {asked}, then " if on_wire else ""
            notify(f"interrupted: {waiting}writing a partial report")

        strategy.on_decision = advanced
        strategy.on_interrupt = interrupted
        return run_backtest(
            data.bars,
            strategy,
            data.rules,
            config,
            limits=strategy.limits,
            fee_fn=data.fees,
            hours=data.hours,
            actions=data.actions,
            warmup=data.warmup,
        )


def _write_outputs(args: argparse.Namespace, report: Any, result: Any, stats: Any) -> None:
    if args.json:
        write_file(args.json, report.to_json())
        notify(f"wrote {args.json}")
    if args.html:
        from backtest.html import page_files  # plotly loads only when a page is asked for

        shown = {**report.agent, "run": stats.facts()}
        shown_report = report.model_copy(update={"agent": shown})
        for path, text in page_files(args.html, shown_report, result).items():
            write_file(path, text)
        notify(f"wrote {args.html}")


def _lookahead_passed(
    strategy: AgentStrategy, frames: dict[str, Any], records: list[DecisionRecord]
) -> bool:
    problems, checked = check_agent_lookahead(strategy, frames, records)
    for problem in problems:
        notify(f"look-ahead: {problem}")
    if not problems:
        notify(
            f"look-ahead check passed: {checked} decisions made again on data cut at their "
            "time gave the same tool inputs, tool results and signals"
        )
    return not problems


def _closing(strategy: AgentStrategy, records: list[DecisionRecord]) -> int:
    if strategy.stopped == "budget":
        notify(
            f"notice: the budget ran out after {len(records):,} decisions; the report covers them"
        )
    if strategy.stopped == OUTAGE:
        notify(
            f"error: the LLM endpoint failed {strategy.breaker.trip_after} decisions in a row "
            f"(abstains: {_causes(records)}); stopped after {len(records):,} decisions with a "
            "partial report. Check the endpoint, or raise AGENT_LLM__TIMEOUT_S"
        )
        return EXIT_OUTAGE
    if strategy.stopped == "interrupted":
        notify(f"interrupted: partial report of {len(records):,} decisions written")
        return EXIT_INTERRUPTED
    return 0


def _causes(records: list[DecisionRecord]) -> str:
    causes = Counter(r.abstain["cause"] for r in records if r.abstain)
    return ", ".join(f"{cause} {n}" for cause, n in causes.most_common())
