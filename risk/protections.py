"""Circuit breakers as pure functions returning a lock with an expiry (freqtrade's protections),
so the state machine and the gate share one definition of "too much loss"."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from risk.limits import RiskLimits, SourceLimits
from risk.models import ReasonCode

if TYPE_CHECKING:  # the gate passes its plain copies of the limits (risk.plain)
    from risk.plain import Plain, PlainLimits

DAY_MS = 86_400_000
_MINUTE_MS = 60_000


class TradingState(StrEnum):
    """What the account may do: everything, exits only, or nothing (nautilus_trader's names)."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class Lock(BaseModel):
    """One reason trading is restricted; `until_ms=None` means until a person or an event
    (an LLM success, a drawdown reset) clears it."""

    model_config = ConfigDict(frozen=True)

    code: ReasonCode
    level: TradingState
    message: str
    since_ms: int
    until_ms: int | None = None

    def active(self, now_ms: int) -> bool:
        return self.until_ms is None or now_ms < self.until_ms


def next_utc_day_ms(now_ms: int) -> int:
    return (now_ms // DAY_MS + 1) * DAY_MS


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def daily_loss_lock(
    equity: float, day_start_equity: float, now_ms: int, limits: RiskLimits | PlainLimits
) -> Lock | None:
    """Losing max_daily_loss_pct since the UTC day began halts everything until tomorrow."""
    limit = limits.max_daily_loss_pct
    if limit is None or not (math.isfinite(day_start_equity) and day_start_equity > 0):
        return None
    loss = 1.0 - equity / day_start_equity
    if not loss >= limit:
        return None
    until = next_utc_day_ms(now_ms)
    return Lock(
        code=ReasonCode.DAILY_LOSS,
        level=TradingState.HALTED,
        message=f"daily loss {loss:.2%} reached the {limit:.2%} limit; halted until {_iso(until)}",
        since_ms=now_ms,
        until_ms=until,
    )


def drawdown_lock(
    equity: float, peak_equity: float, now_ms: int, limits: RiskLimits | PlainLimits
) -> Lock | None:
    """A drawdown beyond the limit allows exits only, until a person resets it."""
    limit = limits.max_drawdown_pct
    if limit is None or not (math.isfinite(peak_equity) and peak_equity > 0):
        return None
    drawdown = 1.0 - equity / peak_equity
    if not drawdown >= limit:
        return None
    return Lock(
        code=ReasonCode.MAX_DRAWDOWN,
        level=TradingState.REDUCING,
        message=f"drawdown {drawdown:.2%} from peak reached the {limit:.2%} limit; "
        "exits only until a person resets it",
        since_ms=now_ms,
    )


def safe_mode_lock(failures: int, now_ms: int, limits: RiskLimits) -> Lock | None:
    """Consecutive LLM failures mean the agent is flying blind: exits only until one succeeds."""
    if failures < limits.max_llm_failures:
        return None
    return Lock(
        code=ReasonCode.SAFE_MODE,
        level=TradingState.REDUCING,
        message=f"{failures} consecutive LLM failures: safe mode, exits only until "
        f"{limits.llm_recoveries} healthy calls in a row",
        since_ms=now_ms,
    )


def cooldown_lock(
    losing_streak: int, last_loss_ms: int | None, limits: SourceLimits | Plain
) -> Lock | None:
    """N losing trades in a row pause new entries from that source for a while."""
    after = limits.cooldown_after_losses
    if after is None or last_loss_ms is None or losing_streak < after:
        return None
    until = last_loss_ms + limits.cooldown_minutes * _MINUTE_MS
    return Lock(
        code=ReasonCode.COOLDOWN,
        level=TradingState.REDUCING,
        message=f"{losing_streak} losing trades in a row: no new entries until {_iso(until)}",
        since_ms=last_loss_ms,
        until_ms=until,
    )
