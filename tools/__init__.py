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
    """An unattended decision ends in submit_signal and places no orders. It gets no backtest,
    portfolio or order-book tool either: the prompt states the position, the gate checks the
    spread itself, and every schema costs tokens on every step of every decision (the book's
    would take the longest step past its 1,500-token budget), nor the cross-venue spread, which
    the arbitrage desk acts on, not a one-symbol decision."""
    return ALL_TOOLS.without(
        PLACE_ORDER,
        "cancel_order",
        "run_backtest",
        "get_portfolio",
        "get_order_book",
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
