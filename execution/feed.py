"""Bars as float64 arrays, the form the fill model reads: one timeline, one array per field."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class SymbolBars:
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


@dataclass(frozen=True, slots=True)
class BarArrays:
    """Bars of several symbols on one shared timeline (epoch-ms open and close times)."""

    open_time: np.ndarray
    close_time: np.ndarray
    symbols: dict[str, SymbolBars]

    def __len__(self) -> int:
        return len(self.open_time)
