"""The classic strategies, by the name the CLI and sweeps use."""

from __future__ import annotations

from backtest.strategies.donchian_breakout import DonchianBreakout
from backtest.strategies.momentum import Momentum
from backtest.strategies.rsi_reversion import RsiReversion
from backtest.strategies.sma_cross import SmaCross
from runtime.strategy import Strategy

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (SmaCross, RsiReversion, DonchianBreakout, Momentum)
}
CROSS_SECTIONAL = frozenset({Momentum.name})
"""Strategies that rank the run's symbols against each other: alone, a symbol is its own top."""
