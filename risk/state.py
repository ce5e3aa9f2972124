"""The trading state and its transitions as pure functions, so every halt replays in a backtest;
risk.records persists it, so a restart never clears a halt."""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from typing import Any, Final

import numpy as np

from risk.limits import RiskLimits
from risk.models import ReasonCode
from risk.protections import (
    DAY_MS,
    Lock,
    TradingState,
    daily_loss_lock,
    drawdown_lock,
    safe_mode_lock,
)
from risk.risk_state import RiskState
from risk.trusted import trusted

RATE_WINDOW_MS: Final = 3_600_000  # the longest rate-limit window; older order times are dropped
_INF: Final = math.inf


def _finite(value: float) -> bool:
    """`math.isfinite`: compiled, that is a lookup on the module and a call, at every fold."""
    return -_INF < value < _INF


def _changed(fields: dict[str, Any], changes: dict[str, object]) -> RiskState:
    """`state.model_copy(update=changes)` of the state whose `__dict__` is `fields`, without
    pydantic's copy machinery: the transitions run at every bar a backtest steps, and neither
    validates the changed values."""
    return trusted(RiskState, {**fields, **changes})


def _has(state: RiskState, code: ReasonCode, now_ms: int) -> bool:
    return any(lock.code is code and lock.active(now_ms) for lock in state.locks)


def _without(state: RiskState, code: ReasonCode) -> tuple[Lock, ...]:
    return tuple(lock for lock in state.locks if lock.code is not code)


def _in_force(state: RiskState, fields: dict[str, Any], now_ms: int) -> tuple[Lock, ...]:
    """The locks still in force at `now_ms`: the state's own tuple when none expired (the
    usual). The transitions read a state's fields from its `__dict__` (`fields`), once each:
    a model's attribute read is slower."""
    locks = fields["locks"]
    if locks:
        active = state.active_locks(now_ms)
        if len(active) != len(locks):
            return active
    return locks


def refresh(state: RiskState, now_ms: int, *, placed: bool = False) -> RiskState:
    """Drop expired locks and order times outside every rate window; `placed`: and count an
    order approved at `now_ms` (`on_order`), in the same new state. The gate refreshes at
    every signal (`decide_facts`), and only its rate limits read the order times, each inside
    its window, so equity closes leave them for it to drop: a backtest's fold that copied the
    state only to drop an order time moved nothing a rule reads."""
    fields = state.__dict__
    locks, orders = _in_force(state, fields, now_ms), fields["recent_orders_ms"]
    if orders and orders[0] <= now_ms - RATE_WINDOW_MS:
        orders = orders[bisect_right(orders, now_ms - RATE_WINDOW_MS) :]
    if placed:
        orders = _with_order(orders, now_ms)
    if locks is fields["locks"] and orders is fields["recent_orders_ms"]:
        return state
    return _changed(fields, {"locks": locks, "recent_orders_ms": orders})


def _tracked(fields: dict[str, Any]) -> tuple[int | None, float | None, float | None]:
    """The day, its start and the peak, which `on_equity` and `_fold` move."""
    return fields["utc_day"], fields["day_start_equity"], fields["peak_equity"]


def on_equity(state: RiskState, equity: float, now_ms: int, limits: RiskLimits) -> RiskState:
    """Track the UTC day's start and the peak, and trip the daily-loss and drawdown breakers.
    A non-finite equity is ignored: it says nothing about losses and must not reset a halt."""
    if not _finite(equity):
        return state
    fields = state.__dict__
    locks = _in_force(state, fields, now_ms)  # expired locks dropped with the rest, at once
    utc_day, start, top = _tracked(fields)
    day = now_ms // DAY_MS
    day_start = start if utc_day == day else equity
    peak = equity if top is None or equity > top else top  # max(top, equity), no call
    # Without a limit the lock functions say None: not asking saves two calls a step.
    if (
        limits.max_daily_loss_pct is not None
        and day_start is not None
        and not _has(state, ReasonCode.DAILY_LOSS, now_ms)
    ):
        lock = daily_loss_lock(equity, day_start, now_ms, limits)
        locks += (lock,) if lock else ()
    if limits.max_drawdown_pct is not None and not _has(state, ReasonCode.MAX_DRAWDOWN, now_ms):
        lock = drawdown_lock(equity, peak, now_ms, limits)
        locks += (lock,) if lock else ()
    return _moved(state, fields, day, day_start, peak, locks)


