"""The trading state a risk book keeps: a frozen pydantic model, so it is stored as JSON and
restored exactly (risk.records); risk.state holds its transitions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from risk.protections import Lock, TradingState


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
    llm_successes: int = 0  # healthy calls in a row while in safe mode
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
