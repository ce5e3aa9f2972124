"""Store speed: bulk import of 1,000,000 1m candles into SQLite, and one-day range queries.

Run: python benchmarks/bench_store.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tiling import tiled_sample

from store import open_store
from store.candles import load_candles, upsert_candles


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    frame = tiled_sample("BTCUSDT", rows)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        started = time.perf_counter()
        added = upsert_candles(store, "BTCUSDT", "1m", frame)
        took = time.perf_counter() - started
        print(
            f"bulk import: {added:,} rows in {took:.2f} s = {added / took:,.0f} rows/s (SQLite, WAL)"
        )

        started = time.perf_counter()
        again = upsert_candles(store, "BTCUSDT", "1m", frame)
        took = time.perf_counter() - started
        print(f"re-import (all duplicates): {again} new rows in {took:.2f} s")

        first = int(frame["open_time"].iloc[len(frame) // 2])
        timings = []
        for i in range(20):
            start = first + i * 86_400_000 // 4
            t0 = time.perf_counter()
            day = load_candles(store, "BTCUSDT", "1m", start, start + 86_400_000 - 60_000)
            timings.append((time.perf_counter() - t0) * 1000)
        print(
            f"query one day ({len(day):,} bars): median {statistics.median(timings):.2f} ms, "
            f"max {max(timings):.2f} ms over {len(timings)} queries"
        )
        store.close()


if __name__ == "__main__":
    main()