def _moved(
    state: RiskState,
    fields: dict[str, Any],
    day: int,
    day_start: float | None,
    peak: float,
    locks: tuple[Lock, ...],
) -> RiskState:
    """The state with the day, its start, the peak and the locks, in one new state; itself
    when none changed (a backtest folds thousands of quiet spans)."""
    if (day, day_start, peak) == _tracked(fields) and locks == fields["locks"]:
        return state
    return _changed(
        fields,
        {"utc_day": day, "day_start_equity": day_start, "peak_equity": peak, "locks": locks},
    )


# Closes screened for a trip at a time: the screen's ~10 scratch arrays of a span stay ~5 MB
# when a quiet stretch of a million bars is folded, not ~80 MB.
_SPAN: Final = 1 << 16


def on_equity_series(
    state: RiskState,
    equity: np.ndarray,
    times: np.ndarray,
    limits: RiskLimits,
    flat: float | None = None,
) -> RiskState:
    """`on_equity` at each close in turn, exactly, for the bars a backtest skips: spans that
    trip no breaker are folded at once (`_SPAN` closes at a time), and each tripping close goes
    through `on_equity`. `flat`: the value every close holds, where the caller knows it (a
    backtest's span without a position is its cash throughout): no min and max to take."""
    guarded = limits.max_drawdown_pct is not None or limits.max_daily_loss_pct is not None
    start, n = 0, len(equity)
    while start < n:
        stop = min(n, start + _SPAN)
        if start == 0 and stop == n:  # the usual short span: no views to make
            values, moments = equity, times
        else:
            values, moments = equity[start:stop], times[start:stop]
        # One min and max of the span, for the screen and the fold both.
        if flat is None:
            low, high = _extremes(values)
        else:
            low = high = flat
        trip = None
        if guarded and not _cannot_trip(state, low, high, limits):
            trip = _first_trip(state, values, moments, limits)
        if trip is None:
            state = _fold(state, values, moments, low, high)
            start = stop
            continue
        if trip:
            head = values[:trip]
            if flat is None:
                low, high = _extremes(head)
            state = _fold(state, head, moments[:trip], low, high)
        state = on_equity(state, float(values[trip]), int(moments[trip]), limits)
        start += trip + 1
    return state


def _extremes(values: np.ndarray) -> tuple[float, float]:
    """The span's lowest and highest close, NaN when any close is (as `min` and `max` say):
    read at `argmin` and `argmax`, which stop at the first NaN. A backtest folds a short span
    at every step, and a ufunc reduction's set-up took several times their whole pass."""
    return values.item(values.argmin()), values.item(values.argmax())


