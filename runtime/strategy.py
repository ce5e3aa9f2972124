"""One strategy interface for classic strategies and the LLM agent: vectorised, causal preparation
over the whole history, then decisions at chosen bars through a point-in-time context."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from execution.feed import BarArrays, SymbolBars
from risk.models import SignalSource, TradeSignal
from runtime.context import Context, Prepared

__all__ = ["Context", "Prepared", "Strategy"]


class Strategy(ABC):
    """Subclasses declare `name` and a pydantic `Params` model, compute arrays in `prepare`
    (row t may use rows <= t only: the look-ahead checker verifies it), say in `wake` at which
    bars they might act, and turn a context into signals in `decide`."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    source: ClassVar[SignalSource] = SignalSource.STRATEGY

    def __init__(self, params: BaseModel) -> None:
        self.params = params

    def bind(self, feed: BarArrays) -> None:
        """The runner's bars grew (paper and live) or were set (a backtest); strategies that
        read more than `prepare`'s arrays (the agent's tools) follow here."""
        del feed  # classic strategies read only what `prepare` computed

    @property
    @abstractmethod
    def warmup(self) -> int:
        """Bars before the first possible signal (for Buy & Hold, as backtesting.py does)."""

    @abstractmethod
    def prepare(self, bars: SymbolBars) -> Prepared:
        """Indicators and raw signals for one symbol, one value per bar, computed causally."""

    @abstractmethod
    def wake(self, prepared: Prepared) -> np.ndarray:
        """Boolean per bar: where `decide` may emit something; all True for the agent."""

    @abstractmethod
    def decide(self, ctx: Context) -> list[TradeSignal]:
        """Signals at the close of `ctx.index`; they fill at the next bar's open or later."""
