"""Slippage: how far a taker fill lands from the quoted price, and how much one bar can absorb."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field


class Slippage(Protocol):
    def cap(self, quantity: float, bar_volume: float) -> float:
        """The part of `quantity` this bar can fill; the rest waits for the next bar."""
        ...

    def price(self, side: int, base: float, quantity: float, bar_volume: float) -> float:
        """The taker fill price for `quantity` around `base`; side +1 buys (pays up), -1 sells."""
        ...


class FixedBps(BaseModel):
    """A constant cost in basis points, always against the order; volume never limits the fill."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["fixed"] = "fixed"
    bps: float = Field(0.0, ge=0, le=1_000)

    def cap(self, quantity: float, bar_volume: float) -> float:
        return quantity

    def price(self, side: int, base: float, quantity: float, bar_volume: float) -> float:
        return base * (1.0 + side * self.bps / 10_000)


class VolumeParticipation(BaseModel):
    """Impact grows with the order's share of bar volume (impact × share², as zipline's
    VolumeShareSlippage), and one bar fills at most `max_participation` of its volume."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["volume"] = "volume"
    max_participation: float = Field(0.1, gt=0, le=1)
    impact: float = Field(0.1, ge=0, le=10)
    bps: float = Field(0.0, ge=0, le=1_000)

    def cap(self, quantity: float, bar_volume: float) -> float:
        return min(quantity, self.max_participation * max(bar_volume, 0.0))

    def price(self, side: int, base: float, quantity: float, bar_volume: float) -> float:
        share = quantity / bar_volume if bar_volume > 0 else self.max_participation
        return base * (1.0 + side * (self.bps / 10_000 + self.impact * share * share))
