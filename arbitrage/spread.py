"""The cross-venue edge for a real size: buy on one venue's asks, sell on the other's bids, each
at the VWAP its depth gives for that size, both taker fees and any extra slippage paid, and
nothing priced off a book older than the age limit."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

Level = tuple[float, float]
_BPS = 10_000.0


class VenueBook(BaseModel):
    """One venue's book for one symbol at `time_ms`, best levels first, with its taker fee."""

    model_config = ConfigDict(frozen=True)

    venue: str
    bids: list[Level]
    asks: list[Level]
    time_ms: int
    taker_fee_bps: float = Field(ge=0)
    slippage_bps: float = Field(0.0, ge=0)

    def age_ms(self, now_ms: int) -> int:
        return max(0, now_ms - self.time_ms)


class Edge(BaseModel):
    """Buying `quantity` on `buy_venue` and selling it on `sell_venue` now."""

    model_config = ConfigDict(frozen=True)

    buy_venue: str
    sell_venue: str
    quantity: float
    buy_vwap: float
    sell_vwap: float
    gross_bps: float  # sell VWAP over buy VWAP, before fees and slippage
    costs_bps: float  # both taker fees and both slippages
    net_bps: float
    net_quote: float  # profit in the quote coin after everything


class Scan(BaseModel):
    """The better direction for the size, or why there is none to act on."""

    model_config = ConfigDict(frozen=True)

    edge: Edge | None
    refused: str | None = None  # a stale or empty book: nothing was priced
    max_profitable_quantity: float = 0.0  # the size where net edge falls to the threshold


def vwap(levels: Sequence[Level], quantity: float) -> float | None:
    """Average price of taking `quantity` from `levels` (best first); None if too thin."""
    remaining, cost = quantity, 0.0
    for price, size in levels:
        take = min(remaining, size)
        cost += take * price
        remaining -= take
        if remaining <= 1e-15 * quantity:
            return cost / quantity
    return None


def edge(buy: VenueBook, sell: VenueBook, quantity: float) -> Edge | None:
    """The edge of one direction for `quantity`; None when a book is too thin for it."""
    if not quantity > 0:
        raise ValueError(f"quantity must be positive, got {quantity}")
    paid, got = vwap(buy.asks, quantity), vwap(sell.bids, quantity)
    if paid is None or got is None:
        return None
    costs = buy.taker_fee_bps + sell.taker_fee_bps + buy.slippage_bps + sell.slippage_bps
    spent = paid * (1 + (buy.taker_fee_bps + buy.slippage_bps) / _BPS)
    received = got * (1 - (sell.taker_fee_bps + sell.slippage_bps) / _BPS)
    return Edge(
        buy_venue=buy.venue,
        sell_venue=sell.venue,
        quantity=quantity,
        buy_vwap=paid,
        sell_vwap=got,
        gross_bps=(got - paid) / paid * _BPS,
        costs_bps=costs,
        net_bps=(received - spent) / spent * _BPS,
        net_quote=(received - spent) * quantity,
    )


def max_profitable_quantity(
    buy: VenueBook, sell: VenueBook, threshold_bps: float = 0.0, *, iterations: int = 60
) -> float:
    """The largest size whose net edge still clears `threshold_bps` (0 if none does). Net edge
    only falls as the size walks deeper into both books, so a bisection finds it."""
    depth = min(sum(q for _, q in buy.asks), sum(q for _, q in sell.bids))
    if depth <= 0:
        return 0.0

    def clears(quantity: float) -> bool:
        found = edge(buy, sell, quantity)
        return found is not None and found.net_bps >= threshold_bps

    if clears(depth):
        return depth
    low, high = 0.0, depth
    for _ in range(iterations):
        mid = (low + high) / 2
        if mid <= 0:
            break
        low, high = (mid, high) if clears(mid) else (low, mid)
    return low


def scan(
    a: VenueBook,
    b: VenueBook,
    quantity: float,
    now_ms: int,
    *,
    max_age_ms: int,
    threshold_bps: float = 0.0,
) -> Scan:
    """Both directions for `quantity`; the better one, unless a book is stale or empty."""
    for book in (a, b):
        if book.age_ms(now_ms) > max_age_ms:
            return Scan(
                edge=None,
                refused=f"{book.venue} book is {book.age_ms(now_ms)} ms old "
                f"(limit {max_age_ms} ms): not priced",
            )
        if not book.bids or not book.asks:
            return Scan(edge=None, refused=f"{book.venue} book has an empty side")
    found = [e for e in (edge(a, b, quantity), edge(b, a, quantity)) if e is not None]
    if not found:
        return Scan(edge=None, refused=f"neither book holds {quantity:g} on the side it needs")
    best = max(found, key=lambda e: e.net_bps)
    buy, sell = (a, b) if best.buy_venue == a.venue else (b, a)
    return Scan(
        edge=best, max_profitable_quantity=max_profitable_quantity(buy, sell, threshold_bps)
    )
