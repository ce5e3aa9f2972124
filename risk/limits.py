"""Limits from config: safe for an unattended AI by default, yet loose enough for a classic
strategy asking for all its equity to get nearly all its cash (docs/risk.md)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from core.config_model import ConfigModel
from risk.models import SignalSource

MIN_DATA_AGE_MS = 5_000  # a closed bar's trip to the loop, with the exchange clock's skew
RETIRED_SOURCE = "manual"  # no path placed a person's own order, so its limits judged nothing


class SourceLimits(ConfigModel):
    """Limits that depend on who proposed the signal. Fractions are of equity (1.0 = 100%)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_position_pct: float = Field(0.25, ge=0, le=1)
    max_exposure_pct: float = Field(0.50, ge=0, le=1)
    max_order_notional: float | None = Field(10_000.0, gt=0)
    max_orders_per_minute: int = Field(2, ge=0)
    max_orders_per_hour: int = Field(20, ge=0)
    risk_per_trade_pct: float | None = Field(0.01, gt=0, le=1)
    atr_stop_multiple: float | None = Field(2.0, gt=0)
    trailing_stop_pct: float | None = Field(None, gt=0, lt=1)
    require_stop_loss: bool = True
    min_confidence: float = Field(0.6, ge=0, le=1)
    scale_by_confidence: bool = True
    fat_finger_pct: float = Field(0.02, gt=0)
    cooldown_after_losses: int | None = Field(3, ge=1)
    cooldown_minutes: int = Field(60, ge=0)
    allow_pyramiding: bool = False


_SOURCE_DEFAULTS: dict[str, SourceLimits] = {
    SignalSource.AI: SourceLimits(),
    SignalSource.STRATEGY: SourceLimits(
        max_position_pct=1.0,
        max_exposure_pct=1.0,
        max_order_notional=None,
        max_orders_per_minute=30,
        max_orders_per_hour=600,
        risk_per_trade_pct=0.02,
        atr_stop_multiple=None,
        require_stop_loss=False,
        min_confidence=0.0,
        scale_by_confidence=False,
        fat_finger_pct=0.10,
        cooldown_after_losses=None,
        allow_pyramiding=True,
    ),
}


class RiskLimits(ConfigModel):
    """Everything the gate and the circuit breakers read; `RiskLimits()` is safe as it stands."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_daily_loss_pct: float | None = Field(0.10, gt=0, le=1)
    max_drawdown_pct: float | None = Field(0.25, gt=0, le=1)
    max_llm_failures: int = Field(3, ge=1)
    llm_recoveries: int = Field(
        3, ge=1, description="healthy model calls in a row that end safe mode"
    )
    max_data_age_ms: int = Field(120_000)
    max_spread_bps: float = Field(50.0, gt=0)
    fee_rate: float = Field(0.001, ge=0, lt=1)
    max_open_positions: int | None = Field(None, ge=1)
    size_by_agreement: bool = Field(
        False,
        description="size entries by the share of the model's samples that agree (--samples)",
    )
    min_agreement: float = Field(
        0.6, ge=0, le=1, description="with size_by_agreement: entries below are vetoed"
    )
    ai: SourceLimits = Field(default_factory=lambda: _SOURCE_DEFAULTS[SignalSource.AI])
    strategy: SourceLimits = Field(default_factory=lambda: _SOURCE_DEFAULTS[SignalSource.STRATEGY])

    @model_validator(mode="before")
    @classmethod
    def _without_manual(cls, value: Any) -> Any:
        """Limits stored before `risk.manual` was retired (an account's state, a verdict's
        inputs) still load; a user's settings that set it are refused (config.strict)."""
        if isinstance(value, dict) and RETIRED_SOURCE in value:
            return {k: v for k, v in value.items() if k != RETIRED_SOURCE}
        return value

    @field_validator("max_data_age_ms")
    @classmethod
    def _reachable_age(cls, value: int) -> int:
        """A live bar reaches the loop some time after its close, and a backtest's clock is the
        close itself: below this floor a backtest would trade what paper and live veto."""
        if value < MIN_DATA_AGE_MS:
            raise ValueError(
                f"{value:,} ms is below {MIN_DATA_AGE_MS:,} ms: a live bar arrives after its "
                "close, so paper and live would veto every entry as STALE_DATA and never decide "
                "a bar while a backtest traded; 120,000 (one 1m bar plus slack) is the default"
            )
        return value

    @field_validator("ai", "strategy", mode="before")
    @classmethod
    def _over_source_defaults(cls, value: Any, info: ValidationInfo) -> Any:
        """A partial override (`[risk.strategy] max_position_pct = 0.5`) keeps that source's
        other defaults instead of falling back to the AI's."""
        if isinstance(value, dict):
            base = _SOURCE_DEFAULTS[SignalSource(info.field_name)].model_dump()
            return {**base, **value}
        return value

    def with_cost_reserve(self, reserve: float) -> RiskLimits:
        """The limits a simulated run's gate applies. A `fee_rate` the user set (a profile, the
        environment) is theirs in every mode; unset, the gate keeps back what the run's own
        fill model costs a buy at worst (`BacktestConfig.cost_reserve`). The copy keeps which
        fields were set, so one run's reserve never passes for a user's choice in the next."""
        if "fee_rate" in self.model_fields_set:
            return self
        values = {**dict(self), "fee_rate": reserve}
        return type(self).model_construct(set(self.model_fields_set), **values)

    def for_source(self, source: SignalSource) -> SourceLimits:
        return getattr(self, source)  # a StrEnum is its own attribute name
