"""The fill rules as pure functions of one bar (or arrays of bars): the single source of truth
for when a price was reached and at what price an order fills. See docs/fills.md."""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from execution.orders import ExitReason

Price = TypeVar("Price", float, np.ndarray)


def limit_reached(side: int, limit: float, low: Price, high: Price, touch: bool) -> Price:
    """A buy limit fills when price trades below it (at it too when `touch`); a sell mirrors."""
    if side > 0:
        return low <= limit if touch else low < limit
    return high >= limit if touch else high > limit


def stop_reached(side: int, stop: float | np.ndarray, low: Price, high: Price) -> Price:
    """A buy stop triggers once price trades at or above it; a sell stop at or below it (a
    bracket's stop, a trailing one, can be an array of levels: one per bar)."""
    return high >= stop if side > 0 else low <= stop


def limit_price(side: int, limit: float, open_: float) -> float:
    """A bar that opens through the limit fills at the open (the better price), else at the limit."""
    return min(open_, limit) if side > 0 else max(open_, limit)


def stop_price(side: int, stop: float, open_: float) -> float:
    """A gap through the stop fills at the open (the worse price), else at the stop."""
    return max(open_, stop) if side > 0 else min(open_, stop)


def first_true(mask: np.ndarray) -> int | None:
    """Index of the first True, or None: the vectorised search for the next event bar."""
    index = int(np.argmax(mask)) if len(mask) else 0
    return index if len(mask) and mask[index] else None


def trail_level(high: Price, pct: float) -> Price:
    """Where a long's trailing stop sits after a bar with this high."""
    return high * (1.0 - pct)


def trail_levels(level: float, pct: float, highs: np.ndarray) -> np.ndarray:
    """The trailing stop in force at each bar after `highs`: the element i is the level once
    the highs up to i were seen, i.e. the stop for bar i+1. It only ratchets up; stepping bar
    by bar or over a span gives the same floats (the max of products equals the product of the
    max, as rounding is monotone), so a fast backtest and a paper account agree exactly."""
    if not len(highs):
        return np.empty(0)
    return np.maximum(level, np.maximum.accumulate(trail_level(highs, pct)))


def protective_stop(fixed: float | None, trail: float | None) -> tuple[float | None, ExitReason]:
    """The stop guarding a long now: the fixed stop-loss or the trailing stop, whichever is
    higher, named by the one that sets the level (every venue books the same reason)."""
    if trail is not None and (fixed is None or trail > fixed):
        return trail, ExitReason.TRAILING_STOP
    return fixed, ExitReason.STOP_LOSS
