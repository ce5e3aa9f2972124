"""Does the strategy earn its keep? Its result, net of fees, slippage and the model's cost, beside
buy-and-hold, the rule strategies and a seeded random-entry strategy that trades as often and as
long, all run on the same bars through the same gate and fills; with block-bootstrap intervals,
the probability of beating each, the veto ledger and the confidence calibration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from backtest.annualise import choose_basis
from backtest.baselines import (
    BuyAndHold,
    BuyAndHoldParams,
    RandomEntry,
    RandomEntryParams,
    fitting,
    shape_of,
)
from backtest.bootstrap import (
    DRAWS,
    Interval,
    block_indices,
    interval,
    p_greater,
    sharpe,
    too_short,
    total_return,
)
from backtest.calibration import Calibration, Stated, calibration
from backtest.config import BacktestConfig
from backtest.engine import BacktestResult, run_backtest
from backtest.metrics import equity_metrics
from backtest.strategies import STRATEGIES
from backtest.veto_ledger import HORIZONS_MIN, VetoLedger, veto_ledger
from execution.feed import BarArrays
from execution.fees import FeeFn
from execution.orders import ExitReason
from market.corporate import CorporateActions
from market.models import SymbolRules, interval_ms
from risk.limits import RiskLimits
from runtime.hours import TradingHours
from runtime.strategy import Strategy

SEEDS = (1, 2, 3, 4, 5)
BOOTSTRAP_SEED = 27
RANDOM = "random_entry"
EQUITY_ONLY = frozenset(
    {"momentum"}
)  # new baselines join stock runs; crypto reports stay as they were


class Figures(BaseModel):
    """One run's headline figures; `vetoed` shows the gate worked on it too."""

    return_pct: float | None
    sharpe: float | None
    sharpe_na: str | None = None  # why `sharpe` is n/a (backtest.annualise)
    max_drawdown_pct: float | None
    trades: int  # closed, as the report's # Trades
    open_at_end: int = 0  # trades still open on the last bar, marked there
    vetoed: dict[str, int] = {}
    return_ci: Interval = Interval()
    sharpe_ci: Interval = Interval()


class RandomBaseline(BaseModel):
    """The median over seeds and the spread (lowest, highest), plus what it was matched to."""

    seeds: list[int]
    matched: dict[str, Any]
    median: Figures
    return_range: list[float | None]
    per_seed: list[Figures]


class AgentFigures(Figures):
    fees_usd: float
    llm_cost_usd: float | None
    net_return_pct: float | None  # after fees, slippage (in the fills) and the model's cost


class Intervals(BaseModel):
    level: float = 0.95
    basis: str
    draws: int = DRAWS
    na: str | None = None
    p_beats_buy_and_hold: float | None = None
    p_beats_random: float | None = None


class Scorecard(BaseModel):
    agent: AgentFigures
    baselines: dict[str, Figures | RandomBaseline]
    intervals: Intervals
    veto_ledger: VetoLedger
    calibration: Calibration
    llm_cost_usd: float | None
    llm_cost_na: str | None = None


