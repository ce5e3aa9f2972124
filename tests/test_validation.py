"""Validation finds problems planted in a copy of the real sample, with exact counts."""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.csv_import import CsvImportError, read_candle_csv
from market.models import Candle, iso_ms
from market.sample import load_sample, sample_end
from market.source import load_csv_candles
from market.validation import (
    Finding,
    bar_problem,
    check_candles,
    row_problem,
    validate_candles,
)


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


def test_a_bar_repeated_is_shown_once_among_the_examples() -> None:
    """Three copies of one bar and one of another: the line names each time once."""
    bars = load_sample("BTCUSDT")
    planted = pd.concat([bars, bars.iloc[[500, 500, 500, 1500]]]).sort_values(
        "open_time", kind="stable"
    )
    report = validate_candles(planted, "1m")
    assert report.duplicates.count == 4
    assert report.problems() == ["4 duplicate bars, first at 2025-10-29 12:42, 2025-10-30 05:22"]


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


@pytest.mark.slow
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    repeats=st.lists(st.integers(1, 3), min_size=1, max_size=30),
    spoiled=st.sets(st.integers(0, 89), max_size=10),
)
def test_a_user_csv_keeps_its_good_rows_once_each_in_time_order(
    tmp_path: Path, repeats: list[int], spoiled: set[int]
) -> None:
    """A CSV's bad rows are left out and each duplicated time is kept once, at its first good
    row, whatever the mix; the rest is the file's own rows, unchanged."""
    bars = load_sample("BTCUSDT").iloc[: len(repeats)]
    rows = bars.loc[bars.index.repeat(repeats)].reset_index(drop=True)
    rows["volume"] = np.arange(len(rows), dtype=float)  # tells the copies apart
    rows.loc[[i for i in spoiled if i < len(rows)], "close"] = np.nan
    path = tmp_path / "rows.csv"
    rows.rename(columns={"trades": "count"}).to_csv(path, index=False)
    read, _ = read_candle_csv(path, "1m")
    expected = read[read["close"].notna()].drop_duplicates("open_time").reset_index(drop=True)
    if expected.empty:
        with pytest.raises(CsvImportError, match="none of its"):
            load_csv_candles(path, "1m", lambda _line: None)
        return
    loaded = load_csv_candles(path, "1m", lambda _line: None).reset_index(drop=True)
    pd.testing.assert_frame_equal(loaded, expected, check_exact=True)


_VALUES = st.sampled_from([math.nan, -1.0, 0.0, 1.0, 2.0, 3.0, math.inf])
_STEPS = st.sampled_from([60_000, 60_000, 60_000, 0, -60_000, 120_000, 300_000])


def _found(times: list[int]) -> Finding:
    return Finding(count=len(times), examples=[iso_ms(t) for t in list(dict.fromkeys(times))[:3]])


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(_STEPS, _VALUES, _VALUES, _VALUES, _VALUES, _VALUES), max_size=25))
def test_the_report_is_what_a_look_at_each_row_and_its_neighbour_finds(
    rows: list[tuple[int, float, float, float, float, float]],
) -> None:
    """Every NaN row, impossible bar, duplicate, backward step and gap is counted, first
    examples and all, as a plain row-by-row reading of the rules finds them."""
    times = list(itertools.accumulate((step for step, *_ in rows), initial=1_761_711_720_000))[1:]
    bars = [values for _, *values in rows]
    frame = pd.DataFrame(bars, columns=["open", "high", "low", "close", "volume"])
    frame.insert(0, "open_time", np.array(times, dtype=np.int64))
    report = validate_candles(frame, "1m")
    nan, impossible = [], []
    for t, (o, h, low, c, v) in zip(times, bars, strict=True):
        if any(map(math.isnan, (o, h, low, c, v))):
            nan.append(t)
        elif (
            any(map(math.isinf, (o, h, low, c, v)))
            or h < max(o, c)
            or low > min(o, c)
            or low > h
            or low <= 0
            or v < 0
        ):
            impossible.append(t)
    pairs = list(itertools.pairwise(times))
    assert report.nan == _found(nan)
    assert report.ohlc_violations == _found(impossible)
    assert report.duplicates == _found([b for a, b in pairs if b == a])
    assert report.non_increasing == _found([b for a, b in pairs if b < a])
    assert report.gaps == _found([a + 60_000 for a, b in pairs if b - a > 60_000])
    assert report.missing_bars == sum((b - a) // 60_000 - 1 for a, b in pairs if b - a > 60_000)
    assert report.rows == len(rows)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.sampled_from([0, 60_000, 180_000, 300_000]), max_size=12))
def test_a_file_is_refused_exactly_when_its_median_step_is_not_the_interval(
    tmp_path_factory: pytest.TempPathFactory, steps: list[int]
) -> None:
    """The typical step is the median of the positive steps between rows, whatever their mix."""
    times = list(itertools.accumulate(steps, initial=1_761_711_720_000))
    path = tmp_path_factory.mktemp("steps") / "bars.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n" + "".join(f"{t},1,1,1,1,1\n" for t in times)
    )
    positive = sorted(step for step in steps if step > 0)
    typical = int(statistics.median(positive)) if positive else 60_000
    if typical == 60_000:
        assert len(read_candle_csv(path, "1m")[0]) == len(times)
    else:
        with pytest.raises(CsvImportError, match=r"bars are \S+ apart but --interval is 1m"):
            read_candle_csv(path, "1m")


FEED_VALUES = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 2.0, math.nan, math.inf, -math.inf, -1.0, 5e-324]),
    st.floats(allow_nan=True, allow_infinity=True),
)


@st.composite
def feed_bars(draw: st.DrawFn) -> list[float]:
    """Any five floats, or a real bar with one field spoiled: the edge a check misses."""
    if draw(st.booleans()):
        return draw(st.lists(FEED_VALUES, min_size=5, max_size=5))
    values = [1.0, 2.0, 0.5, 1.5, 3.0]
    values[draw(st.integers(0, 4))] = draw(FEED_VALUES)
    return values


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(feed_bars())
def test_a_feed_refuses_a_bar_exactly_when_the_store_would_refuse_its_row(values) -> None:
    """A streamed bar is checked alone (market.binance_ws): it is refused, with the same reason,
    exactly when `check_candles` flags its row, so no bar a file import would keep out of the
    store reaches a paper fill, and none it would keep is refused."""
    o, h, low, c, volume = values
    bar = Candle.model_construct(
        symbol="BTCUSDT", interval="1m", open_time=0, close_time=59_999,
        open=o, high=h, low=low, close=c, volume=volume,
    )  # fmt: skip
    frame = pd.DataFrame([{"open_time": 0, "open": o, "high": h, "low": low, "close": c,
                           "volume": volume}])  # fmt: skip
    _, bad = check_candles(frame, "1m")
    problem = bar_problem(bar)
    assert (problem is not None) == (bad is not None and bool(bad[0]))
    if problem is not None:
        assert problem == row_problem(frame.iloc[0])
