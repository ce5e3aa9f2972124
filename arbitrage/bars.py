"""Cross-venue spreads from same-minute 1m bars: the stored bars of two exchanges, or the
bundled real day (Binance BTCBUSD and Bybit BTCUSDT, 2022-12-13). Bars carry no depth, so a
bar-based figure is close against close, and each one says so."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict

from arbitrage.spread import VenueBook
from core.errors import UserError
from store.candles import load_candles
from store.db import Store

DATA = Path(__file__).parent / "data"
BUNDLED = {
    "binance": ("BTCBUSD", DATA / "binance_spot_BTCBUSD_1m_trade_2022-12-13_lean.csv"),
    "bybit": ("BTCUSDT", DATA / "bybit_spot_BTCUSDT_1m_trade_2022-12-13_lean.csv"),
}
BUNDLED_DAY_MS = 1_670_889_600_000  # 2022-12-13 00:00 UTC
BAR_NOTICE = (
    "notice: bar-based, not book-based: each minute compares the two closes, with no depth "
    "(a VWAP for the size needs both books at the same moment)"
)


class CrossBars(BaseModel):
    """Closes and volumes of one symbol on two venues over the minutes both have."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    venues: tuple[str, str]
    labels: tuple[str, str]  # e.g. "binance BTCBUSD"
    frame: pd.DataFrame  # open_time, close_<venue>, volume_<venue>


class SpreadSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    labels: tuple[str, str]
    minutes: int
    first_open_ms: int
    last_open_ms: int
    mean_bps: float  # second venue's close over the first's
    min_bps: float
    max_bps: float
    costs_bps: float  # both taker fees and both slippages
    minutes_clearing: int  # minutes whose |spread| beat the costs and the threshold
    best_net_bps: float


def bundled_cross_bars(venues: tuple[str, str]) -> CrossBars:
    """The bundled day of binance and bybit in the order `venues` names them, as each fee,
    label and spread (second over first) that goes with the bars follows that order."""
    frames = [_lean(BUNDLED[venue][1], venue) for venue in venues]
    return _joined(venues, tuple(f"{v} {BUNDLED[v][0]}" for v in venues), frames)


def stored_cross_bars(store: Store, symbol: str, venues: tuple[str, str]) -> CrossBars:
    """The stored 1m bars of `symbol` on both venues (`agent-data download --exchange`)."""
    frames = []
    for venue in venues:
        stored = load_candles(store, symbol, "1m", exchange=venue)
        if stored.empty:
            raise UserError(
                f"no {venue} {symbol} 1m bars in the store: run `agent-data download "
                f"--exchange {venue} --symbol {symbol} --days 1` first"
            )
        frames.append(
            stored[["open_time", "close", "volume"]].rename(
                columns={"close": f"close_{venue}", "volume": f"volume_{venue}"}
            )
        )
    return _joined(venues, (f"{venues[0]} {symbol}", f"{venues[1]} {symbol}"), frames)


def summarize(
    bars: CrossBars, fees_bps: tuple[float, float], slippage_bps: float, threshold_bps: float
) -> tuple[SpreadSummary, pd.Series]:
    """The spread series in bps (second venue over the first) and what it adds up to."""
    a, b = bars.venues
    frame = bars.frame
    spread = (frame[f"close_{b}"] - frame[f"close_{a}"]) / frame[f"close_{a}"] * 10_000
    costs = sum(fees_bps) + 2 * slippage_bps
    net = spread.abs() - costs
    summary = SpreadSummary(
        labels=bars.labels,
        minutes=len(frame),
        first_open_ms=int(frame["open_time"].iloc[0]),
        last_open_ms=int(frame["open_time"].iloc[-1]),
        mean_bps=float(spread.mean()),
        min_bps=float(spread.min()),
        max_bps=float(spread.max()),
        costs_bps=costs,
        minutes_clearing=int((net >= threshold_bps).sum()),
        best_net_bps=float(net.max()),
    )
    return summary, spread.rename("spread_bps")


def books_at(
    bars: CrossBars, row: int, fees_bps: tuple[float, float], slippage_bps: float
) -> dict[str, VenueBook]:
    """Each venue's minute as a one-level book at its close, as deep as the minute's volume:
    what a dry run on bars may take, and no more."""
    record = bars.frame.iloc[row]
    close_ms = int(record["open_time"]) + 59_999
    books = {}
    for venue, fee in zip(bars.venues, fees_bps, strict=True):
        level = [(float(record[f"close_{venue}"]), float(record[f"volume_{venue}"]))]
        books[venue] = VenueBook(
            venue=venue,
            bids=level,
            asks=level,
            time_ms=close_ms,
            taker_fee_bps=fee,
            slippage_bps=slippage_bps,
        )
    return books


def _lean(path: Path, venue: str) -> pd.DataFrame:
    frame = pd.read_csv(path, names=["t", "open", "high", "low", "close", "volume"])
    return pd.DataFrame(
        {
            "open_time": BUNDLED_DAY_MS + frame["t"].astype("int64"),
            f"close_{venue}": frame["close"].astype("float64"),
            f"volume_{venue}": frame["volume"].astype("float64"),
        }
    )


def _joined(
    venues: tuple[str, str], labels: tuple[str, ...], frames: list[pd.DataFrame]
) -> CrossBars:
    frame = frames[0].merge(frames[1], on="open_time", how="inner").sort_values("open_time")
    if frame.empty:
        raise UserError(f"{labels[0]} and {labels[1]} share no minute: nothing to compare")
    return CrossBars(
        venues=venues, labels=(labels[0], labels[1]), frame=frame.reset_index(drop=True)
    )
