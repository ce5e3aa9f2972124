"""Building blocks the classic strategies share: causal crossings (position switching is
`Context.switch_to`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

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
