"""The typed tools the model may call, and the registries each mode offers."""

from __future__ import annotations

from tools.desk import DESK_TOOLS
from tools.env import MarketData, ToolEnv, flat_portfolio
from tools.market import MARKET_TOOLS
from tools.registry import Tool, ToolError, ToolOutcome, ToolRegistry
from tools.research import RESEARCH_TOOLS
from tools.spread import SPREAD_TOOLS
from tools.trading import PLACE_ORDER, SUBMIT_SIGNAL, TRADING_TOOLS

ALL_TOOLS = ToolRegistry(
    [*MARKET_TOOLS, *RESEARCH_TOOLS, *SPREAD_TOOLS, *TRADING_TOOLS, *DESK_TOOLS]
)


def decision_tools() -> ToolRegistry:
    """An unattended decision ends in submit_signal and places no orders. Its prompt already
    states the snapshot (every latest indicator), the position and the gate's limits, so it gets
    no indicator, risk-preview, backtest, portfolio, order-book or cross-venue spread tool (the
    arbitrage desk acts on spreads): every schema costs tokens on every decision, and a decision
    fits in one call of at most 800 prompt tokens."""
    return ALL_TOOLS.without(
        PLACE_ORDER,
        "cancel_order",
        "run_backtest",
        "get_portfolio",
        "get_order_book",
        "compute_indicators",
        "assess_risk",
        *(tool.name for tool in DESK_TOOLS),
        "cross_venue_spread",
    )


def chat_tools() -> ToolRegistry:
    """A chat answers in text and proposes orders for a person to approve."""
    return ALL_TOOLS.without(SUBMIT_SIGNAL)


__all__ = [
    "ALL_TOOLS",
    "PLACE_ORDER",
    "SUBMIT_SIGNAL",
    "MarketData",
    "Tool",
    "ToolEnv",
    "ToolError",
    "ToolOutcome",
    "ToolRegistry",
    "chat_tools",
    "decision_tools",
    "flat_portfolio",
]