def scorecard(
    result: BacktestResult,
    rules: Mapping[str, SymbolRules],
    stated: Sequence[Stated],
    llm_cost_usd: float | None,
    llm_cost_na: str | None = None,
    horizons_min: Sequence[int] = HORIZONS_MIN,
    ruled: Mapping[str, BacktestResult] | None = None,
) -> Scorecard:
    """`result` is the agent's run; every baseline replays its bars, config and limits.
    `ruled` is `rule_runs` of the same, when the caller ran them while the model decided."""
    shape = shape_of(result)
    start = result.warmup_left  # where the run could first act, after its warm-up
    costs = costs_of(result)
    same = {"rules": rules, "config": result.config, "limits": result.limits, **costs}
    runs = dict(
        ruled
        if ruled is not None
        else rule_runs(
            result.bars,
            rules,
            result.config,
            result.limits,
            result.hours,
            start,
            warmup=result.warmup,
            **costs,
        )
    )
    randoms = [
        _run(
            result,
            RandomEntry(RandomEntryParams(seed=seed, start=start, **shape.model_dump())),
            same,
        )
        for seed in SEEDS
    ]
    cost = llm_cost_usd or 0.0
    cash = float(result.equity[0])
    returns, intervals = _resampled(result, [*runs.values(), *randoms], cost)
    boots = dict(zip([*runs, *(f"{RANDOM}:{s}" for s in SEEDS)], returns[1:], strict=True))
    agent = _figures(result, returns[0])
    net = (
        None
        if llm_cost_usd is None or agent.return_pct is None
        else agent.return_pct - cost / cash * 100
    )
    baselines: dict[str, Figures | RandomBaseline] = {
        name: _figures(run, boots[name]) for name, run in runs.items()
    }
    per_seed = [
        _figures(run, boots[f"{RANDOM}:{s}"]) for s, run in zip(SEEDS, randoms, strict=True)
    ]
    fits = {
        s: fitting(len(result.bars), k, shape.hold_bars, start) for s, k in shape.entries.items()
    }
    baselines[RANDOM] = _random(per_seed, {**shape.model_dump(mode="json"), "fit": fits})
    if returns[0] is not None:
        intervals.p_beats_buy_and_hold = _p_beats(returns[0], [boots["buy_and_hold"]])
        intervals.p_beats_random = _p_beats(returns[0], [boots[f"{RANDOM}:{s}"] for s in SEEDS])
    return Scorecard(
        agent=AgentFigures(
            **agent.model_dump(),
            fees_usd=round(result.fees, 2),
            llm_cost_usd=llm_cost_usd,
            net_return_pct=None if net is None else round(net, 4),
        ),
        baselines=baselines,
        intervals=intervals,
        veto_ledger=veto_ledger(result, horizons_min),
        calibration=calibration(stated, result.bars),
        llm_cost_usd=llm_cost_usd,
        llm_cost_na=llm_cost_na,
    )


def rule_runs(
    bars: BarArrays,
    rules: Mapping[str, SymbolRules],
    config: BacktestConfig,
    limits: RiskLimits,
    hours: TradingHours | None,
    start: int,
    *,
    fee_fn: FeeFn | None = None,
    actions: CorporateActions | None = None,
    warmup: BarArrays | None = None,
) -> dict[str, BacktestResult]:
    """Buy-and-hold and the rule strategies need the bars, not the agent's run, so an LLM
    backtest can run them while it waits on the model (only the random baseline, matched to the
    agent's trades, must wait for the run). `fee_fn` and `actions` are the run's own (a stock's
    SEC fee and TAF, its splits), so every baseline pays and is adjusted as the strategy is.
    `warmup` is the run's too: each rule starts warm, as `agent-backtest --strategy NAME` over
    the same window does; buy-and-hold buys at `start`, a bar of the window, so takes none."""
    same: dict[str, Any] = {"limits": limits, "hours": hours, "fee_fn": fee_fn, "actions": actions}
    runs = {
        "buy_and_hold": run_backtest(
            bars, BuyAndHold(BuyAndHoldParams(start=start), len(rules)), rules, config, **same
        )
    }
    for name, cls in STRATEGIES.items():
        if name not in EQUITY_ONLY or hours is not None:
            runs[name] = run_backtest(bars, cls(cls.Params()), rules, config, warmup=warmup, **same)
    return runs


def costs_of(result: BacktestResult) -> dict[str, Any]:
    """The fee model and corporate actions a run was given, for baselines to share."""
    venue = result.venue
    fee_fn = venue.fees if venue is not None and result.fee_function is not None else None
    return {"fee_fn": fee_fn, "actions": result.actions}


def _run(like: BacktestResult, strategy: Strategy, same: dict[str, Any]) -> BacktestResult:
    return run_backtest(
        like.bars,
        strategy,
        same["rules"],
        same["config"],
        limits=same["limits"],
        hours=like.hours,
        fee_fn=same["fee_fn"],
        actions=same["actions"],
    )


@dataclass(frozen=True)
class _Boot:
    """Resampled total returns (fractions) and Sharpe ratios of one run."""

    totals: np.ndarray
    sharpes: np.ndarray


