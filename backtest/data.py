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
    bars, dropped = _aligned(frames)
    if len(bars) < 2:
        held = f"{len(bars)} bar{'' if len(bars) == 1 else 's'}"
        if len(frames) == 1:
            raise UserError(f"{next(iter(frames))} has {held} to backtest; a backtest needs 2")
        raise UserError(
            f"the symbols {', '.join(frames)} share {held} (bar times all of them have); "
            "a backtest needs 2"
        )
    return bars, dropped


def warmup_arrays(frames: Mapping[str, pd.DataFrame]) -> BarArrays | None:
    """A run's warm-up (runtime.warmup) on the timeline its symbols share; None when one
    symbol has none."""
    if not frames or any(frame.empty for frame in frames.values()):
        return None
    bars, _ = _aligned(frames)
    return bars if len(bars) else None


def _aligned(frames: Mapping[str, pd.DataFrame]) -> tuple[BarArrays, int]:
    times = [frame["open_time"].to_numpy(dtype=np.int64) for frame in frames.values()]
    common = reduce(np.intersect1d, times)
    dropped = sum(len(t) for t in times) - len(common) * len(times)
    symbols: dict[str, SymbolBars] = {}
    close_time = None
    for (symbol, frame), stamps in zip(frames.items(), times, strict=True):
        rows = np.searchsorted(stamps, common) if len(stamps) != len(common) else slice(None)
        symbols[symbol] = SymbolBars(*(_column(frame, c, np.float64, rows) for c in _FIELDS))
        close_time = _column(frame, "close_time", np.int64, rows)
    return BarArrays(open_time=common, close_time=close_time, symbols=symbols), dropped


def _column(frame: pd.DataFrame, name: str, dtype: type, rows: np.ndarray | slice) -> np.ndarray:
    """The frame's own column where no bar is dropped (a parsed CSV's or the store's float64
    columns need no copy), else only its kept rows."""
    return np.ascontiguousarray(frame[name].to_numpy(dtype=dtype)[rows])
