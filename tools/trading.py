"""Account and order tools. None of them can reach an executor: `assess_risk` asks the gate what
it would allow, `place_order` and `submit_signal` only record a proposal, which the graph sends
through the risk gate (and, in chat, a person's approval) afterwards."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

from market.models import iso_ms
from risk.gate import assess
from risk.models import (
    Approved,
    MarketView,
    OrderType,
    SignalAction,
    TradeSignal,
)
from tools.env import AccountBook, ToolEnv
from tools.market import Symbol, require_symbol
from tools.registry import Tool, ToolError

CONFIDENCE = Field(ge=0, le=1)


class TradeIdea(BaseModel):
    """What the model may propose; the gate decides the final size and may refuse it."""

    symbol: Symbol
    action: Literal["buy", "sell", "close", "hold"]
    size_pct: float | None = Field(None, gt=0, le=1, description="of equity, 0.1 = 10%")
    quantity: float | None = Field(None, gt=0, description="base units; instead of size_pct")
    order_type: Literal["market", "limit"] = "market"
    limit_price: float | None = Field(None, gt=0)
    stop_loss: float | None = Field(None, gt=0)
    take_profit: float | None = Field(None, gt=0)
    confidence: float = CONFIDENCE
    rationale: str = Field("", max_length=600)


def market_view(env: ToolEnv, symbol: str) -> MarketView:
    """The gate's view of a symbol at decision time: the runner's where one runs; the chat's
    own otherwise (the last visible close and its ATR)."""
    if env.view is not None:
        return env.view(symbol)
    candles = env.market.candles(symbol, env.now_ms)
    if candles.empty:
        raise ToolError(f"no {symbol} bars before {iso_ms(env.now_ms)}")
    atr_column = f"atr_{env.market.indicator_config.atr}"
    atr = float(env.market.indicators(symbol, env.now_ms)[atr_column].iloc[-1])
    return MarketView(
        symbol=symbol,
        last_price=float(candles["close"].iloc[-1]),
        data_time_ms=int(candles["close_time"].iloc[-1]),
        atr=atr if math.isfinite(atr) else None,
        rules=env.rules[symbol],
    )


def to_signal(env: ToolEnv, idea: TradeIdea, suffix: str = "") -> TradeSignal:
    symbol = require_symbol(env, idea.symbol)
    if symbol not in env.rules:
        raise ToolError(f"no exchange rules known for {symbol}; it cannot be traded here")
    if idea.order_type == "limit" and idea.limit_price is None:
        raise ToolError("a limit order needs limit_price")
    return TradeSignal(
        decision_id=f"{env.decision_id}{suffix}",
        source=env.source,
        symbol=symbol,
        action=SignalAction(idea.action),
        order_type=OrderType(idea.order_type),
        quantity=idea.quantity,
        size_pct=idea.size_pct,
        limit_price=idea.limit_price,
        stop_loss=idea.stop_loss,
        take_profit=idea.take_profit,
        confidence=idea.confidence,
        rationale=idea.rationale,
        created_ms=env.now_ms,
    )


class RiskCheckOut(BaseModel):
    verdict: Literal["approved", "vetoed"]
    side: str | None = None
    quantity: str | None = None
    notional_usdt: float | None = None
    stop_loss: str | None = None
    notes: list[str] = Field(description="adjustments or reasons, as CODE: text")


def preview(env: ToolEnv, signal: TradeSignal) -> RiskCheckOut:
    """The gate's verdict with no side effect: the state is not advanced, nothing is sent."""
    market = market_view(env, signal.symbol)
    verdict = assess(signal, env.portfolio(), market, env.now_ms, env.limits, env.risk_state())
    if isinstance(verdict, Approved):
        order = verdict.order
        return RiskCheckOut(
            verdict="approved",
            side=order.side.value,
            quantity=str(order.quantity),
            notional_usdt=round(float(order.quantity) * market.last_price, 2),
            stop_loss=None if order.stop_loss is None else str(order.stop_loss),
            notes=[f"{r.code.value}: {r.message}" for r in verdict.adjustments],
        )
    return RiskCheckOut(
        verdict="vetoed", notes=[f"{r.code.value}: {r.message}" for r in verdict.reasons]
    )


