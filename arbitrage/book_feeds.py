"""Where both venues' live books come from, per the settings: Binance's diff-depth stream with
REST snapshots and Bybit's orderbook.200 stream, one subscription per symbol on each venue."""

from __future__ import annotations

from collections.abc import Sequence

from arbitrage.live_books import BINANCE_TAKER_BPS, BackgroundBooks, CrossBooks
from config import Settings
from market.binance_rest import BinanceRestClient
from market.binance_ws import BinanceStream, depth_stream
from market.books import rest_snapshots
from venues.bybit.stream import BybitStream, book_topic


def default_fees(settings: Settings) -> dict[str, float]:
    """Each venue's standard taker fee in bps, Binance first."""
    return {"binance": BINANCE_TAKER_BPS, "bybit": settings.bybit.taker_fee_bps}


def cross_books(settings: Settings, fees_bps: dict[str, float]) -> CrossBooks:
    return CrossBooks(fees_bps, rest_snapshots(BinanceRestClient(settings.binance)))


def book_streams(
    settings: Settings,
    symbols: Sequence[str],
    *,
    max_attempts: int | None = None,
    backoff_base_s: float = 1.0,
) -> dict[str, BinanceStream | BybitStream]:
    """Each venue's book stream for `symbols`; `max_attempts` reconnections before giving up
    (None: keep trying, for a UI that outlives an outage)."""
    return {
        "binance": BinanceStream(
            [depth_stream(s) for s in symbols],
            base_url=settings.binance.stream_url,
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
        ),
        "bybit": BybitStream(
            [book_topic(s) for s in symbols],
            url=settings.bybit.stream_url,
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
        ),
    }


def live_books(settings: Settings, symbols: Sequence[str]) -> BackgroundBooks:
    """Both venues' books of `symbols` at their standard fees, followed on a background thread
    (reconnecting for as long as the process runs), for the chat's spread tool."""
    cross = cross_books(settings, default_fees(settings))
    return BackgroundBooks(cross, book_streams(settings, symbols)).start()
