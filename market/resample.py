"""Coarser bars from stored 1m bars, closed buckets only: a bucket that the data enters late
or leaves early would show an open or a close that never was, so it is dropped."""

from __future__ import annotations

import numpy as np
import pandas as pd

from market.models import INTERVAL_MS

RESAMPLED = ("5m", "15m", "1h", "4h", "1d")
_AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


def resample_closed(minutes: pd.DataFrame, interval: str) -> pd.DataFrame:
    """1m bars (open_time, close_time, OHLCV) to `interval` bars in the same columns."""
    step = INTERVAL_MS[interval]
    if minutes.empty:
        return minutes
    opens = minutes["open_time"].to_numpy(dtype=np.int64)
    bucket = opens // step * step
    frame = minutes.assign(bucket=bucket)
    out = frame.groupby("bucket", sort=True).agg(_AGG)
    first = int(opens[0])
    last_close = int(minutes["close_time"].iloc[-1])
    keep = (out.index >= first) & (out.index + step - 1 <= last_close)
    out = out[keep]
    bars = out.reset_index(names="open_time")
    bars["close_time"] = bars["open_time"] + step - 1
    return bars[["open_time", *_AGG, "close_time"]].reset_index(drop=True)
