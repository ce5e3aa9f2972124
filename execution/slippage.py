"""Slippage: how far a taker fill lands from the quoted price, and how much one bar can absorb."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from execution.orders import fixed_cost

if TYPE_CHECKING:
    from market.orderbook import FillEstimate, Side


class Slippage(Protocol):
    def cap(self, quantity: float, bar_volume: float) -> float:
        """The part of `quantity` this bar can fill; the rest waits for the next bar."""
        ...

    def price(self, side: int, base: float, quantity: float, bar_volume: float) -> float:
        """The taker fill price for `quantity` around `base`; side +1 buys (pays up), -1 sells."""
        ...


class FixedBps(BaseModel):
    """A constant cost in basis points, always against the order; volume never limits the fill."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    kind: Literal["fixed"] = "fixed"
    bps: float = Field(0.0, ge=0, le=1_000)

    def cap(self, quantity: float, bar_volume: float) -> float:
        return quantity

    def price(self, side: int, base: float, quantity: float, bar_volume: float) -> float:
        return fixed_cost(side, base, self.bps)


class VolumeParticipation(BaseModel):
    """Impact grows with the order's share of bar volume (impact × share², as zipline's
    VolumeShareSlippage), and one bar fills at most `max_participation` of its volume."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    kind: Literal["volume"] = "volume"
    max_participation: float = Field(0.1, gt=0, le=1)
    impact: float = Field(0.1, ge=0, le=10)
    bps: float = Field(0.0, ge=0, le=1_000)

    def cap(self, quantity: float, bar_volume: float) -> float:
        return min(quantity, self.max_participation * max(bar_volume, 0.0))

    def price(self, side: int, base: float, quantity: float, bar_volume: float) -> float:
        share = quantity / bar_volume if bar_volume > 0 else self.max_participation
        return base * (1.0 + side * (self.bps / 10_000 + self.impact * share * share))


class FillSource(Protocol):
    """Where a book walk comes from; `market.books.Books` is one."""

    def fill(self, symbol: str, side: Side, quantity: float) -> FillEstimate | None: ...


@dataclass(frozen=True, slots=True)
class BookWalk:
    """One symbol's taker fills priced from its live book: `base` moved by what walking the book
    costs against its mid (half the spread plus the levels the order eats). With no synced book,
    one too thin for the whole order, or a crossed one, `fallback` prices it; bar volume caps
    as `fallback` does."""

    symbol: str
    books: FillSource
    fallback: Slippage = field(default_factory=FixedBps)

    def cap(self, quantity: float, bar_volume: float) -> float:
        return self.fallback.cap(quantity, bar_volume)

    def price(self, side: int, base: float, quantity: float, bar_volume: float) -> float:
        walk = self.books.fill(self.symbol, "buy" if side > 0 else "sell", quantity)
        if walk is None or not walk.complete or walk.cost_bps is None or walk.cost_bps < 0:
            return self.fallback.price(side, base, quantity, bar_volume)
        return base * (1.0 + side * walk.cost_bps / 10_000)
