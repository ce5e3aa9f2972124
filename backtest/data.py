"""Turn candle frames into the float64 arrays the engine runs on, on one shared timeline."""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce

import numpy as np
import pandas as pd

from core.errors import UserError
from execution.feed import BarArrays, SymbolBars

_FIELDS = ("open", "high", "low", "close", "volume")


def to_bar_arrays(frames: Mapping[str, pd.DataFrame]) -> tuple[BarArrays, int]:
    """Keep only bar times every symbol has (several symbols share one cash balance, so they
    must move in step); returns the arrays and how many bars were dropped to align them."""
    if not frames or any(frame.empty for frame in frames.values()):
        empty = [symbol for symbol, frame in frames.items() if frame.empty]
        raise UserError(f"no bars to backtest for {', '.join(empty) or 'any symbol'}")
    times = [frame["open_time"].to_numpy(dtype=np.int64) for frame in frames.values()]
    common = reduce(np.intersect1d, times)
    if len(common) < 2:
        raise UserError(f"the symbols {', '.join(frames)} share fewer than 2 bar times")
    dropped = sum(len(t) for t in times) - len(common) * len(times)
    symbols: dict[str, SymbolBars] = {}
    close_time = None
    for (symbol, frame), stamps in zip(frames.items(), times, strict=True):
        rows = frame.iloc[np.searchsorted(stamps, common)] if len(stamps) != len(common) else frame
        symbols[symbol] = SymbolBars(
            *(np.ascontiguousarray(rows[c].to_numpy(dtype=np.float64)) for c in _FIELDS)
        )
        close_time = rows["close_time"].to_numpy(dtype=np.int64)
    return BarArrays(open_time=common, close_time=close_time, symbols=symbols), dropped
