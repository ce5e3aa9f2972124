"""The bars before a run's first bar that its indicators read. The paper loop's history and a
backtest's warm-up are the same bars, so indicators that remember their whole input (RSI, ATR,
EMAs) and rolling ones read the same values in both: what a user backtests is what trades."""

from __future__ import annotations

from typing import Final

import numpy as np

from execution.feed import BarArrays, SymbolBars

WARMUP_BARS: Final = 1_440  # a day of 1m bars, whatever the interval


def warmup_start(open_times: np.ndarray, first_ms: int) -> int:
    """The row where the warm-up of the bar opening at `first_ms` starts: up to WARMUP_BARS
    rows before it (`open_times` ascending)."""
    return max(int(np.searchsorted(open_times, first_ms, "left")) - WARMUP_BARS, 0)


def joined(warmup: BarArrays, bars: BarArrays) -> BarArrays:
    """The warm-up's bars then the run's, on one timeline (the same symbols)."""
    return BarArrays(
        open_time=np.concatenate((warmup.open_time, bars.open_time)),
        close_time=np.concatenate((warmup.close_time, bars.close_time)),
        symbols={s: joined_symbol(warmup.symbols[s], b) for s, b in bars.symbols.items()},
    )


def joined_symbol(warmup: SymbolBars, bars: SymbolBars) -> SymbolBars:
    return SymbolBars(
        *(
            np.concatenate((getattr(warmup, f), getattr(bars, f)))
            for f in ("open", "high", "low", "close", "volume")
        )
    )