def _first_trip(
    state: RiskState, equity: np.ndarray, times: np.ndarray, limits: RiskLimits
) -> int | None:
    """The first close where sequential `on_equity` calls would set a lock (or None)."""
    finite = np.isfinite(equity)
    peak = np.maximum.accumulate(np.where(finite, equity, -np.inf))
    if state.peak_equity is not None:
        peak = np.maximum(peak, state.peak_equity)
    trips = np.zeros(len(equity), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        if limits.max_drawdown_pct is not None and not any(
            lock.code is ReasonCode.MAX_DRAWDOWN and lock.until_ms is None for lock in state.locks
        ):
            trips |= finite & (peak > 0) & (1.0 - equity / peak >= limits.max_drawdown_pct)
        if limits.max_daily_loss_pct is not None:
            day_start = _day_starts(state, equity, times, finite)
            locked = np.zeros(len(equity), dtype=bool)
            for lock in state.locks:
                if lock.code is ReasonCode.DAILY_LOSS:
                    locked |= times < (lock.until_ms if lock.until_ms is not None else np.inf)
            usable = np.isfinite(day_start) & (day_start > 0)
            trips |= (
                finite & usable & ~locked & (1.0 - equity / day_start >= limits.max_daily_loss_pct)
            )
    hits = np.flatnonzero(trips)
    return int(hits[0]) if len(hits) else None


def _cannot_trip(state: RiskState, low: float, high: float, limits: RiskLimits) -> bool:
    """An exact screen for the usual quiet span: every close is at least the span's lowest
    (`low`) and
    every peak or day start at most its highest (or the state's), so when even lowest over
    highest stays inside both limits no close can trip (IEEE division and subtraction are
    monotone, so the rounded per-close losses are no larger). Anything unusual (NaN, a
    non-positive equity) says False and takes the full computation."""
    peak, start = state.peak_equity, state.day_start_equity
    usual = math.isfinite(low) and math.isfinite(high) and low > 0
    if not usual or not all(v is None or math.isfinite(v) for v in (peak, start)):
        return False
    drawdown, daily = limits.max_drawdown_pct, limits.max_daily_loss_pct
    top = high if peak is None else max(peak, high)
    first = high if start is None else max(start, high)
    return (drawdown is None or 1.0 - low / top < drawdown) and (
        daily is None or 1.0 - low / first < daily
    )


def _day_starts(
    state: RiskState, equity: np.ndarray, times: np.ndarray, finite: np.ndarray
) -> np.ndarray:
    """Per close, the UTC day's start equity as sequential `on_equity` calls keep it: the
    state's for its own day, else the day's first finite close (NaN before it)."""
    days = times // DAY_MS
    day_start = np.full(len(equity), np.nan)
    bounds = np.flatnonzero(np.diff(days)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(days)], strict=True):
        if days[lo] == state.utc_day and state.day_start_equity is not None:
            day_start[lo:hi] = state.day_start_equity
            continue
        seen = np.flatnonzero(finite[lo:hi])
        if len(seen):
            first = lo + int(seen[0])
            day_start[first:hi] = equity[first]
    return day_start


def _fold(
    state: RiskState, equity: np.ndarray, times: np.ndarray, lowest: float, highest: float
) -> RiskState:
    """Sequential `on_equity` over closes that trip nothing (`lowest` and `highest` are their
    min and max): only the day, its start, the peak and the locks in force at the last close
    remain, moved in one new state."""
    # The usual span: every close marked (a NaN or an infinity shows in its max or min).
    whole = _finite(highest) and _finite(lowest)
    if whole:
        k = len(equity) - 1
    else:
        finite = np.isfinite(equity)
        seen = np.flatnonzero(finite)
        if not len(seen):
            return state
        k = int(seen[-1])
        highest = float(equity[finite].max())
    now: int = times.item(k)  # item(): no numpy scalar made
    day = now // DAY_MS
    fields = state.__dict__
    utc_day, start, top = _tracked(fields)
    peak = highest if top is None or highest > top else top  # max(top, highest), no call
    if day == utc_day and start is not None:
        day_start = start
    else:
        first_today = int(times.searchsorted(day * DAY_MS))
        if not whole:
            first_today += int(np.flatnonzero(finite[first_today:])[0])
        day_start = float(equity[first_today])
    return _moved(state, fields, day, day_start, peak, _in_force(state, fields, now))


def on_trade_closed(state: RiskState, pnl: float, now_ms: int) -> RiskState:
    """Count losing trades in a row for the cooldown; any non-losing trade ends the streak."""
    if not _finite(pnl):
        return state
    fields = state.__dict__
    streak = fields["losing_streak"]
    if pnl < 0:
        return _changed(fields, {"losing_streak": streak + 1, "last_loss_ms": now_ms})
    return _changed(fields, {"losing_streak": 0}) if streak else state  # no streak to end


