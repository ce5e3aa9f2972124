"""Donchian breakout (the Turtles' rule): enter when the close breaks the prior N-bar channel,
leave when it breaks the shorter exit channel the other way."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from execution.feed import SymbolBars
from risk.models import TradeSignal
from runtime.strategy import Context, Prepared, Strategy


class DonchianParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    entry: int = Field(20, ge=2, description="entry channel: the prior N bars' high/low")
    exit: int = Field(10, ge=1, description="exit channel: the prior N bars' low/high")


def _prior(values: np.ndarray, window: int, how: str) -> np.ndarray:
    """Rolling max/min of the `window` bars before t (t itself excluded)."""
    import pandas as pd  # pandas: with a run's bars, not with the flags that list the strategies

    rolled = getattr(pd.Series(values, copy=False).rolling(window), how)()
    return rolled.shift(1).to_numpy()


class DonchianBreakout(Strategy):
    name = "donchian_breakout"
    Params = DonchianParams
    params: DonchianParams

    @property
    def warmup(self) -> int:
        return self.params.entry

    def prepare(self, bars: SymbolBars) -> Prepared:
        entry, exit_ = self.params.entry, self.params.exit
        close = bars.close
        return {
            "breakout_up": close > _prior(bars.high, entry, "max"),
            "breakout_down": close < _prior(bars.low, entry, "min"),
            "exit_long": close < _prior(bars.low, exit_, "min"),
            "exit_short": close > _prior(bars.high, exit_, "max"),
        }

    def wake(self, prepared: Prepared) -> np.ndarray:
        return (
            prepared["breakout_up"]
            | prepared["breakout_down"]
            | prepared["exit_long"]
            | prepared["exit_short"]
        )

    def decide(self, ctx: Context) -> list[TradeSignal]:
        if ctx.value("breakout_up"):
            return ctx.switch_to(1)
        if ctx.value("breakout_down"):
            return ctx.switch_to(-1)
        if (ctx.position > 0 and ctx.value("exit_long")) or (
            ctx.position < 0 and ctx.value("exit_short")
        ):
            return ctx.switch_to(0)
        return []
