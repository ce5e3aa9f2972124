"""Coarser bars from stored 1m bars, closed buckets only: a bucket that the data enters late
or leaves early would show an open or a close that never was, so it is dropped.

Volume is summed bar by bar in time order, as the store's SQL resampling does
(`sum(volume ORDER BY open_time)`), so both give the same bars to the last bit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from market.models import INTERVAL_MS

RESAMPLED = ("5m", "15m", "1h", "4h", "1d")
_AGG = {"open": "first", "high": "max", "low": "min", "close": "last"}


def resample_closed(minutes: pd.DataFrame, interval: str) -> pd.DataFrame:
    """1m bars (open_time, close_time, OHLCV) to `interval` bars in the same columns."""
    step = INTERVAL_MS[interval]
    if minutes.empty:
        return minutes
    opens = minutes["open_time"].to_numpy(dtype=np.int64)
    bucket = opens // step * step
    frame = minutes.assign(bucket=bucket)
    out = frame.groupby("bucket", sort=True).agg(_AGG)
    out["volume"] = _sum_in_order(bucket, minutes["volume"].to_numpy(dtype=np.float64))
    first = int(opens[0])
    last_close = int(minutes["close_time"].iloc[-1])
    keep = (out.index >= first) & (out.index + step - 1 <= last_close)
    out = out[keep]
    bars = out.reset_index(names="open_time")
    bars["close_time"] = bars["open_time"] + step - 1
    return bars[["open_time", *_AGG, "volume", "close_time"]].reset_index(drop=True)


def _sum_in_order(bucket: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-bucket sums added one value at a time in row order (`np.add.at` is unbuffered and
    goes in index order), unlike pandas' compensated sum, which can differ in the last bit."""
    _, group = np.unique(bucket, return_inverse=True)
    sums = np.zeros(int(group.max()) + 1, dtype=np.float64)
    np.add.at(sums, group, values)
    return sums