def on_order(state: RiskState, now_ms: int) -> RiskState:
    """Remember an approved order's time so the per-minute and per-hour limits can count it."""
    orders = state.recent_orders_ms
    orders = orders[bisect_right(orders, now_ms - RATE_WINDOW_MS) :]
    return _changed(state.__dict__, {"recent_orders_ms": _with_order(orders, now_ms)})


def _with_order(orders: tuple[int, ...], now_ms: int) -> tuple[int, ...]:
    """`orders` (sorted) with `now_ms` in its place."""
    if not orders or orders[-1] <= now_ms:
        orders += (now_ms,)  # the usual case: time moves forward, so it goes last
        return orders
    later = list(orders)
    insort(later, now_ms)
    return tuple(later)


def on_llm_failure(state: RiskState, now_ms: int, limits: RiskLimits) -> RiskState:
    """N consecutive failures put the account in safe mode (REDUCING)."""
    failures = state.llm_failures + 1
    locks = state.locks
    if not _has(state, ReasonCode.SAFE_MODE, now_ms):
        lock = safe_mode_lock(failures, now_ms, limits)
        locks += (lock,) if lock else ()
    return _changed(state.__dict__, {"llm_failures": failures, "llm_successes": 0, "locks": locks})


def on_budget_spent(state: RiskState, why: str, now_ms: int, limits: RiskLimits) -> RiskState:
    """The model's budget is spent, so no decision can be asked: safe mode (exits only), ended
    as after failures by healthy calls in a row, which a run with a new budget makes."""
    if in_safe_mode(state):
        return state
    lock = Lock(
        code=ReasonCode.SAFE_MODE,
        level=TradingState.REDUCING,
        message=f"{why}: safe mode, exits only until {limits.llm_recoveries} healthy calls in "
        "a row",
        since_ms=now_ms,
    )
    return _changed(state.__dict__, {"locks": (*state.locks, lock), "llm_successes": 0})


def in_safe_mode(state: RiskState) -> bool:
    return any(lock.code is ReasonCode.SAFE_MODE for lock in state.locks)


def on_llm_success(state: RiskState, limits: RiskLimits) -> RiskState:
    """A healthy call ends a failure streak; safe mode ends only after `llm_recoveries` of them
    in a row, so one lucky answer from a flaky endpoint cannot open the door to entries."""
    if not in_safe_mode(state):
        if state.llm_failures == 0 and state.llm_successes == 0:
            return state
        return _changed(state.__dict__, {"llm_failures": 0, "llm_successes": 0})
    successes = state.llm_successes + 1
    if successes < limits.llm_recoveries:
        return _changed(state.__dict__, {"llm_successes": successes})
    return _changed(
        state.__dict__,
        {
            "llm_failures": 0,
            "llm_successes": 0,
            "locks": _without(state, ReasonCode.SAFE_MODE),
        },
    )


def kill(state: RiskState, reason: str, now_ms: int) -> RiskState:
    """The kill switch: HALTED, with no expiry, until a person calls `clear_kill`."""
    lock = Lock(
        code=ReasonCode.KILL_SWITCH,
        level=TradingState.HALTED,
        message=f"kill switch: {reason}; halted until a person clears it",
        since_ms=now_ms,
    )
    return _changed(state.__dict__, {"locks": (*_without(state, ReasonCode.KILL_SWITCH), lock)})


def clear_kill(state: RiskState) -> RiskState:
    return _changed(state.__dict__, {"locks": _without(state, ReasonCode.KILL_SWITCH)})


def reset_drawdown(state: RiskState, equity: float) -> RiskState:
    """A person accepts the drawdown: the peak restarts at today's equity and entries resume."""
    peak = equity if math.isfinite(equity) else state.peak_equity
    return _changed(
        state.__dict__, {"peak_equity": peak, "locks": _without(state, ReasonCode.MAX_DRAWDOWN)}
    )
