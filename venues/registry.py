"""The exchanges' market-data clients: `--exchange binance|bybit|alpaca` picks one here (the
names themselves, and the asset class each trades, are venues.names)."""

from __future__ import annotations

from pathlib import Path

from config import Settings
from market.binance_rest import BinanceRestClient, BinanceUnavailable
from market.models import SymbolRules
from venues.alpaca.data import AlpacaData, AlpacaError, AlpacaKeys
from venues.base import MarketData
from venues.bybit.rest import BybitRestClient, BybitUnavailable
from venues.names import parse_exchange

UNAVAILABLE: tuple[type[Exception], ...] = (BinanceUnavailable, BybitUnavailable, AlpacaError)


class _Binance(BinanceRestClient):
    """Binance's REST client under the venue interface's names."""

    exchange = "binance"

    def rules(self, symbols: list[str] | None = None) -> dict[str, SymbolRules]:
        return self.exchange_info(symbols)


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
