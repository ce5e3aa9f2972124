"""Where the chat's bars come from: with the network up, the store refreshed from Binance (closed
1m bars up to now), so the decision time is now; offline, or when Binance does not answer, the
bundled sample, frozen, said in one notice line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from config import Settings
from core.clock import Clock
from market.binance_rest import BinanceRestClient
from market.models import EXCHANGE, iso_ms
from market.sample import SAMPLE_SYMBOLS, load_sample
from market.source import CandleSource, Notify
from store import Store
from store.candles import load_candles, summarize
from tools import MarketData

HISTORY_DAYS = 1.0  # what the chat's tools and indicators read back from now
FRESH_MS = 3 * 60_000  # a last bar older than this is not live data


@dataclass
class ChatMarket:
    """The chat's frames and whether they grow (`live`) or are the frozen sample."""

    frames: dict[str, pd.DataFrame]
    live: bool
    describe: str
    refresh: Callable[[], dict[str, pd.DataFrame]] | None = None
    venues: dict[str, pd.DataFrame] = field(default_factory=dict)  # `bybit:BTCUSDT`: read only

    def market(self, frames: dict[str, pd.DataFrame]) -> MarketData:
        """The tools' market: the chat's own bars plus other venues' stored ones."""
        return MarketData(frames | self.venues, "1m")


def other_venues(store: Store, symbols: list[str]) -> dict[str, pd.DataFrame]:
    """Other exchanges' stored 1m bars of `symbols`, keyed `exchange:SYMBOL`, so the chat's
    candle and snapshot tools can compare venues (`agent-data download --exchange bybit`)."""
    return {
        f"{s.exchange}:{s.symbol}": load_candles(store, s.symbol, "1m", exchange=s.exchange)
        for s in summarize(store)
        if s.exchange != EXCHANGE and s.symbol in symbols and s.interval == "1m"
    }


def sample_market(frames: dict[str, pd.DataFrame] | None = None) -> ChatMarket:
    frames = frames or {s: load_sample(s) for s in SAMPLE_SYMBOLS}
    first = min(int(f["open_time"].iloc[0]) for f in frames.values())
    last = min(int(f["close_time"].iloc[-1]) for f in frames.values())
    describe = (
        f"bundled Binance sample {', '.join(frames)} 1m, {iso_ms(first)} → {iso_ms(last)} UTC, "
        "not live"
    )
    return ChatMarket(frames, live=False, describe=describe)


def open_chat_market(settings: Settings, store: Store, clock: Clock, notify: Notify) -> ChatMarket:
    """Binance through the store when the network is up, else the sample with a notice."""
    if settings.offline:
        notify("notice: offline (AGENT_OFFLINE): the chat trades on the bundled sample, frozen")
        return sample_market()

    def client() -> BinanceRestClient:
        return BinanceRestClient(settings.binance)

    source = CandleSource(store, clock, lambda line: None, client)

    def fetch() -> dict[str, pd.DataFrame]:
        return {s: source.get(s, "1m", days=HISTORY_DAYS) for s in SAMPLE_SYMBOLS}

    frames = fetch()
    last = min(int(f["close_time"].iloc[-1]) for f in frames.values())
    if last < clock.now_ms() - FRESH_MS:
        notify(
            f"notice: Binance unreachable at {settings.binance.base_url}: the chat trades on the "
            "bundled sample, frozen; it is not live data"
        )
        return sample_market()
    describe = f"Binance {', '.join(frames)} 1m via {settings.binance.base_url}, live closed bars"
    return ChatMarket(frames, live=True, describe=describe, refresh=fetch)
