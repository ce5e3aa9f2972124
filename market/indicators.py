"""Technical indicators over a candle frame, computed with `ta`, causal and aligned row-for-row."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
)
from ta.momentum import RSIIndicator
from ta.trend import MACD, EMAIndicator, SMAIndicator
from ta.volatility import BollingerBands
from ta.volume import VolumeWeightedAveragePrice

_REQUIRED = ("high", "low", "close", "volume")


class IndicatorConfig(BaseModel):
    """Periods in bars; column names carry them so differently configured runs never mix."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    sma_fast: PositiveInt = 20
    sma_slow: PositiveInt = 50
    ema_fast: PositiveInt = 12
    ema_slow: PositiveInt = 26
    rsi: PositiveInt = 14
    macd_fast: PositiveInt = 12
    macd_slow: PositiveInt = 26
    macd_signal: PositiveInt = 9
    bb_window: int = Field(default=20, ge=2)
    bb_std: PositiveFloat = 2.0
    atr: PositiveInt = 14
    vwap_window: PositiveInt = 20
    volume_z_window: int = Field(default=20, ge=2)

    @field_validator("sma_slow", "ema_slow", "macd_slow")
    @classmethod
    def _slow_above_fast(cls, slow: int, info: ValidationInfo) -> int:
        """Fast >= slow would make crossover flags meaningless (and equal SMA names collide)."""
        fast_name = info.field_name.replace("_slow", "_fast")
        fast = info.data.get(fast_name)
        if fast is not None and fast >= slow:
            raise ValueError(f"must be greater than {fast_name} ({fast})")
        return slow

    def columns(self) -> tuple[str, ...]:
        """The output columns of `compute_indicators`, in order, named after the periods."""
        return (
            f"sma_{self.sma_fast}",
            f"sma_{self.sma_slow}",
            f"ema_{self.ema_fast}",
            f"ema_{self.ema_slow}",
            f"rsi_{self.rsi}",
            "macd",
            "macd_signal",
            "macd_hist",
            "bb_upper",
            "bb_middle",
            "bb_lower",
            "bb_pct",
            f"atr_{self.atr}",
            "vwap",
            "volume_z",
        )


def compute_indicators(
    candles: pd.DataFrame, config: IndicatorConfig | None = None
) -> pd.DataFrame:
    """All indicators, NaN during warm-up; row i only ever uses rows <= i, so backtests stay honest.

    VWAP is rolling over `vwap_window` bars (ta's VolumeWeightedAveragePrice), not session-anchored.
    """
    cfg = config or IndicatorConfig()
    missing = [c for c in _REQUIRED if c not in candles.columns]
    if missing:
        raise ValueError(f"candles lack column(s) {', '.join(missing)}")
    # Work on a RangeIndex so any caller index (datetimes, a sliced view, duplicates) is safe.
    high, low, close, volume = (pd.Series(candles[c].to_numpy(dtype=np.float64)) for c in _REQUIRED)
    macd = MACD(
        close, window_slow=cfg.macd_slow, window_fast=cfg.macd_fast, window_sign=cfg.macd_signal
    )
    bands = BollingerBands(close, window=cfg.bb_window, window_dev=cfg.bb_std)
    vol_window = volume.rolling(cfg.volume_z_window, min_periods=cfg.volume_z_window)
    vol_std = vol_window.std(ddof=0)
    values = (
        SMAIndicator(close, cfg.sma_fast).sma_indicator(),
        SMAIndicator(close, cfg.sma_slow).sma_indicator(),
        EMAIndicator(close, cfg.ema_fast).ema_indicator(),
        EMAIndicator(close, cfg.ema_slow).ema_indicator(),
        RSIIndicator(close, cfg.rsi).rsi(),
        macd.macd(),
        macd.macd_signal(),
        macd.macd_diff(),
        bands.bollinger_hband(),
        bands.bollinger_mavg(),
        bands.bollinger_lband(),
        bands.bollinger_pband(),
        wilder_atr(high, low, close, cfg.atr),
        VolumeWeightedAveragePrice(
            high, low, close, volume, window=cfg.vwap_window
        ).volume_weighted_average_price(),
        (volume - vol_window.mean()) / vol_std.where(vol_std > 0),
    )
    return pd.DataFrame(
        {
            name: np.asarray(series, dtype=np.float64)
            for name, series in zip(cfg.columns(), values, strict=True)
        },
        index=candles.index,
    )


def wilder_atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, window: int) -> pd.Series:
    """ta's AverageTrueRange values, vectorised: ta loops per row in Python (~4 s a year of 1m
    bars), fills warm-up with 0.0 instead of NaN, and fails on fewer than `window` rows. Built
    in place in one array and one scratch: a million bars' ATR holds 3 columns at its peak."""
    high, low, close = (np.asarray(v, dtype=np.float64) for v in (high, low, close))
    seeded = high - low  # the first bar's true range: it has no previous close
    rest, previous = seeded[1:], close[:-1]
    gap = high[1:] - previous
    np.abs(gap, out=gap)
    np.fmax(rest, gap, out=rest)
    np.abs(np.subtract(low[1:], previous, out=gap), out=gap)
    np.fmax(rest, gap, out=rest)
    del gap
    if len(seeded) >= window:
        seeded[window - 1] = seeded[:window].mean()
        seeded[: window - 1] = np.nan
    else:
        seeded[:] = np.nan
    return pd.Series(seeded, copy=False).ewm(alpha=1 / window, adjust=False).mean()
