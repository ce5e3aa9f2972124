"""The exchanges by name, apart from their clients (HTTP, retries, caches): a symbol where two
venues meet is written `bybit:BTCUSDT`, and each venue names the one asset class it trades (a
stock on Binance, or a coin on Alpaca, is a user's mistake)."""

from __future__ import annotations

from core.errors import UserError
from market.instruments import AssetClass, parse_instrument, require_class
from market.models import parse_symbol

EXCHANGES = ("binance", "bybit", "alpaca")
DEFAULT_EXCHANGE = "binance"
ASSET_CLASS = {
    "binance": AssetClass.CRYPTO,
    "bybit": AssetClass.CRYPTO,
    "alpaca": AssetClass.EQUITY,
}


def parse_exchange(raw: str) -> str:
    name = raw.strip().lower()
    if name not in EXCHANGES:
        raise UserError(f"unknown exchange {raw!r}: one of {', '.join(EXCHANGES)}")
    return name


def venue_symbol(raw: str, default: str = DEFAULT_EXCHANGE) -> tuple[str, str]:
    """`bybit:BTCUSDT` -> ("bybit", "BTCUSDT"); a bare symbol is on `default`."""
    exchange, _, symbol = raw.rpartition(":")
    return parse_exchange(exchange or default), parse_symbol(symbol)


def listed_symbols(exchange: str, raw: str) -> list[str]:
    """`AAPL,MSFT` on a stock venue, `BTCUSDT` on a crypto one; the other class exits 2."""
    wanted = ASSET_CLASS[parse_exchange(exchange)]
    symbols = []
    for part in (p for p in raw.split(",") if p.strip()):
        symbol, _ = parse_instrument(part)
        require_class(symbol, wanted, exchange)
        symbols.append(symbol)
    if not symbols:
        raise none_named(raw)
    return list(dict.fromkeys(symbols))


def none_named(raw: str) -> UserError:
    """What a --symbol that names nothing ('', ' , ') is told, rather than running on none."""
    return UserError(f"--symbol {raw!r} names no symbol: give one such as BTCUSDT, or a list")
