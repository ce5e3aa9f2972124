"""The exchanges by name: `--exchange binance|bybit` picks a market-data client here, and a
symbol where two venues meet is written `bybit:BTCUSDT`."""

from __future__ import annotations

from pathlib import Path

from config import Settings
from core.errors import UserError
from market.binance_rest import BinanceRestClient, BinanceUnavailable
from market.models import SymbolRules, parse_symbol
from venues.base import MarketData
from venues.bybit.rest import BybitRestClient, BybitUnavailable

EXCHANGES = ("binance", "bybit")
DEFAULT_EXCHANGE = "binance"
UNAVAILABLE: tuple[type[Exception], ...] = (BinanceUnavailable, BybitUnavailable)


class _Binance(BinanceRestClient):
    """Binance's REST client under the venue interface's names."""

    exchange = "binance"

    def rules(self, symbols: list[str] | None = None) -> dict[str, SymbolRules]:
        return self.exchange_info(symbols)


def parse_exchange(raw: str) -> str:
    name = raw.strip().lower()
    if name not in EXCHANGES:
        raise UserError(f"unknown exchange {raw!r}: one of {', '.join(EXCHANGES)}")
    return name


def venue_symbol(raw: str, default: str = DEFAULT_EXCHANGE) -> tuple[str, str]:
    """`bybit:BTCUSDT` -> ("bybit", "BTCUSDT"); a bare symbol is on `default`."""
    exchange, _, symbol = raw.rpartition(":")
    return parse_exchange(exchange or default), parse_symbol(symbol)


def market_data(exchange: str, settings: Settings, *, cache_dir: Path | None = None) -> MarketData:
    """The public REST client of `exchange`, at the URL its settings name."""
    if parse_exchange(exchange) == "bybit":
        return BybitRestClient(settings.bybit)
    return _Binance(settings.binance, cache_dir=cache_dir)
