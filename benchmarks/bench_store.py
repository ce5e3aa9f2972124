"""Store speed on SQLite, plain PostgreSQL and PostgreSQL + TimescaleDB: bulk import of 1m
candles for ten symbols, a one-day range query for one symbol among the ten, and 1h
resampling (one month of one symbol, then every bar) in SQL on TimescaleDB and through the
Python path (read the 1m bars, `resample_closed`) everywhere.

Run: python benchmarks/bench_store.py [--rows 1000000]
       [--postgres postgresql://…] [--timescaledb postgresql://…]
Each PostgreSQL URL gets a throwaway schema, dropped afterwards; a backend without a URL is
skipped, and the TimescaleDB one must have the extension (it is opened with `require`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from flags import count
from sqlalchemy import create_engine, text
from tiling import tiled_sample

from market.resample import resample_closed
from store import Store, open_store
from store.candles import load_candles, upsert_candles
from store.resample import resample_stored

SYMBOLS = [f"SYM{i}USDT" for i in range(10)]
OHLCV = ["open_time", "open", "high", "low", "close", "volume", "close_time"]
DAY_MS = 86_400_000


@contextmanager
def _schema(url: str) -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _median_ms(work: Callable[[], object], runs: int) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def _python_path(store: Store, symbol: str, start: int | None, end: int | None):
    return resample_closed(load_candles(store, symbol, "1m", start, end)[OHLCV], "1h")


def measure(store: Store, rows: int) -> dict[str, str]:
    per_symbol = rows // len(SYMBOLS)
    frame = tiled_sample("BTCUSDT", per_symbol)
    started = time.perf_counter()
    added = sum(upsert_candles(store, symbol, "1m", frame) for symbol in SYMBOLS)
    insert_s = time.perf_counter() - started
    started = time.perf_counter()
    upsert_candles(store, "SYM0USDT", "1m", frame)
    again_s = time.perf_counter() - started
    middle = int(frame["open_time"].iloc[per_symbol // 2])
    day = _median_ms(lambda: load_candles(store, "SYM3USDT", "1m", middle, middle + DAY_MS), 20)
    month = (middle - 15 * DAY_MS, middle + 15 * DAY_MS)
    figures = {
        "backend": store.backend.label,
        "bulk insert": f"{added / insert_s:,.0f} rows/s ({added:,} in {insert_s:.1f} s)",
        "re-import 1 symbol (all duplicates)": f"{again_s:.2f} s",
        "1-day query (1 of 10)": f"{day:.1f} ms",
        "1-month 1h resample": f"{_median_ms(lambda: resample_stored(store, 'SYM3USDT', '1h', *month), 5):.1f} ms",
        "1-month 1h, Python path": f"{_median_ms(lambda: _python_path(store, 'SYM3USDT', *month), 5):.1f} ms",
    }  # fmt: skip
    started = time.perf_counter()
    for symbol in SYMBOLS:
        resample_stored(store, symbol, "1h")
    figures[f"all {added:,} bars to 1h"] = f"{time.perf_counter() - started:.2f} s"
    started = time.perf_counter()
    for symbol in SYMBOLS:
        _python_path(store, symbol, None, None)
    figures[f"all {added:,} bars, Python path"] = f"{time.perf_counter() - started:.2f} s"
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=count, default=1_000_000, help="1m bars over ten symbols")
    parser.add_argument("--postgres", help="plain PostgreSQL URL (TimescaleDB off)")
    parser.add_argument("--timescaledb", help="PostgreSQL URL with the TimescaleDB extension")
    args = parser.parse_args()
    results: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        results["SQLite (WAL)"] = measure(store, args.rows)
        store.close()
    for name, url, mode in (
        ("PostgreSQL", args.postgres, "off"),
        ("TimescaleDB", args.timescaledb, "require"),
    ):
        if not url:
            print(f"{name}: skipped (no URL given)")
            continue
        with _schema(url) as scoped:
            store = open_store(scoped, mode)
            results[name] = measure(store, args.rows)
            store.close()
    rows = list(next(iter(results.values())))
    width = max(map(len, rows))
    print(f"{'':{width}}  " + "  ".join(f"{name:>48}" for name in results))
    for row in rows:
        print(f"{row:{width}}  " + "  ".join(f"{r[row]:>48}" for r in results.values()))


if __name__ == "__main__":
    main()
