"""The cross-venue spread for a size, as the model may ask for it: both venues' books walked to
the VWAP of that size, both taker fees paid, and no figure from a book older than the age
limit. A thin adapter over arbitrage.spread; where no run keeps both books it says so."""

from __future__ import annotations

from pydantic import BaseModel, Field

from arbitrage.spread import scan
from core.errors import UserError
from market.models import iso_ms, parse_symbol
from tools.env import ToolEnv
from tools.registry import Tool, ToolError

MAX_BOOK_AGE_MS = 2_000  # the arbitrage desk's own limit: older books are not priced


class CrossVenueSpreadIn(BaseModel):
    symbol: str = Field(max_length=20, description="e.g. BTCUSDT")
    size: float = Field(gt=0, description="base quantity to buy on one venue and sell on the other")


class CrossVenueSpreadOut(BaseModel):
    symbol: str
    size: float
    as_of: str
    priced: bool
    refused: str | None = Field(None, description="why nothing was priced (stale or thin book)")
    buy_venue: str | None = None
    sell_venue: str | None = None
    buy_vwap: float | None = None
    sell_vwap: float | None = None
    gross_bps: float | None = None
    costs_bps: float | None = Field(None, description="both taker fees and slippage")
    net_bps: float | None = None
    net_quote: float | None = Field(None, description="profit for the size after fees")
    max_profitable_size: float = 0.0
    book_ages_ms: dict[str, int]


def cross_venue_spread(env: ToolEnv, args: CrossVenueSpreadIn) -> CrossVenueSpreadOut:
    if env.venue_books is None:
        raise ToolError(
            "no cross-venue books in this mode: the spread needs both venues' live order books"
        )
    try:
        symbol = parse_symbol(args.symbol)
    except UserError as exc:
        raise ToolError(str(exc)) from None
    books = env.venue_books(symbol)
    if len(books) != 2:
        raise ToolError(f"no books of {symbol} on two venues right now; ask again shortly")
    found = scan(*books, args.size, env.now_ms, max_age_ms=MAX_BOOK_AGE_MS)
    priced = found.edge
    return CrossVenueSpreadOut(
        symbol=symbol,
        size=args.size,
        as_of=iso_ms(env.now_ms),
        priced=priced is not None,
        refused=found.refused,
        buy_venue=priced and priced.buy_venue,
        sell_venue=priced and priced.sell_venue,
        buy_vwap=priced and round(priced.buy_vwap, 8),
        sell_vwap=priced and round(priced.sell_vwap, 8),
        gross_bps=priced and round(priced.gross_bps, 3),
        costs_bps=priced and round(priced.costs_bps, 3),
        net_bps=priced and round(priced.net_bps, 3),
        net_quote=priced and round(priced.net_quote, 4),
        max_profitable_size=round(found.max_profitable_quantity, 8),
        book_ages_ms={b.venue: b.age_ms(env.now_ms) for b in books},
    )


SPREAD_TOOLS = (
    Tool(
        "cross_venue_spread",
        "Net edge of buying `size` on one exchange and selling it on the other now: VWAP from "
        "both order books, both taker fees, and the largest size that still profits.",
        CrossVenueSpreadIn,
        CrossVenueSpreadOut,
        cross_venue_spread,
    ),
)
