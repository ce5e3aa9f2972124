"""Trading fees: maker/taker rates (Binance spot default 0.1%) or any callable the user supplies."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Liquidity(StrEnum):
    """Who provided liquidity decides the fee rate: resting orders are makers, the rest takers."""

    MAKER = "maker"
    TAKER = "taker"


FeeFn = Callable[[float, float, Liquidity], float]
"""(quantity, price, liquidity) -> fee in quote currency; e.g. a tiered or BNB-discounted rate."""


class FeeSchedule(BaseModel):
    """Proportional fees on notional, charged in quote currency on every fill."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    maker: float = Field(0.001, ge=-0.01, le=0.1)
    taker: float = Field(0.001, ge=-0.01, le=0.1)

    @classmethod
    def from_bps(cls, bps: float) -> FeeSchedule:
        return cls(maker=bps / 10_000, taker=bps / 10_000)

    def __call__(self, quantity: float, price: float, liquidity: Liquidity) -> float:
        rate = self.maker if liquidity is _MAKER else self.taker
        return quantity * price * rate


_MAKER = Liquidity.MAKER  # read once: on Python 3.11 `Liquidity.MAKER` is a metaclass lookup
