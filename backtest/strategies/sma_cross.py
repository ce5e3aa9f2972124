"""SMA crossover: long when the fast average crosses above the slow one, out (or short) below."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from backtest.strategies.common import crossed_above, series
from execution.feed import SymbolBars
from risk.models import TradeSignal
from runtime.strategy import Context, Prepared, Strategy


class SmaCrossParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fast: int = Field(20, ge=1, description="fast SMA period in bars")
    slow: int = Field(60, ge=2, description="slow SMA period in bars")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> SmaCrossParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be less than slow ({self.slow})")
        return self


class SmaCross(Strategy):
    """backtesting.py's SmaCross: a cross is strict (below, then above), signals at the close."""

    name = "sma_cross"
    Params = SmaCrossParams
    params: SmaCrossParams

    @property
    def warmup(self) -> int:
        return self.params.slow - 1

    def prepare(self, bars: SymbolBars) -> Prepared:
        from ta.trend import SMAIndicator  # pandas: with the bars, not with the strategy list

        close = series(bars.close)
        fast = SMAIndicator(close, self.params.fast).sma_indicator().to_numpy()
        slow = SMAIndicator(close, self.params.slow).sma_indicator().to_numpy()
        return {
            "sma_fast": fast,
            "sma_slow": slow,
            "cross_up": crossed_above(fast, slow),
            "cross_down": crossed_above(slow, fast),
        }

    def wake(self, prepared: Prepared) -> np.ndarray:
        return prepared["cross_up"] | prepared["cross_down"]

    def decide(self, ctx: Context) -> list[TradeSignal]:
        return ctx.switch_to(1 if ctx.value("cross_up") else -1)
