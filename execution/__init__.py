"""Order execution: one simulated fill model for backtests and paper trading, and the ledger."""

from execution.feed import BarArrays, SymbolBars
from execution.fees import FeeFn, FeeSchedule, Liquidity
from execution.ledger import Ledger, TradeRecord
from execution.orders import ExitReason, Fill, Rejection
from execution.simulator import SimulatedExecutor
from execution.slippage import FixedBps, Slippage, VolumeParticipation

__all__ = [
    "BarArrays",
    "ExitReason",
    "FeeFn",
    "FeeSchedule",
    "Fill",
    "FixedBps",
    "Ledger",
    "Liquidity",
    "Rejection",
    "SimulatedExecutor",
    "Slippage",
    "SymbolBars",
    "TradeRecord",
    "VolumeParticipation",
]
