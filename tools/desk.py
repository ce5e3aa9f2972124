"""A desk's questions about its own rules and its robot: the limits in force on this account
(the configured limits, with how much of each breaker and rate the account has used) and the
autonomous loop's state as stored. Read-only: nothing here changes a limit or an order."""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from pydantic import BaseModel, Field

from core.errors import UserError
from risk.limits_text import limit_lines
from tools.env import ToolEnv
from tools.registry import Tool, ToolError
from tools.trading import NoArgs

MINUTE_MS, HOUR_MS = 60_000, 3_600_000


class LimitUse(BaseModel):
    """How far the account is from a limit: `used` against `limit` (None: the limit is off)."""

    name: str
    used: float
    limit: float | None
    unit: str


class LimitsOut(BaseModel):
    source: str = Field(description="whose limits apply to this chat's orders")
    limits_in_force: list[str]
    usage: list[LimitUse]
    trading_state: str
    locks: list[str]


def get_limits(env: ToolEnv, _: NoArgs) -> LimitsOut:
    limits, state, now = env.limits, env.risk_state(), env.now_ms
    view = env.portfolio()
    own = limits.for_source(env.source)
    day_loss = max(0.0, 1 - view.equity / view.day_start_equity) if view.day_start_equity else 0.0
    drawdown = max(0.0, 1 - view.equity / view.peak_equity) if view.peak_equity else 0.0
    orders = state.recent_orders_ms

    def since(window_ms: int) -> int:
        return len(orders) - bisect_right(orders, now - window_ms)

    def pct(value: float | None) -> float | None:
        return None if value is None else round(value * 100, 4)

    return LimitsOut(
        source=env.source.value,
        limits_in_force=limit_lines(limits, env.source),
        usage=[
            LimitUse(
                name="daily loss",
                used=round(day_loss * 100, 4),
                limit=pct(limits.max_daily_loss_pct),
                unit="%",
            ),
            LimitUse(
                name="drawdown from peak",
                used=round(drawdown * 100, 4),
                limit=pct(limits.max_drawdown_pct),
                unit="%",
            ),
            LimitUse(
                name="orders in the last minute",
                used=since(MINUTE_MS),
                limit=own.max_orders_per_minute,
                unit="orders",
            ),
            LimitUse(
                name="orders in the last hour",
                used=since(HOUR_MS),
                limit=own.max_orders_per_hour,
                unit="orders",
            ),
            LimitUse(
                name="losing streak",
                used=state.losing_streak,
                limit=own.cooldown_after_losses,
                unit="trades",
            ),
        ],
        trading_state=state.trading_state(now).value,
        locks=[f"{lock.code.value}: {lock.message}" for lock in state.active_locks(now)],
    )


class LoopIn(BaseModel):
    account: str | None = Field(
        None, max_length=64, description="agent-trade --account; omit for the latest loop"
    )


class HeldOut(BaseModel):
    symbol: str
    quantity: float
    avg_price: float
    mark: float | None
    value_usdt: float


class LoopOut(BaseModel):
    account: str
    mode: str
    status: str = Field(description="running, stalled, not running, stopped or finished")
    stop_reason: str | None = None
    trading_state: str
    locks: list[str]
    last_bar: str | None = Field(description="open time of the last bar stepped, UTC")
    bars: int
    equity_usdt: float
    pnl_usdt: float
    pnl_pct: float
    positions: list[HeldOut]
    fills: int
    decisions: int
    vetoes: dict[str, int]
    last_decision: dict[str, Any] | None = None
    last_error: str | None = None
    other_accounts: list[str]


def get_loop_status(env: ToolEnv, args: LoopIn) -> LoopOut:
    if env.loops is None:
        raise ToolError("no autonomous loop can be read in this mode")
    try:
        return LoopOut.model_validate(env.loops(args.account))
    except UserError as exc:  # no such account, or no loop has run yet
        raise ToolError(str(exc)) from None


DESK_TOOLS = (
    Tool(
        "get_limits",
        "The risk limits in force on this account and how much of each the account has used.",
        NoArgs,
        LimitsOut,
        get_limits,
    ),
    Tool(
        "get_loop_status",
        "The autonomous loop (agent-trade): running, stalled or halted, last bar, positions, PnL.",
        LoopIn,
        LoopOut,
        get_loop_status,
    ),
)
