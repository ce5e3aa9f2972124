"""The exchanges by name: `--exchange binance|bybit|alpaca` picks a market-data client here, a
symbol where two venues meet is written `bybit:BTCUSDT`, and each venue names the one asset
class it trades (a stock on Binance, or a coin on Alpaca, is a user's mistake)."""

from __future__ import annotations

from pathlib import Path

from config import Settings
from core.errors import UserError
from market.binance_rest import BinanceRestClient, BinanceUnavailable
from market.instruments import AssetClass, parse_instrument, require_class
from market.models import SymbolRules, parse_symbol
from venues.alpaca.data import AlpacaData, AlpacaError, AlpacaKeys
from venues.base import MarketData
from venues.bybit.rest import BybitRestClient, BybitUnavailable

EXCHANGES = ("binance", "bybit", "alpaca")
DEFAULT_EXCHANGE = "binance"
UNAVAILABLE: tuple[type[Exception], ...] = (BinanceUnavailable, BybitUnavailable, AlpacaError)
ASSET_CLASS = {
    "binance": AssetClass.CRYPTO,
    "bybit": AssetClass.CRYPTO,
    "alpaca": AssetClass.EQUITY,
}


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


def listed_symbols(exchange: str, raw: str) -> list[str]:
    """`AAPL,MSFT` on a stock venue, `BTCUSDT` on a crypto one; the other class exits 2."""
    wanted = ASSET_CLASS[parse_exchange(exchange)]
    symbols = []
    for part in (p for p in raw.split(",") if p.strip()):
        symbol, _ = parse_instrument(part)
        require_class(symbol, wanted, exchange)
        symbols.append(symbol)
    return list(dict.fromkeys(symbols))


def alpaca_keys(settings: Settings) -> AlpacaKeys:
    """APCA_API_KEY_ID and APCA_API_SECRET_KEY from the environment or `.env` (exit 2 naming
    what is missing)."""
    found = {"APCA_API_KEY_ID": settings.apca_api_key_id,
             "APCA_API_SECRET_KEY": settings.apca_api_secret_key}  # fmt: skip
    return AlpacaKeys.from_env({k: v.get_secret_value() for k, v in found.items() if v})


def alpaca_data(settings: Settings, *, live: bool = False) -> AlpacaData:
    """Alpaca's market data with the run's keys; its clock from the live API when the keys are
    live ones (Alpaca's paper and live keys differ, and each API takes only its own)."""
    alpaca = settings.alpaca
    return AlpacaData(
        alpaca_keys(settings),
        data_url=alpaca.data_url,
        trading_url=alpaca.live_url if live else alpaca.paper_url,
        feed=alpaca.feed,
        timeout_s=alpaca.timeout_s,
    )


def market_data(exchange: str, settings: Settings, *, cache_dir: Path | None = None) -> MarketData:
    """The public REST client of `exchange`, at the URL its settings name."""
    name = parse_exchange(exchange)
    if name == "bybit":
        return BybitRestClient(settings.bybit)
    if name == "alpaca":
        return alpaca_data(settings)
    return _Binance(settings.binance, cache_dir=cache_dir)
