"""Coarser bars from stored 1m bars: in SQL on TimescaleDB, through `resample_closed` elsewhere.

Both paths give the same bars to the last bit: the same UTC buckets, closed buckets only (a
bucket is kept when the window's first 1m bar opens at or before its start and the last 1m bar
closes at or after its end), `first`/`last` by open time, and volume summed in time order.
"""

from __future__ import annotations

import pandas as pd

from market.models import EXCHANGE, INTERVAL_MS
from market.resample import resample_closed
from store.candles import load_candles
from store.db import Store

_COLUMNS = ["open_time", "open", "high", "low", "close", "volume", "close_time"]


def _sql(store: Store) -> str:
    fn = store.backend.fn
    return f"""
        SELECT bucket, open, high, low, close, volume FROM (
            SELECT {fn("time_bucket")}(CAST(:step AS bigint), open_time) AS bucket,
                   {fn("first")}(open, open_time) AS open,
                   max(high) AS high,
                   min(low) AS low,
                   {fn("last")}(close, open_time) AS close,
                   sum(volume ORDER BY open_time) AS volume,
                   min(min(open_time)) OVER () AS first_open,
                   max(max(close_time)) OVER () AS last_close
            FROM candles
            WHERE exchange = :exchange AND symbol = :symbol AND interval = '1m'
              AND open_time >= :start AND open_time <= :end
            GROUP BY 1
        ) AS buckets
        WHERE bucket >= first_open AND bucket + :step - 1 <= last_close
        ORDER BY bucket
    """


def resample_stored(
    store: Store,
    symbol: str,
    interval: str,
    start_ms: int | None = None,
    end_ms: int | None = None,
    *,
    exchange: str = EXCHANGE,
    loaded: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """`interval` bars from the stored 1m bars with start_ms <= open_time <= end_ms; `loaded`
    is those 1m bars when the caller already holds them, so the Python path reads nothing."""
    if store.backend.timescaledb is None:
        if loaded is None:
            loaded = load_candles(store, symbol, "1m", start_ms, end_ms, exchange=exchange)
        return resample_closed(loaded[_COLUMNS], interval)
    from sqlalchemy import text

    step = INTERVAL_MS[interval]
    params = {
        "step": step,
        "exchange": exchange,
        "symbol": symbol,
        "start": start_ms if start_ms is not None else -(2**62),
        "end": end_ms if end_ms is not None else 2**62,
    }
    with store.engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(text(_sql(store)), params)]
    bars = pd.DataFrame.from_records(rows, columns=_COLUMNS[:-1])
    bars = bars.astype({"open_time": "int64"} | {c: "float64" for c in _COLUMNS[1:-1]})
    bars["close_time"] = bars["open_time"] + step - 1
    return bars
