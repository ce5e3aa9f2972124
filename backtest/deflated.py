"""The deflated Sharpe ratio (Bailey and López de Prado, 2014): the best of N trials has a high
Sharpe ratio by luck alone, so its Sharpe is tested against the one expected from the best of N
unskilled trials (from the spread of the trials' Sharpe ratios), allowing for the skew and fat
tails of its returns and for the number of returns. The result is a probability that the true
Sharpe ratio is above zero after the search."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
from pydantic import BaseModel

from backtest.annualise import MIN_RETURNS, NOISE_FLOOR, choose_basis
from backtest.engine import run_backtest
from backtest.report import SweepRow
from backtest.strategies import STRATEGIES
from backtest.sweep import SweepData, SweepTask
from market.models import interval_ms

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


class DeflatedSharpe(BaseModel):
    trials: int
    sharpe: float | None = None  # the selected trial's, per period of its returns
    expected_max_sharpe: float | None = None  # of N unskilled trials, per period
    probability: float | None = None
    na: str | None = None

    def describe(self) -> str:
        if self.na:
            return f"deflated Sharpe ratio of #1 over {self.trials} trials: n/a ({self.na})"
        return (
            f"deflated Sharpe ratio of #1 over {self.trials} trials: {self.probability:.3f} "
            f"(the probability its true Sharpe is above zero, given the best of "
            f"{self.trials} unskilled trials would show {self.expected_max_sharpe:.4f} per period "
            f"against its {self.sharpe:.4f})"
        )


def expected_max_sharpe(trial_sharpes: Sequence[float]) -> float:
    """E[max] of N per-period Sharpe ratios with the trials' variance and zero true mean."""
    n = len(trial_sharpes)
    if n < 2:
        return 0.0
    spread = float(np.std(trial_sharpes, ddof=1))
    return spread * (
        (1 - EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / n)
        + EULER_GAMMA * _NORMAL.inv_cdf(1 - 1 / (n * math.e))
    )


def deflated_sharpe(trial_sharpes: Sequence[float], returns: np.ndarray) -> DeflatedSharpe:
    """`trial_sharpes`: every trial's per-period Sharpe; `returns`: the selected trial's."""
    trials = len(trial_sharpes)
    if len(returns) < MIN_RETURNS:
        return DeflatedSharpe(trials=trials, na=f"{len(returns)} returns, fewer than {MIN_RETURNS}")
    std = float(returns.std(ddof=1))
    if std <= NOISE_FLOOR:
        return DeflatedSharpe(trials=trials, na="the selected run's returns have no spread")
    sharpe = float(returns.mean()) / std
    centred = (returns - returns.mean()) / returns.std()
    skew, kurtosis = float(np.mean(centred**3)), float(np.mean(centred**4))
    benchmark = expected_max_sharpe(trial_sharpes)
    spread = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2
    z = (sharpe - benchmark) * math.sqrt(len(returns) - 1) / math.sqrt(max(spread, 1e-12))
    return DeflatedSharpe(
        trials=trials,
        sharpe=round(sharpe, 6),
        expected_max_sharpe=round(benchmark, 6),
        probability=round(_NORMAL.cdf(z), 4),
    )


def sweep_deflated(ranked: list[SweepRow], task: SweepTask, data: SweepData) -> DeflatedSharpe:
    """For the top of a sweep's ranking: its returns come from running it again here, on the
    basis its metrics used; every trial's Sharpe ratio, de-annualised, gives the spread."""
    best = ranked[0]
    periods = best.annualisation.periods_per_year
    sharpes = [r.metrics.get("Sharpe Ratio") for r in ranked]
    usable = [s / math.sqrt(periods) for s in sharpes if s is not None and periods]
    if len(usable) < len(ranked):
        return DeflatedSharpe(trials=len(ranked), na="some trials have no Sharpe ratio")
    cls = STRATEGIES[task.strategy]
    config = task.config
    strategy = cls(cls.Params(**best.config["params"]))
    result = run_backtest(
        data.bars,
        strategy,
        data.rules,
        config,
        limits=task.limits,
        fee_fn=data.fees,
        hours=data.hours,
        actions=data.actions,
        warmup=data.warmup,
    )
    step = interval_ms(config.interval)
    _, returns = choose_basis(
        result.equity, data.bars.open_time, step, config.periods_per_year, config.bars_per_session
    )
    return deflated_sharpe(usable, returns)
