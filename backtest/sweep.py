"""Parameter sweeps: a grid of strategy parameters run in parallel and ranked by one metric.

`evaluate(task, data)` is a pure top-level function of picklable inputs, so a process pool
and Ray (or any distributed engine) run it unchanged. On Linux the pool's workers are forks
of this process, which hold the bars and the task list already (copy-on-write): a task
crosses as its index, in chunks, and comes back as a `SweepRow` (figures, and the trades as
one JSON string). Elsewhere the bars and the tasks travel once per worker."""

from __future__ import annotations

import gc
import itertools
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError

from backtest.config import BacktestConfig
from backtest.engine import run_backtest
from backtest.metrics import METRIC_ORDER
from backtest.report import RunSummary, SweepRow, summary
from backtest.strategies import STRATEGIES
from core.errors import UserError
from execution.feed import BarArrays
from execution.fees import FeeFn
from market.corporate import CorporateActions
from market.models import SymbolRules
from risk.limits import RiskLimits
from runtime.hours import TradingHours

LOWER_IS_BETTER = frozenset({"Volatility (Ann.) [%]", "Fees [$]", "Rejected Orders"})
_NOT_RANKABLE = frozenset(
    {
        "Start",
        "End",
        "Duration",
        "Max. Drawdown Duration",
        "Avg. Drawdown Duration",
        "Max. Trade Duration",
        "Avg. Trade Duration",
    }
)
RANKABLE = tuple(name for name in METRIC_ORDER if name not in _NOT_RANKABLE)


class SweepData(NamedTuple):
    """What every task shares; shipped once per worker (or once into Ray's object store)."""

    bars: BarArrays
    rules: Mapping[str, SymbolRules]
    hours: TradingHours | None = None  # US stocks: the hours orders fill in
    fees: FeeFn | None = None  # US stocks: commission plus the SEC and FINRA fees on sales
    actions: CorporateActions | None = None  # US stocks: splits and dividends on raw prices
    warmup: BarArrays | None = None  # the bars before the window (run_backtest's warm-up)


class SweepTask(BaseModel):
    model_config = ConfigDict(frozen=True)

    strategy: str
    params: dict[str, Any]
    config: BacktestConfig
    limits: RiskLimits


def evaluate(task: SweepTask, data: SweepData) -> RunSummary:
    """One grid point: a full backtest, returned without the per-bar curves."""
    cls = STRATEGIES[task.strategy]
    strategy = cls(cls.Params(**task.params))
    result = run_backtest(
        data.bars,
        strategy,
        data.rules,
        task.config,
        limits=task.limits,
        fee_fn=data.fees,
        hours=data.hours,
        actions=data.actions,
        keep_signals=False,  # a point ships back its summary, which counts them
        warmup=data.warmup,
    )
    return summary(result, rules=data.rules)


def metric_slug(name: str) -> str:
    """'Max. Drawdown [%]' -> 'max_drawdown', '# Trades' -> 'trades': easy to type."""
    bare = re.sub(r"\[.*?\]", "", name.lower())
    return re.sub(r"[^a-z0-9]+", "_", bare).strip("_")


def resolve_metric(raw: str) -> str:
    """A metric by its report name or its slug, case-insensitive; else a UserError listing them."""
    wanted = raw.strip().lower()
    for name in RANKABLE:
        if wanted in (name.lower(), metric_slug(name)):
            return name
    raise UserError(
        f"unknown metric {raw!r} for --rank-by: use one of {', '.join(map(metric_slug, RANKABLE))}"
    )


