"""How much of a result is luck: a moving-block bootstrap of period returns. Blocks keep the
short-range dependence of market returns that an i.i.d. resample would destroy. Runs on the same
bars are resampled with the same blocks, so their differences are paired."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from backtest.annualise import MIN_RETURNS, NOISE_FLOOR

DRAWS = 1_000
LEVEL = 0.95


def block_indices(n: int, draws: int, seed: int, block: int | None = None) -> np.ndarray:
    """`draws` rows of `n` indices, each row a resample built from consecutive runs of `block`
    returns (n^(1/3) by default) starting at uniform random offsets."""
    size = block or max(1, round(n ** (1 / 3)))
    per_row = -(-n // size)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - size + 1, size=(draws, per_row))
    rows = (starts[:, :, None] + np.arange(size)).reshape(draws, -1)
    return rows[:, :n]


def total_return(resampled: np.ndarray) -> np.ndarray:
    """Compounded return of each resampled row, as a fraction."""
    return np.expm1(np.log1p(resampled).sum(axis=1))


def sharpe(resampled: np.ndarray, periods_per_year: float) -> np.ndarray:
    """Arithmetic annualised Sharpe of each row; NaN where the spread is float noise."""
    std = resampled.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = resampled.mean(axis=1) / std * np.sqrt(periods_per_year)
    return np.where(std > NOISE_FLOOR, ratio, np.nan)


def paired_totals(series: list[np.ndarray], shifts: list[float], seed: int) -> list[np.ndarray]:
    """Compounded returns of equally long return series, all resampled with the same blocks;
    each series first lowered by its shift per period (a cost spread over the run)."""
    rows = block_indices(len(series[0]), DRAWS, seed)
    return [total_return(s[rows] - shift) for s, shift in zip(series, shifts, strict=True)]


def p_greater(a: np.ndarray, b: np.ndarray) -> float:
    """The share of paired resamples where `a` is higher, a tie counting half (the probability
    of superiority, as the Mann-Whitney statistic counts ties): two runs that never differ score
    0.5, not 0. Totals within NOISE_FLOOR of each other are a tie: float noise, not a lead."""
    tied = np.abs(a - b) <= NOISE_FLOOR
    return round(float(np.mean(np.where(tied, 0.5, a > b))), 3)


class Interval(BaseModel):
    low: float | None = None
    high: float | None = None
    na: str | None = None  # why there is no interval


def interval(values: np.ndarray, scale: float = 1.0) -> Interval:
    """The central LEVEL interval of bootstrap `values`; n/a when too many are undefined."""
    finite = values[np.isfinite(values)]
    if len(finite) < 0.9 * len(values):
        return Interval(na="the ratio is undefined in most resamples (returns without spread)")
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail]) * scale
    return Interval(low=float(f"{low:.6g}"), high=float(f"{high:.6g}"))


def too_short(returns: int) -> str | None:
    """The same floor as the annualised figures (backtest.annualise)."""
    if returns < MIN_RETURNS:
        return f"too short to resample: {returns} returns, fewer than {MIN_RETURNS}"
    return None
