"""Building blocks the classic strategies share: causal crossings and position switching."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from risk.models import TradeSignal
from runtime.strategy import Context

if TYPE_CHECKING:
    import pandas as pd


def series(values: np.ndarray) -> pd.Series:
    """A RangeIndex series for `ta`, which works on pandas."""
    import pandas as pd  # pandas: with a run's bars, not with the flags that list the strategies

    return pd.Series(values, copy=False)


def crossed_above(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True at t when a[t-1] < b[t-1] and a[t] > b[t] (strict, as backtesting.py's crossover);
    NaN warm-up never crosses."""
    out = np.zeros(len(a), dtype=bool)
    out[1:] = (a[:-1] < b[:-1]) & (a[1:] > b[1:])
    return out


def switch_to(ctx: Context, direction: int) -> list[TradeSignal]:
    """Move the position to long (+1), flat (0) or short (-1): close what points the other way,
    then enter. Shorts are only proposed when the run allows them."""
    held = ctx.position
    signals: list[TradeSignal] = []
    if held * direction < 0 or (direction == 0 and held):
        signals.append(ctx.close_position(rationale="leave the opposite position"))
    if direction > 0 and held <= 0:
        signals.append(ctx.buy())
    elif direction < 0 and held >= 0 and ctx.allow_short:
        signals.append(ctx.sell())
    return signals