def _axis(name: str, spec: str, kind: type) -> list[Any]:
    """'10:50:10' -> 10..50 inclusive in steps of 10; '10,20,35' -> exactly those."""
    try:
        if ":" in spec:
            start, stop, step = (kind(part) for part in spec.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = math.floor((stop - start) / step + 1e-9) + 1
            return [kind(start + i * step) for i in range(count)]
        return [kind(part) for part in spec.split(",")]
    except ValueError:
        raise UserError(
            f"invalid --sweep {name}={spec}: expected START:STOP:STEP (STOP >= START, STEP > 0) "
            f"or a comma list of {kind.__name__} values"
        ) from None


def parse_grid(strategy: str, specs: Iterable[str]) -> dict[str, list[Any]]:
    """`--sweep fast=10:50:10` flags into one axis per strategy parameter."""
    fields = STRATEGIES[strategy].Params.model_fields
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in fields:
            raise UserError(
                f"invalid --sweep {spec!r}: expected NAME=START:STOP:STEP with NAME one of "
                f"{', '.join(fields)} for {strategy}"
            )
        if name in grid:
            raise UserError(f"--sweep names {name} twice: give each parameter one range")
        grid[name] = _axis(name, values.strip(), fields[name].annotation)
    return grid


def plan(
    strategy: str,
    base: Mapping[str, Any],
    grid: Mapping[str, list[Any]],
    config: BacktestConfig,
    limits: RiskLimits,
) -> tuple[list[SweepTask], int]:
    """Every valid combination as a task; combinations the strategy refuses (fast >= slow) are
    skipped and counted, not run."""
    params_model = STRATEGIES[strategy].Params
    tasks: list[SweepTask] = []
    skipped = 0
    for combo in itertools.product(*grid.values()):
        params = {**base, **dict(zip(grid, combo, strict=True))}
        try:
            checked = params_model(**params)
        except ValidationError:
            skipped += 1
            continue
        tasks.append(
            SweepTask(strategy=strategy, params=checked.model_dump(), config=config, limits=limits)
        )
    return tasks, skipped


def evaluate_row(task: SweepTask, data: SweepData) -> SweepRow:
    """One grid point as a worker sends it back."""
    return SweepRow.of(evaluate(task, data))


_WORKER: dict[str, Any] = {}  # a worker's tasks and bars


def _init_worker(tasks: list[SweepTask], data: SweepData) -> None:
    _WORKER.update(tasks=tasks, data=data)


def _evaluate_in_worker(indices: range) -> list[SweepRow]:
    return [evaluate_row(_WORKER["tasks"][index], _WORKER["data"]) for index in indices]


def _guided(count: int, workers: int) -> list[range]:
    """Task indices in chunks that shrink as the work left does (guided self-scheduling): few
    round trips while much is left, single points at the end, so both workers finish within
    about one point of each other rather than one chunk."""
    chunks, start = [], 0
    while start < count:
        size = -(-(count - start) // (4 * workers))
        chunks.append(range(start, start + size))
        start += size
    return chunks


def run_processes(
    tasks: list[SweepTask],
    data: SweepData,
    workers: int | None = None,
    on_done: Callable[[], None] | None = None,
) -> list[SweepRow]:
    """A local process pool; results come back in task order, in chunks that shrink towards
    the end (`_guided`): both workers stay busy to the end while the round trips stay few."""
    import multiprocessing  # a single backtest, which only needs SweepData, loads no pool
    from concurrent.futures import ProcessPoolExecutor

    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    forked = sys.platform == "linux"  # macOS can fork but its system libraries may not survive it
    context = multiprocessing.get_context("fork" if forked else None)
    _init_worker(tasks, data)  # what forked workers inherit
    initargs = () if forked else (tasks, data)
    rows: list[SweepRow] = []
    if forked:  # a worker's collections then skip the parent's objects: no page copied for them
        gc.freeze()
    try:
        with ProcessPoolExecutor(
            workers, context, initializer=None if forked else _init_worker, initargs=initargs
        ) as pool:
            for chunk in pool.map(_evaluate_in_worker, _guided(len(tasks), workers)):
                for row in chunk:
                    rows.append(row)
                    if on_done:
                        on_done()
    finally:
        gc.unfreeze()
        _WORKER.clear()
    return rows


def run_ray(
    tasks: list[SweepTask],
    data: SweepData,
    workers: int | None = None,
    on_done: Callable[[], None] | None = None,
) -> list[SweepRow]:
    """The same `evaluate` as Ray tasks; the bars go into the object store once. Joins the
    cluster in RAY_ADDRESS (or one already initialised), else starts a local Ray instance."""
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'agent-trader[ray]'") from None
    started = not ray.is_initialized()
    if started and os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
    elif started:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        shared = ray.put(data)
        remote = ray.remote(evaluate_row)
        pending = [remote.remote(task, shared) for task in tasks]
        rows = []
        for ref in pending:
            rows.append(ray.get(ref))
            if on_done:
                on_done()
        return rows
    finally:
        if started:
            ray.shutdown()


def rank(rows: list[SweepRow], metric: str) -> list[SweepRow]:
    """Best first; runs where the metric is undefined (no trades, say) go last."""
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0

    def key(row: SweepRow) -> tuple[bool, float]:
        value = row.metrics.get(metric)
        return (value is None, sign * value if value is not None else 0.0)

    return sorted(rows, key=key)
