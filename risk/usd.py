"""One portfolio across venues, counted in USD: a stock account is quoted in USD, a crypto
account in USDT, and USDT counts as USD at a configured rate (`portfolio.usdt_usd`, 1.0 by
default), so one exposure limit can hold over both."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from risk.models import Elsewhere

USD = "USD"
USDT = "USDT"


class VenueBook(BaseModel):
    """One venue's account as another venue's gate counts it: equity and the gross value of
    its positions, in its own quote currency."""

    model_config = ConfigDict(frozen=True)

    venue: str
    quote: str
    equity: float
    exposure: float = Field(ge=0)


def usd_per(quote: str, usdt_usd: float) -> float:
    """USD per unit of `quote`; a quote with no known rate is an error, never a guess."""
    if quote == USD:
        return 1.0
    if quote == USDT:
        return usdt_usd
    raise ValueError(f"no USD rate for {quote}: one portfolio counts USD and USDT accounts only")


def elsewhere(books: Sequence[VenueBook], quote: str, usdt_usd: float) -> Elsewhere:
    """The other venues' equity and exposure in `quote`, this account's currency."""
    into = usd_per(quote, usdt_usd)
    equity = sum(b.equity * usd_per(b.quote, usdt_usd) for b in books) / into
    exposure = sum(b.exposure * usd_per(b.quote, usdt_usd) for b in books) / into
    return Elsewhere(equity=equity, exposure=exposure, venues=[b.venue for b in books])
