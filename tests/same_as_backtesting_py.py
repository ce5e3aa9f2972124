"""One comparison of our metrics with backtesting.py's, for every golden test."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from pytest import approx


def assert_same(ours: Mapping[str, Any], theirs: pd.Series, names: Iterable[str]) -> None:
    """Times and durations exactly (their times are naive UTC), numbers to 1e-9, NaN as NaN."""
    for name in names:
        expected, value = theirs[name], ours[name]
        if isinstance(expected, pd.Timestamp):
            assert value == expected.tz_localize("UTC"), name
        elif isinstance(expected, pd.Timedelta):
            assert value == expected, name
        else:
            assert value == approx(expected, rel=1e-9, nan_ok=True), name