def assess_risk(env: ToolEnv, idea: TradeIdea) -> RiskCheckOut:
    return preview(env, to_signal(env, idea, ":preview"))


class NoArgs(BaseModel):
    pass


class HoldingOut(BaseModel):
    quantity: float
    avg_price: float
    value_usdt: float


class PortfolioOut(BaseModel):
    cash_usdt: float
    equity_usdt: float
    positions: dict[str, HoldingOut]
    trading_state: str
    locks: list[str]
    account: AccountBook | None = None
    note: str | None = None


def get_portfolio(env: ToolEnv, _: NoArgs) -> PortfolioOut:
    view = env.portfolio()
    state = env.risk_state()
    positions = {}
    for symbol, held in view.positions.items():
        price = float(env.market.candles(symbol, env.now_ms)["close"].iloc[-1])
        positions[symbol] = HoldingOut(
            quantity=held.quantity,
            avg_price=held.avg_price,
            value_usdt=round(held.quantity * price, 2),
        )
    return PortfolioOut(
        cash_usdt=round(view.cash, 2),
        equity_usdt=round(view.equity, 2),
        positions=positions,
        trading_state=state.trading_state(env.now_ms).value,
        locks=[f"{lock.code.value}: {lock.message}" for lock in state.active_locks(env.now_ms)],
        account=env.account() if env.account is not None else None,
        note=None if env.stateful else "stateless run: decide from market data alone",
    )


class ProposalOut(BaseModel):
    status: Literal["proposed"]
    next_step: str
    risk_preview: RiskCheckOut


def place_order(env: ToolEnv, idea: TradeIdea) -> ProposalOut:
    if idea.action == "hold":
        raise ToolError("hold is not an order; answer without placing one")
    signal = to_signal(env, idea)
    return ProposalOut(
        status="proposed",
        next_step="the risk gate decides the final order, then a person approves or rejects it",
        risk_preview=preview(env, signal),
    )


class CancelIn(BaseModel):
    client_order_id: str = Field(min_length=1, max_length=36)


class CancelOut(BaseModel):
    client_order_id: str
    result: str


def cancel_order(env: ToolEnv, args: CancelIn) -> CancelOut:
    if env.cancel is None:
        raise ToolError("no working orders can be cancelled in this mode")
    return CancelOut(client_order_id=args.client_order_id, result=env.cancel(args.client_order_id))


class SignalIn(TradeIdea):
    horizon_minutes: int | None = Field(None, ge=1, le=10_080)


class SignalOut(BaseModel):
    status: Literal["submitted"]
    next_step: str


def submit_signal(env: ToolEnv, signal: SignalIn) -> SignalOut:
    to_signal(env, signal)  # the same checks the graph applies, so mistakes come back now
    return SignalOut(status="submitted", next_step="the risk gate sizes or vetoes it")


PLACE_ORDER, SUBMIT_SIGNAL = "place_order", "submit_signal"

TRADING_TOOLS = (
    Tool(
        "assess_risk",
        "What the risk gate would allow for a trade idea right now (no order is placed).",
        TradeIdea,
        RiskCheckOut,
        assess_risk,
    ),
    Tool(
        "get_portfolio",
        "Cash, equity, positions, the trading state and, for a persisted account, realised and "
        "unrealised PnL and the open orders.",
        NoArgs,
        PortfolioOut,
        get_portfolio,
    ),
    Tool(
        PLACE_ORDER,
        "Propose an order; the risk gate sizes it and a person must approve it.",
        TradeIdea,
        ProposalOut,
        place_order,
    ),
    Tool(
        "cancel_order",
        "Cancel a working order by its client order id.",
        CancelIn,
        CancelOut,
        cancel_order,
    ),
    Tool(
        SUBMIT_SIGNAL,
        "Your decision: action, confidence, stop, target and rationale.",
        SignalIn,
        SignalOut,
        submit_signal,
    ),
)
