"""The deterministic risk layer: every signal is sized, clamped or vetoed here, with reasons."""

import core.engine_build  # noqa: F401  (first: the compiled engine or its source)
from risk.approval import UnapprovedOrderError, client_order_id, verify_approved
from risk.gate import assess, decide
from risk.limits import RiskLimits, SourceLimits
from risk.models import (
    Approved,
    ApprovedOrder,
    MarketView,
    OrderType,
    PortfolioView,
    PositionView,
    Reason,
    ReasonCode,
    Side,
    SignalAction,
    SignalSource,
    TradeSignal,
    Verdict,
    Vetoed,
)
from risk.protections import Lock, TradingState
from risk.state import (
    RiskState,
    clear_kill,
    kill,
    on_equity,
    on_llm_failure,
    on_llm_success,
    on_order,
    on_trade_closed,
    refresh,
    reset_drawdown,
)

__all__ = [
    "Approved",
    "ApprovedOrder",
    "Lock",
    "MarketView",
    "OrderType",
    "PortfolioView",
    "PositionView",
    "Reason",
    "ReasonCode",
    "RiskLimits",
    "RiskState",
    "Side",
    "SignalAction",
    "SignalSource",
    "SourceLimits",
    "TradeSignal",
    "TradingState",
    "UnapprovedOrderError",
    "Verdict",
    "Vetoed",
    "assess",
    "clear_kill",
    "client_order_id",
    "decide",
    "kill",
    "on_equity",
    "on_llm_failure",
    "on_llm_success",
    "on_order",
    "on_trade_closed",
    "refresh",
    "reset_drawdown",
    "verify_approved",
]
