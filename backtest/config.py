"""What a backtest run is configured with; everything here ends up in the report's `config`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from backtest.metrics import PERIODS_PER_YEAR
from core.amounts import MAX_CASH
from execution.fees import FeeSchedule
from execution.slippage import FixedBps, VolumeParticipation


class BacktestConfig(BaseModel):
    """Account, sizing and fill-model settings; defaults are Binance spot's (0.1% fees)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    cash: float = Field(
        10_000.0, gt=0, le=MAX_CASH, description="starting quote-currency cash (USDT)"
    )
    size_pct: float = Field(
        1.0, gt=0, le=1, description="fraction of equity per entry; 1.0 is all equity"
    )
    allow_short: bool = False
    fees: FeeSchedule = Field(default_factory=FeeSchedule)
    slippage: FixedBps | VolumeParticipation = Field(default_factory=FixedBps, discriminator="kind")
    limit_on_touch: bool = False
    stop_loss_pct: float | None = Field(None, gt=0, lt=1)
    take_profit_pct: float | None = Field(None, gt=0)
    trailing_stop_pct: float | None = Field(
        None, gt=0, lt=1, description="a long's stop this fraction below its highest high"
    )
    interval: str = "1m"
    periods_per_year: int = Field(PERIODS_PER_YEAR, ge=1, description="365: crypto trades daily")
    bars_per_session: float | None = Field(
        None, gt=0, description="an intraday stock run's bars per session: its year is sessions"
    )

    def cost_reserve(self) -> float:
        """Fraction of a buy's notional the gate keeps back for the taker fee and the worst
        slippage, so an all-equity order still fits the cash once it fills."""
        slip = self.slippage
        worst = slip.bps / 10_000
        if isinstance(slip, VolumeParticipation):
            worst += slip.impact * slip.max_participation**2
        return self.fees.taker + worst
