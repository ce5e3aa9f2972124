"""One instrument model for crypto spot and US equities: which class a symbol is, and the order
rules an equity trades under (whole shares unless fractionable, a penny tick at or above $1 and
$0.0001 below, quoted in USD, as SEC Rule 612 and the brokers have it)."""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum

from core.errors import UserError
from market.models import EXCHANGE, SymbolRules, parse_symbol


class AssetClass(StrEnum):
    CRYPTO = "crypto_spot"
    EQUITY = "us_equity"


STOCK_EXCHANGE = "alpaca"  # the US-stock venue, and so the store's key of a stock's bars
CRYPTO_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "BTC", "ETH", "BNB", "EUR", "TRY")
_TICKER_RE = re.compile(r"^[A-Z]{1,5}(\.[A-Z])?$")
PENNY = Decimal("0.01")
SUB_PENNY = Decimal("0.0001")
FRACTION_STEP = Decimal("0.000000001")  # Alpaca takes fractional quantities to 9 decimals


class EquityRules(SymbolRules):
    """A US stock's order rules; `fractionable` as the broker marks the asset."""

    asset_class: AssetClass = AssetClass.EQUITY
    fractionable: bool = False


def asset_class(symbol: str) -> AssetClass:
    """Crypto spot pairs end in their quote asset (BTCUSDT); US tickers are 1-5 letters with an
    optional share class (BRK.B)."""
    if symbol.endswith(CRYPTO_QUOTES) and len(symbol) > 4:
        return AssetClass.CRYPTO
    return AssetClass.EQUITY


def is_stock(symbol: str) -> bool:
    """A normalised symbol is a US ticker (BRK.B), as `parse_instrument` classes it, not a
    coin pair (ETHGBP, whose quote `asset_class` does not know, is one)."""
    return bool(_TICKER_RE.match(symbol)) and asset_class(symbol) is AssetClass.EQUITY


def home_exchange(symbol: str) -> str:
    """Whose bars a stored symbol's are when no venue is named: a US stock's are the US-stock
    venue's, imported or downloaded alike; a coin's Binance's."""
    return STOCK_EXCHANGE if is_stock(symbol) else EXCHANGE


def quote_of(symbol: str) -> str:
    """The currency a symbol is priced in: USD for a US stock, the pair's quote for crypto."""
    if asset_class(symbol) is AssetClass.EQUITY:
        return "USD"
    return next(q for q in CRYPTO_QUOTES if symbol.endswith(q))


def parse_instrument(raw: str) -> tuple[str, AssetClass]:
    """A crypto pair or a US ticker, normalised, with its class; anything else says what is
    expected."""
    symbol = raw.strip().upper()
    if is_stock(symbol):
        return symbol, AssetClass.EQUITY
    try:
        return parse_symbol(raw), AssetClass.CRYPTO
    except UserError:
        raise UserError(
            f"invalid symbol {raw!r}: expected a crypto spot pair such as BTCUSDT or a US "
            "stock ticker such as GOOG"
        ) from None


def require_class(symbol: str, wanted: AssetClass, venue: str) -> None:
    """A stock on a crypto venue, or a coin on a stock venue, is a user's mistake."""
    found = asset_class(symbol)
    if found is not wanted:
        what = "a US stock" if found is AssetClass.EQUITY else "a crypto pair"
        trades = "US stocks" if wanted is AssetClass.EQUITY else "crypto spot pairs"
        raise UserError(f"{symbol} is {what}; the {venue} venue trades {trades} only")


def tick_for(price: float) -> Decimal:
    """SEC Rule 612: quotes at or above $1.00 in pennies, below in $0.0001."""
    return PENNY if price >= 1.0 else SUB_PENNY


def equity_rules(symbol: str, price: float, *, fractionable: bool = False) -> EquityRules:
    """Rules for `symbol` trading around `price` (the tick depends on the price level)."""
    step = FRACTION_STEP if fractionable else Decimal(1)
    return EquityRules(
        symbol=symbol,
        base_asset=symbol,
        quote_asset="USD",
        tick_size=tick_for(price),
        step_size=step,
        min_qty=step,
        max_qty=Decimal(10**9),
        min_notional=Decimal(0),
        fractionable=fractionable,
    )
