"""Validation finds problems planted in a copy of the real sample, with exact counts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from market.sample import load_sample, sample_end
from market.validation import validate_candles


def test_real_sample_is_clean() -> None:
    for symbol in ("BTCUSDT", "ETHUSDT"):
        report = validate_candles(load_sample(symbol), "1m")
        assert report.ok, report.problems()
        assert report.rows == 4320
        # the offline notice's cheap read of the last row agrees with the parsed file
        assert sample_end(symbol) == int(load_sample(symbol)["open_time"].iloc[-1])


def test_planted_gaps_and_duplicates_are_counted_exactly() -> None:
    bars = load_sample("BTCUSDT")
    # Three gaps: one bar, five bars, one bar missing; two bars duplicated.
    gapped = bars.drop(index=[100, *range(2000, 2005), 3000])
    planted = pd.concat([gapped, bars.iloc[[500, 1500]]]).sort_values("open_time", kind="stable")
    report = validate_candles(planted, "1m")
    assert report.gaps.count == 3
    assert report.missing_bars == 7
    assert report.duplicates.count == 2
    assert report.gaps.examples[0] == "2025-10-29 06:02"
    assert report.duplicates.examples == ["2025-10-29 12:42", "2025-10-30 05:22"]
    assert not report.ok


def test_nan_and_ohlc_violations_are_reported_not_fixed() -> None:
    bars = load_sample("ETHUSDT")
    bars.loc[10, "close"] = np.nan
    bars.loc[20, "high"] = bars.loc[20, "low"] - 1
    bars.loc[30, "volume"] = -5.0
    before = bars.copy()
    report = validate_candles(bars, "1m")
    assert report.nan.count == 1
    assert report.ohlc_violations.count == 2
    assert report.bad_row_count == 3
    pd.testing.assert_frame_equal(bars, before)


def test_time_going_backwards_is_reported() -> None:
    bars = load_sample("BTCUSDT")
    swapped = pd.concat([bars.iloc[:50], bars.iloc[[51, 50]], bars.iloc[52:]])
    report = validate_candles(swapped, "1m")
    assert report.non_increasing.count == 1
