"""When a run may trade: the runner asks this, and only this, whether a bar can fill orders and
whether a decision was made while the market was closed. Crypto runs have no hours (always
open); equity runs follow the XNYS calendar in regular hours, or extended hours by opt-in."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from market.calendar import Sessions


class ClosedPolicy(StrEnum):
    """What happens to an order decided while the market is closed."""

    QUEUE = "queue"  # a DAY order: it waits for the next open, as brokers queue it
    VETO = "veto"  # vetoed with MARKET_CLOSED


class HoursConfig(BaseModel):
    """The equity trading settings a run is given (config `equity.*`, flags)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    extended_hours: bool = False
    when_closed: ClosedPolicy = ClosedPolicy.QUEUE


class TradingHours:
    """XNYS hours over one bar interval: which bar opens may fill, what the market state is."""

    def __init__(
        self, interval_ms: int, config: HoursConfig | None = None, sessions: Sessions | None = None
    ) -> None:
        from market.calendar import xnys  # pandas loads with the hours, not with the settings

        self.interval_ms = interval_ms
        self.config = config or HoursConfig()
        self.sessions = sessions or xnys()

    def tradable(self, open_ms: np.ndarray) -> np.ndarray:
        """Per bar: may orders fill in it (regular hours, or extended hours when opted in)."""
        hours = self.sessions.extended if self.config.extended_hours else self.sessions.regular
        return hours(np.asarray(open_ms, dtype=np.int64), self.interval_ms)

    def tradable_at(self, open_ms: int) -> bool:
        return bool(self.tradable(np.array([open_ms]))[0])

    def state(self, now_ms: int) -> str:
        """Open or closed at `now_ms` and when it next opens, for prompts and status."""
        return self.sessions.state(now_ms)
