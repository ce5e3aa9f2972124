"""The look-ahead check: a strategy that peeks at later bars computes different values when those
bars do not exist yet. Recompute on data truncated at many points and compare with the full run."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from backtest.config import BacktestConfig
from backtest.engine import run_backtest
from execution.feed import BarArrays, SymbolBars
from market.models import SymbolRules
from risk.limits import RiskLimits
from runtime.strategy import Strategy


def _truncate(bars: BarArrays, stop: int) -> BarArrays:
    return BarArrays(
        open_time=bars.open_time[:stop],
        close_time=bars.close_time[:stop],
        symbols={
            symbol: SymbolBars(
                b.open[:stop], b.high[:stop], b.low[:stop], b.close[:stop], b.volume[:stop]
            )
            for symbol, b in bars.symbols.items()
        },
    )


def cut_points(bars: int, first: int, count: int) -> list[int]:
    """`count` truncation lengths spread evenly after the warm-up."""
    lo = min(max(first + 2, 2), bars - 1)
    return sorted({int(x) for x in np.linspace(lo, bars - 1, num=count)})


def check_lookahead(
    strategy: Strategy,
    bars: BarArrays,
    rules: Mapping[str, SymbolRules],
    config: BacktestConfig | None = None,
    *,
    limits: RiskLimits | None = None,
    cuts: int = 12,
) -> list[str]:
    """Differences found, as sentences; empty means no look-ahead. Checks every prepared array
    and wake-up bar, then the signals a full backtest emits before each cut."""
    problems: list[str] = []
    strategy.bind(bars)
    full = {s: strategy.prepare(b) for s, b in bars.symbols.items()}
    full_run = run_backtest(bars, strategy, rules, config, limits=limits)
    points = cut_points(len(bars), strategy.warmup, cuts)
    for stop in points:
        short = _truncate(bars, stop)
        strategy.bind(short)
        for symbol, sym_bars in short.symbols.items():
            prepared = strategy.prepare(sym_bars)
            arrays = {**prepared, "wake": strategy.wake(prepared)}
            reference = {**full[symbol], "wake": strategy.wake(full[symbol])}
            for name, values in arrays.items():
                expected = reference[name][:stop]
                if not np.array_equal(values, expected, equal_nan=values.dtype.kind == "f"):
                    first = int(np.flatnonzero(~_same(values, expected))[0])
                    problems.append(
                        f"{strategy.name}: {symbol} '{name}' at bar {first} changes when the data "
                        f"ends at bar {stop - 1}: it reads later bars"
                    )
        seen_until = int(bars.close_time[stop - 2])
        truncated = run_backtest(short, strategy, rules, config, limits=limits).decisions
        expected = [d for d in full_run.decisions if d.created_ms <= seen_until]
        if [d.model_dump() for d in truncated] != [d.model_dump() for d in expected]:
            problems.append(
                f"{strategy.name}: the signals before bar {stop - 1} change when the data ends "
                "there: a decision reads later bars"
            )
    return problems


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    both_nan = np.isnan(a) & np.isnan(b) if a.dtype.kind == "f" else np.zeros(len(a), bool)
    return (a == b) | both_nan
