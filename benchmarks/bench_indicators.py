"""Indicator and snapshot speed on real BTCUSDT 1m bars: one day, and one year tiled forward.

Run: python benchmarks/bench_indicators.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from tiling import tiled_sample

from market.indicators import compute_indicators
from market.sample import load_sample
from market.snapshot import build_snapshot

DAY_BARS = 1_440
YEAR_BARS = 525_600


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    run()  # warm caches and imports outside the measurement
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        timings.append((time.perf_counter() - start) * 1_000)
    return statistics.median(timings)


def main() -> None:
    sample = load_sample("BTCUSDT")
    day = sample.iloc[-DAY_BARS:]
    year = tiled_sample("BTCUSDT", YEAR_BARS)
    assert year["open_time"].is_monotonic_increasing and year["open_time"].is_unique

    repeats = 50
    ms = _median_ms(lambda: compute_indicators(day), repeats)
    print(f"indicators, 1 day ({len(day):,} 1m bars): {ms:.1f} ms (median of {repeats})")
    repeats = 5
    ms = _median_ms(lambda: compute_indicators(year), repeats)
    print(f"indicators, 1 year ({len(year):,} 1m bars): {ms:.1f} ms (median of {repeats})")

    indicators = compute_indicators(sample)
    repeats = 50
    ms = _median_ms(lambda: build_snapshot("BTCUSDT", "1m", sample), repeats)
    print(
        f"snapshot, {len(sample):,} bars incl. computing indicators: {ms:.1f} ms "
        f"(median of {repeats})"
    )
    ms = _median_ms(lambda: build_snapshot("BTCUSDT", "1m", sample, indicators), repeats)
    print(f"snapshot, indicators precomputed: {ms:.2f} ms (median of {repeats})")
    size = len(build_snapshot("BTCUSDT", "1m", sample, indicators).model_dump_json())
    print(f"snapshot size: {size:,} chars ≈ {size // 4:,} tokens (chars/4)")


if __name__ == "__main__":
    main()
