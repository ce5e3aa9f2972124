"""A point-in-time market summary small enough to put in every LLM prompt (~400 tokens)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from market.indicators import IndicatorConfig, compute_indicators
from market.models import interval_ms

_HOUR_MS = 3_600_000
RETURN_HORIZONS_MS: dict[str, int] = {
    "15m": 15 * 60_000,
    "1h": _HOUR_MS,
    "4h": 4 * _HOUR_MS,
    "24h": 24 * _HOUR_MS,
}
_VOL_LOOKBACK_MS = 24 * _HOUR_MS
_YEAR_MS = 365 * 24 * _HOUR_MS
RSI_OVERBOUGHT = 70.0
# Left out of the snapshot to save prompt tokens: the Bollinger middle is midway between the bands.
REDUNDANT_IN_SNAPSHOT = frozenset({"bb_middle"})
RSI_OVERSOLD = 30.0
_UNITLESS_DECIMALS = {"bb_pct": 3, "volume_z": 2}


class TrendFlags(BaseModel):
    """Pre-digested comparisons, so the model does not have to do arithmetic on rounded values."""

    model_config = ConfigDict(frozen=True)

    price_above_sma_slow: bool | None
    sma_fast_above_slow: bool | None
    macd_above_signal: bool | None
    rsi_overbought: bool | None
    rsi_oversold: bool | None


class MarketSnapshot(BaseModel):
    """What the LLM sees of the market; None means not enough history, never a guessed value."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    interval: str
    as_of: str
    last_price: float
    returns_pct: dict[str, float | None]
    realized_vol_pct: float | None
    indicators: dict[str, float | None]
    trend: TrendFlags


def build_snapshot(
    symbol: str,
    interval: str,
    candles: pd.DataFrame,
    indicators: pd.DataFrame | None = None,
    config: IndicatorConfig | None = None,
) -> MarketSnapshot:
    """Summarise exactly the rows given (a point-in-time view), so a backtest cannot peek ahead.

    Pass `indicators` already computed on these rows to skip recomputing them.
    """
    if len(candles) < 2:
        raise ValueError(f"a snapshot needs at least 2 closed bars, got {len(candles)}")
    step_ms = interval_ms(interval)
    cfg = config or IndicatorConfig()
    if indicators is None:
        indicators = compute_indicators(candles, cfg)
    elif not indicators.index.equals(candles.index):
        raise ValueError("indicators must be aligned row-for-row with candles (same index)")
    missing = [c for c in cfg.columns() if c not in indicators.columns]
    if missing:
        raise ValueError(
            f"indicators lack {', '.join(missing)}: computed with a different IndicatorConfig?"
        )

    close = candles["close"].to_numpy(dtype=np.float64)
    close_time = candles["close_time"].to_numpy(dtype=np.int64)
    last_price, as_of_ms = float(close[-1]), int(close_time[-1])
    latest = indicators.iloc[-1]

    returns: dict[str, float | None] = {}
    for label, horizon in RETURN_HORIZONS_MS.items():
        base = _index_as_of(close_time, as_of_ms - horizon)
        ok = horizon >= step_ms and base is not None
        returns[label] = round((last_price / close[base] - 1) * 100, 3) if ok else None

    price_decimals = _price_decimals(last_price)
    values = {
        name: _rounded(name, float(latest[name]), price_decimals)
        for name in cfg.columns()
        if name not in REDUNDANT_IN_SNAPSHOT
    }
    sma_fast, sma_slow = latest[f"sma_{cfg.sma_fast}"], latest[f"sma_{cfg.sma_slow}"]
    rsi = latest[f"rsi_{cfg.rsi}"]
    return MarketSnapshot(
        symbol=symbol,
        interval=interval,
        as_of=pd.Timestamp(as_of_ms, unit="ms", tz="UTC")
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        last_price=last_price,
        returns_pct=returns,
        realized_vol_pct=_realized_vol_pct(close, close_time, step_ms),
        indicators=values,
        trend=TrendFlags(
            price_above_sma_slow=_gt(last_price, sma_slow),
            sma_fast_above_slow=_gt(sma_fast, sma_slow),
            macd_above_signal=_gt(latest["macd"], latest["macd_signal"]),
            rsi_overbought=_gt(rsi, RSI_OVERBOUGHT),
            rsi_oversold=_gt(RSI_OVERSOLD, rsi),
        ),
    )


def _index_as_of(close_time: np.ndarray, at_ms: int) -> int | None:
    """The last bar closed by `at_ms`: the price as known then, even across a gap in the data."""
    i = int(np.searchsorted(close_time, at_ms, side="right")) - 1
    return i if i >= 0 else None


def _realized_vol_pct(close: np.ndarray, close_time: np.ndarray, step_ms: int) -> float | None:
    """Annualised (365-day) from per-bar log returns over the last 24h, zero-mean as is usual
    for realised volatility: at 1m the sample mean is noise."""
    base = _index_as_of(close_time, int(close_time[-1]) - _VOL_LOOKBACK_MS)
    log_returns = np.diff(np.log(close[base or 0 :]))
    if len(log_returns) == 0:
        return None
    annual = math.sqrt(float(np.mean(log_returns**2)) * _YEAR_MS / step_ms)
    return round(annual * 100, 2)


def _price_decimals(price: float) -> int:
    """About 7 significant digits of the price, so BTC and a sub-cent coin both stay readable."""
    if price <= 0 or not math.isfinite(price):
        return 2
    return max(0, 6 - math.floor(math.log10(price)))


def _rounded(name: str, value: float, price_decimals: int) -> float | None:
    if not math.isfinite(value):
        return None
    if name.startswith("rsi_"):
        return round(value, 1)
    return round(value, _UNITLESS_DECIMALS.get(name, price_decimals))


def _gt(a: float, b: float) -> bool | None:
    return bool(a > b) if math.isfinite(a) and math.isfinite(b) else None
