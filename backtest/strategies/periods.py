"""Where a rebalancing strategy's periods end and start: XNYS sessions for US stocks, UTC days
for crypto. Both masks are causal: a bar is a period's end when its own span reaches the
session's close (or midnight UTC), a period's start when the bar before it was in another."""

from __future__ import annotations

import numpy as np


def period_masks(
    open_time: np.ndarray, close_time: np.ndarray, *, sessions: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(ends, starts) per bar. With `sessions`, only regular-hours bars belong to a period (a
    daily bar is its session), so pre- and post-market bars neither end nor start one."""
    from market.calendar import DAY_MS  # pandas: with the bars, not with the strategy list

    opens = np.asarray(open_time, dtype=np.int64)
    if not len(opens):
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    interval = int(np.median(np.asarray(close_time, dtype=np.int64) - opens)) + 1
    if sessions:
        period, ends = _sessions(opens, interval)
    else:
        period = opens // DAY_MS
        ends = (opens + interval) // DAY_MS > period
    starts = period >= 0
    starts[1:] &= period[1:] != period[:-1]
    return ends, starts


def _sessions(opens: np.ndarray, interval: int) -> tuple[np.ndarray, np.ndarray]:
    """Each bar's XNYS session (-1 outside regular hours) and whether it reaches the close."""
    from market.calendar import DAY_MS, xnys

    calendar = xnys()
    regular = calendar.regular(opens, interval)
    if interval >= DAY_MS:
        period = np.where(regular, opens // DAY_MS, -1)
        return period, regular
    at = np.clip(np.searchsorted(calendar.opens, opens, side="right") - 1, 0, None)
    period = np.where(regular, at, -1)
    return period, regular & (opens + interval >= calendar.closes[at])
