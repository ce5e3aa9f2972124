"""RSI mean reversion: buy when RSI is oversold, leave (or short) when it is overbought."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from backtest.strategies.common import series
from execution.feed import SymbolBars
from risk.models import TradeSignal
from runtime.strategy import Context, Prepared, Strategy


class RsiReversionParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    period: int = Field(14, ge=2, description="RSI period in bars (Wilder smoothing)")
    oversold: float = Field(30.0, gt=0, lt=100, description="buy below this RSI")
    overbought: float = Field(70.0, gt=0, lt=100, description="sell above this RSI")

    @model_validator(mode="after")
    def _bands_ordered(self) -> RsiReversionParams:
        if self.oversold >= self.overbought:
            raise ValueError(
                f"oversold ({self.oversold:g}) must be less than overbought ({self.overbought:g})"
            )
        return self


class RsiReversion(Strategy):
    name = "rsi_reversion"
    Params = RsiReversionParams
    params: RsiReversionParams

    @property
    def warmup(self) -> int:
        return self.params.period

    def prepare(self, bars: SymbolBars) -> Prepared:
        from ta.momentum import RSIIndicator  # pandas: with the bars, not the strategy list

        rsi = RSIIndicator(series(bars.close), self.params.period).rsi().to_numpy(copy=True)
        rsi[: self.params.period] = np.nan  # ta seeds early values from too few bars
        return {
            "rsi": rsi,
            "oversold": rsi < self.params.oversold,
            "overbought": rsi > self.params.overbought,
        }

    def wake(self, prepared: Prepared) -> np.ndarray:
        return prepared["oversold"] | prepared["overbought"]

    def decide(self, ctx: Context) -> list[TradeSignal]:
        return ctx.switch_to(1 if ctx.value("oversold") else -1)
