"""The trading state and its transitions as pure functions, so every halt replays in a backtest;
risk.records persists it, so a restart never clears a halt."""

from __future__ import annotations

import math
from bisect import bisect_right, insort

from pydantic import BaseModel, ConfigDict

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

RATE_WINDOW_MS = 3_600_000  # the longest rate-limit window; older order times are dropped


class RiskState(BaseModel):
    """JSON-serialisable; `RiskState()` is ACTIVE with no history."""

    model_config = ConfigDict(frozen=True)

    locks: tuple[Lock, ...] = ()
    utc_day: int | None = None
    day_start_equity: float | None = None
    peak_equity: float | None = None
    losing_streak: int = 0
    last_loss_ms: int | None = None
    llm_failures: int = 0
    recent_orders_ms: tuple[int, ...] = ()  # sorted times of approved orders, for rate limits

    def active_locks(self, now_ms: int) -> tuple[Lock, ...]:
        return tuple(lock for lock in self.locks if lock.active(now_ms))

    def trading_state(self, now_ms: int) -> TradingState:
        """The most restrictive level among the locks still in force at `now_ms`."""
        levels = {lock.level for lock in self.active_locks(now_ms)}
        if TradingState.HALTED in levels:
            return TradingState.HALTED
        if TradingState.REDUCING in levels:
            return TradingState.REDUCING
        return TradingState.ACTIVE


def _has(state: RiskState, code: ReasonCode, now_ms: int) -> bool:
    return any(lock.code is code and lock.active(now_ms) for lock in state.locks)


def _without(state: RiskState, code: ReasonCode) -> tuple[Lock, ...]:
    return tuple(lock for lock in state.locks if lock.code is not code)


def refresh(state: RiskState, now_ms: int) -> RiskState:
    """Drop expired locks and order times outside every rate window."""
    locks = state.active_locks(now_ms)
    orders = state.recent_orders_ms
    orders = orders[bisect_right(orders, now_ms - RATE_WINDOW_MS) :]
    if len(locks) == len(state.locks) and len(orders) == len(state.recent_orders_ms):
        return state
    return state.model_copy(update={"locks": locks, "recent_orders_ms": orders})


def on_equity(state: RiskState, equity: float, now_ms: int, limits: RiskLimits) -> RiskState:
    """Track the UTC day's start and the peak, and trip the daily-loss and drawdown breakers.
    A non-finite equity is ignored: it says nothing about losses and must not reset a halt."""
    if not math.isfinite(equity):
        return state
    state = refresh(state, now_ms)
    day = now_ms // DAY_MS
    day_start = state.day_start_equity if state.utc_day == day else equity
    peak = equity if state.peak_equity is None else max(state.peak_equity, equity)
    locks = state.locks
    if day_start is not None and not _has(state, ReasonCode.DAILY_LOSS, now_ms):
        lock = daily_loss_lock(equity, day_start, now_ms, limits)
        locks += (lock,) if lock else ()
    if not _has(state, ReasonCode.MAX_DRAWDOWN, now_ms):
        lock = drawdown_lock(equity, peak, now_ms, limits)
        locks += (lock,) if lock else ()
    return state.model_copy(
        update={"utc_day": day, "day_start_equity": day_start, "peak_equity": peak, "locks": locks}
    )


def on_trade_closed(state: RiskState, pnl: float, now_ms: int) -> RiskState:
    """Count losing trades in a row for the cooldown; any non-losing trade ends the streak."""
    if not math.isfinite(pnl):
        return state
    if pnl < 0:
        return state.model_copy(
            update={"losing_streak": state.losing_streak + 1, "last_loss_ms": now_ms}
        )
    return state.model_copy(update={"losing_streak": 0})


def on_order(state: RiskState, now_ms: int) -> RiskState:
    """Remember an approved order's time so the per-minute and per-hour limits can count it."""
    orders = list(
        state.recent_orders_ms[bisect_right(state.recent_orders_ms, now_ms - RATE_WINDOW_MS) :]
    )
    insort(orders, now_ms)
    return state.model_copy(update={"recent_orders_ms": tuple(orders)})


def on_llm_failure(state: RiskState, now_ms: int, limits: RiskLimits) -> RiskState:
    """N consecutive failures put the account in safe mode (REDUCING)."""
    failures = state.llm_failures + 1
    locks = state.locks
    if not _has(state, ReasonCode.SAFE_MODE, now_ms):
        lock = safe_mode_lock(failures, now_ms, limits)
        locks += (lock,) if lock else ()
    return state.model_copy(update={"llm_failures": failures, "locks": locks})


def on_llm_success(state: RiskState) -> RiskState:
    """A working model ends safe mode."""
    if state.llm_failures == 0 and not any(
        lock.code is ReasonCode.SAFE_MODE for lock in state.locks
    ):
        return state
    return state.model_copy(
        update={"llm_failures": 0, "locks": _without(state, ReasonCode.SAFE_MODE)}
    )


def kill(state: RiskState, reason: str, now_ms: int) -> RiskState:
    """The kill switch: HALTED, with no expiry, until a person calls `clear_kill`."""
    lock = Lock(
        code=ReasonCode.KILL_SWITCH,
        level=TradingState.HALTED,
        message=f"kill switch: {reason}; halted until a person clears it",
        since_ms=now_ms,
    )
    return state.model_copy(update={"locks": (*_without(state, ReasonCode.KILL_SWITCH), lock)})


def clear_kill(state: RiskState) -> RiskState:
    return state.model_copy(update={"locks": _without(state, ReasonCode.KILL_SWITCH)})


def reset_drawdown(state: RiskState, equity: float) -> RiskState:
    """A person accepts the drawdown: the peak restarts at today's equity and entries resume."""
    peak = equity if math.isfinite(equity) else state.peak_equity
    return state.model_copy(
        update={"peak_equity": peak, "locks": _without(state, ReasonCode.MAX_DRAWDOWN)}
    )
