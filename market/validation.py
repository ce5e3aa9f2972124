"""Candle validation: find gaps, duplicates, NaN, time disorder and OHLC violations; never repair."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from market.calendar import dated, xnys
from market.models import INTERVAL_MS, PRICE_COLUMNS, Candle, iso_ms

_EXAMPLES = 3


class Finding(BaseModel):
    """One kind of problem: how many rows it touches and the first few, as UTC times."""

    count: int = 0
    examples: list[str] = Field(default_factory=list)


class ValidationReport(BaseModel):
    rows: int
    gaps: Finding = Field(default_factory=Finding)
    missing_bars: int = 0
    duplicates: Finding = Field(default_factory=Finding)
    non_increasing: Finding = Field(default_factory=Finding)
    nan: Finding = Field(default_factory=Finding)
    ohlc_violations: Finding = Field(default_factory=Finding)

    @property
    def ok(self) -> bool:
        return not self.problems()

    @property
    def bad_row_count(self) -> int:
        """Rows that must not be stored: NaN values or impossible OHLC."""
        return self.nan.count + self.ohlc_violations.count

    def problems(self) -> list[str]:
        lines = []
        for name, label in (
            ("gaps", "gaps"),
            ("duplicates", "duplicate bars"),
            ("non_increasing", "non-increasing times"),
            ("nan", "rows with NaN"),
            ("ohlc_violations", "OHLC violations"),
        ):
            finding: Finding = getattr(self, name)
            if finding.count:
                extra = f" ({self.missing_bars} missing bars)" if name == "gaps" else ""
                lines.append(
                    f"{finding.count} {label}{extra}, first at {', '.join(finding.examples)}"
                )
        return lines


def in_sessions(
    report: ValidationReport, open_ms: np.ndarray, interval: str
) -> tuple[ValidationReport, str | None]:
    """A stock's report: its nights, weekends and holidays are not gaps, so its gaps are
    replaced by the regular-hours bars its sessions lack, said in the returned line."""
    missing = xnys().missing(open_ms, INTERVAL_MS[interval]) if len(open_ms) else 0
    report = report.model_copy(update={"gaps": Finding(), "missing_bars": 0})
    return report, f"{missing:,} bars missing in regular hours" if missing else None


def _finding(times: np.ndarray) -> Finding:
    """The rows' count, and the first few distinct times among them: a bar repeated three
    times is one time to show, not the same one thrice."""
    first = pd.unique(times)[:_EXAMPLES]
    return Finding(count=len(times), examples=[iso_ms(t) for t in first])


def _bad_rows(candles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(NaN in a price or the volume, impossible OHLC among the rest), or None when every row
    is a possible bar: the usual case is one pass, as NaN fails every comparison (and low <=
    high follows from low <= min(open, close) <= max(open, close) <= high). An infinite value
    is impossible: a finite high bounds the open and close, which bound a positive low."""
    open_, high, low, close, volume = (
        candles[col].to_numpy(dtype=np.float64) for col in (*PRICE_COLUMNS, "volume")
    )
    bound = np.maximum(open_, close)
    good = high >= bound
    good &= high < np.inf
    np.minimum(open_, close, out=bound)
    good &= low <= bound
    good &= low > 0
    good &= volume >= 0
    good &= volume < np.inf
    if good.all():
        return None
    nan = np.isnan(open_) | np.isnan(high) | np.isnan(low) | np.isnan(close) | np.isnan(volume)
    return nan, ~good & ~nan


def row_problem(row: pd.Series | Mapping[str, float]) -> str:
    """Why one row that `check_candles` flags cannot be a bar, naming the column."""
    for column in (*PRICE_COLUMNS, "volume"):
        if pd.isna(row[column]):
            return f"column {column} is not a number"
        if np.isinf(row[column]):
            return f"column {column} is infinite"
    o, h, low, c = (row[col] for col in PRICE_COLUMNS)
    if low <= 0:
        return f"column low is {low:g}, not above 0"
    if row["volume"] < 0:
        return f"column volume is {row['volume']:g}, below 0"
    if h < max(o, c) or low > h:
        return f"column high {h:g} is below the bar's open, close or low"
    return f"column low {low:g} is above the bar's open or close"


def bar_problem(bar: Candle) -> str | None:
    """Why one bar from a feed cannot be a real one, by the rules that keep such rows out of the
    store (a price of 0 would fill a stop at 0), or None when it can be: `_bad_rows`' test on
    one bar's floats, as a feed checks every bar it delivers (a one-row DataFrame cost ~1 ms)."""
    o, h, low, c, volume = values = (bar.open, bar.high, bar.low, bar.close, bar.volume)
    possible = max(o, c) <= h < math.inf and 0 < low <= min(o, c) and 0 <= volume < math.inf
    if possible and not any(map(math.isnan, values)):
        return None
    return row_problem(dict(zip((*PRICE_COLUMNS, "volume"), values, strict=True)))


def validate_candles(candles: pd.DataFrame, interval: str) -> ValidationReport:
    """Report every problem with counts and first examples; the frame is not modified."""
    return check_candles(candles, interval)[0]


def check_candles(
    candles: pd.DataFrame, interval: str
) -> tuple[ValidationReport, np.ndarray | None]:
    """The report and the rows that must not be stored (NaN prices/volume or impossible OHLC),
    None when there are none, from one look at the columns."""
    report = ValidationReport(rows=len(candles))
    if candles.empty:
        return report, None
    step = INTERVAL_MS[interval]
    # a store written before daily bars were dated (market.calendar.dated) may hold one
    # session twice, at midnight UTC and at New York's: the same date is a duplicate
    times = dated(candles["open_time"].to_numpy(dtype=np.int64), step)
    diffs = np.diff(times)
    odd = np.flatnonzero(diffs != step)  # bars not one step after the last: few or none
    odd_diffs = diffs[odd]
    report.duplicates = _finding(times[odd[odd_diffs == 0] + 1])
    report.non_increasing = _finding(times[odd[odd_diffs < 0] + 1])
    gap_at = odd[odd_diffs > step]
    report.gaps = _finding(times[gap_at] + step)
    report.missing_bars = int(((diffs[gap_at] // step) - 1).sum())
    bad = _bad_rows(candles)
    if bad is None:
        return report, None
    nan, impossible = bad
    report.nan = _finding(times[nan])
    report.ohlc_violations = _finding(times[impossible])
    return report, nan | impossible