def _resampled(
    agent: BacktestResult, others: list[BacktestResult], cost: float
) -> tuple[list[_Boot | None], Intervals]:
    """Every run resampled with the same blocks of the same periods. The agent's model cost is
    spread evenly over its periods, so its intervals are net of it."""
    bars, config = agent.bars, agent.config
    step = interval_ms(config.interval)
    bases = [
        choose_basis(
            r.equity, bars.open_time, step, config.periods_per_year, config.bars_per_session
        )
        for r in (agent, *others)
    ]
    basis = bases[0][0]
    why = too_short(basis.returns) if basis.frequency != "none" else too_short(0)
    if basis.frequency == "none" or why:
        na = why or f"too short to resample: {basis.method}"
        return [None] * len(bases), Intervals(basis=basis.describe(), na=na)
    rows = block_indices(basis.returns, DRAWS, BOOTSTRAP_SEED)
    periods = float(basis.periods_per_year or 0)
    boots: list[_Boot | None] = []
    for i, (_, series) in enumerate(bases):
        shift = cost / float(agent.equity[0]) / len(series) if i == 0 else 0.0
        sample = series[rows] - shift
        boots.append(_Boot(totals=total_return(sample), sharpes=sharpe(sample, periods)))
    return boots, Intervals(basis=f"block bootstrap of {basis.describe()}")


def _figures(run: BacktestResult, boot: _Boot | None) -> Figures:
    step = interval_ms(run.config.interval)
    values, basis = equity_metrics(
        run.equity,
        run.bars.open_time,
        step,
        run.config.periods_per_year,
        run.config.bars_per_session,
    )
    na = Interval(na="too short to resample") if boot is None else None
    sharpe_ratio = _num(values["Sharpe Ratio"])
    still_open = sum(t.exit_reason is ExitReason.END_OF_DATA for t in run.trades)
    return Figures(
        return_pct=_num(values["Return [%]"]),
        sharpe=sharpe_ratio,
        sharpe_na=None if sharpe_ratio is not None else basis.not_available["Sharpe Ratio"],
        max_drawdown_pct=_num(values["Max. Drawdown [%]"]),
        trades=len(run.trades) - still_open,
        open_at_end=still_open,
        vetoed=dict(sorted(run.vetoes.items())),
        return_ci=na or interval(boot.totals, 100),
        sharpe_ci=na or interval(boot.sharpes),
    )


def _random(per_seed: list[Figures], matched: dict[str, Any]) -> RandomBaseline:
    def median(name: str) -> float | None:
        values = [getattr(f, name) for f in per_seed if getattr(f, name) is not None]
        return round(float(np.median(values)), 4) if values else None

    returns = [f.return_pct for f in per_seed if f.return_pct is not None]
    middle = sorted(per_seed, key=lambda f: f.return_pct or 0.0)[len(per_seed) // 2]
    sharpe_ratio = median("sharpe")  # n/a only where every seed's is, the middle one's too
    return RandomBaseline(
        seeds=list(SEEDS),
        matched=matched,
        median=Figures(
            return_pct=median("return_pct"),
            sharpe=sharpe_ratio,
            sharpe_na=middle.sharpe_na if sharpe_ratio is None else None,
            max_drawdown_pct=median("max_drawdown_pct"),
            trades=int(np.median([f.trades for f in per_seed])),
            open_at_end=int(np.median([f.open_at_end for f in per_seed])),
            vetoed=middle.vetoed,
            return_ci=middle.return_ci,
            sharpe_ci=middle.sharpe_ci,
        ),
        return_range=[min(returns), max(returns)] if returns else [None, None],
        per_seed=per_seed,
    )


def _p_beats(agent: _Boot, others: list[_Boot | None]) -> float | None:
    """Share of paired resamples where the agent's total return is higher, a tie counting half
    (bootstrap.p_greater); several baselines (the random seeds) take turns across the
    resamples."""
    if any(o is None for o in others):
        return None
    stacked = np.stack([o.totals for o in others if o is not None])
    draws = np.arange(len(agent.totals))
    return p_greater(agent.totals, stacked[draws % len(stacked), draws])


def _num(value: Any) -> float | None:
    value = float(value)
    return round(value, 4) if np.isfinite(value) else None
