"""US equity settings: market hours, what an order decided while closed does, and the fees."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from core.config_model import ConfigModel
from execution.equity_fees import EquityFees
from runtime.hours import ClosedPolicy, HoursConfig


class EquitySettings(ConfigModel):
    """`[equity]` in a profile; `--extended-hours` overrides `extended_hours` for one run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    extended_hours: bool = Field(False, description="fill in the pre- and post-market too")
    when_closed: ClosedPolicy = Field(
        ClosedPolicy.QUEUE,
        description="queue: an order decided while closed waits for the next open (a DAY "
        "order); veto: it is vetoed with MARKET_CLOSED",
    )
    fees: EquityFees = Field(default_factory=EquityFees)

    def hours(self, *, extended_hours: bool = False) -> HoursConfig:
        return HoursConfig(
            extended_hours=self.extended_hours or extended_hours, when_closed=self.when_closed
        )
