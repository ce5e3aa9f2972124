"""The New York Stock Exchange's sessions (XNYS from exchange_calendars): regular hours with
holidays and early closes, the pre- and post-market around them, and which bars fall where.
Times are epoch ms UTC in and out; the calendar itself works in exchange time."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
EXCHANGE = "XNYS"
NEW_YORK = ZoneInfo("America/New_York")
PRE_MARKET = time(4, 0)
POST_MARKET_END = time(20, 0)
FIRST_YEAR, LAST_YEAR = 1990, 2035  # the calendar's span; exchange_calendars defaults to 20 years


def dated(open_ms: np.ndarray, interval_ms: int) -> np.ndarray:
    """Daily and longer bars' open times as midnight UTC of their dates, the one time the store
    keys such a bar (and its splits and dividends) by. New York's midnight, open and close all
    fall on the session's UTC date, so a yfinance stamp (00:00-04:00), a date-only file and
    Alpaca's bar of one session are one bar, not two; shorter bars keep their times."""
    return open_ms - open_ms % DAY_MS if interval_ms >= DAY_MS else open_ms


@dataclass(frozen=True)
class Sessions:
    """Every XNYS session in the calendar's span: its date and its regular and extended hours."""

    labels: np.ndarray  # session date, epoch ms of its UTC midnight, ascending
    opens: np.ndarray
    closes: np.ndarray
    early_closes: frozenset[int]  # labels of sessions that close early
    extended_opens: np.ndarray  # 04:00 New York
    extended_closes: np.ndarray  # 20:00 New York

    def regular(self, open_ms: np.ndarray, interval_ms: int) -> np.ndarray:
        """Bars that start in regular hours; a daily bar is a session by its date. A bar may
        run past the close: yfinance's hourly bars start at 09:30, ..., 15:30, and the last
        is the session's, not the post-market's."""
        open_ms = np.asarray(open_ms, dtype=np.int64)
        if interval_ms >= DAY_MS:
            return self.is_session_day(open_ms - open_ms % DAY_MS)
        return self._within(open_ms, interval_ms, self.opens, self.closes)

    def is_session_day(self, days: np.ndarray) -> np.ndarray:
        """Per UTC midnight: is it a session's date. A binary search in the sorted labels: a
        run asks this bar by bar, where `np.isin` re-sorted all ~11,000 labels each time
        (1.2 ms a bar, 2.6 s of a ten-year daily backtest)."""
        at = np.minimum(np.searchsorted(self.labels, days), len(self.labels) - 1)
        return self.labels[at] == days

    def extended(self, open_ms: np.ndarray, interval_ms: int) -> np.ndarray:
        """Bars that start in the pre-market, regular hours or the post-market of a session day."""
        open_ms = np.asarray(open_ms, dtype=np.int64)
        if interval_ms >= DAY_MS:
            return self.regular(open_ms, interval_ms)
        return self._within(open_ms, interval_ms, self.extended_opens, self.extended_closes)

    @staticmethod
    def _within(
        open_ms: np.ndarray, interval_ms: int, starts: np.ndarray, ends: np.ndarray
    ) -> np.ndarray:
        at = np.searchsorted(starts, open_ms, side="right") - 1
        known = at >= 0
        at = np.clip(at, 0, len(starts) - 1)
        return known & (open_ms >= starts[at]) & (open_ms < ends[at])

    def missing(self, open_ms: np.ndarray, interval_ms: int) -> int:
        """Regular-hours bars that the sessions between the first and the last bar should have
        and the data lacks: a stock's nights, weekends and holidays are not gaps. The bars are
        on the data's own grid (its regular opens' usual offset within the interval: 09:30,
        10:30, ... for yfinance's hourly bars, 10:00, 11:00, ... for Alpaca's)."""
        open_ms = dated(np.asarray(open_ms, dtype=np.int64), interval_ms)
        regular = open_ms[self.regular(open_ms, interval_ms)]
        phases, seen = np.unique(
            (regular if len(regular) else open_ms) % interval_ms, return_counts=True
        )
        grid = int(phases[seen.argmax()])
        expected = self.expected(int(open_ms.min()), int(open_ms.max()), interval_ms, grid)
        return int((~np.isin(expected, open_ms)).sum())

    def expected(self, start_ms: int, end_ms: int, interval_ms: int, grid: int) -> np.ndarray:
        """The bar opens in [start_ms, end_ms] a stock's data should hold: each session's date
        for daily bars, else every open on the grid (opens ≡ `grid` modulo the interval) that
        starts in a session's regular hours."""
        if interval_ms >= DAY_MS:
            return self.labels[(self.labels >= start_ms) & (self.labels <= end_ms)]
        inside = (self.closes > start_ms) & (self.opens <= end_ms)
        opens = self.opens[inside] + (grid - self.opens[inside]) % interval_ms
        counts = np.maximum(-((opens - self.closes[inside]) // interval_ms), 0)
        offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        expected = np.repeat(opens, counts) + interval_ms * offsets
        return expected[(expected >= start_ms) & (expected <= end_ms)]

    def days_covered(self, open_ms: np.ndarray, interval_ms: int) -> float:
        """The real days that these bars' sessions stand for: each session counts from its open
        to the next one (a Friday's runs to Monday's), in the share of its regular-hours bars
        that are there (an hourly session has six: 09:30 to 10:00 is in no whole bar). A week of every session is 7 days, the same pace as a week of crypto."""
        open_ms = np.asarray(open_ms, dtype=np.int64)
        if interval_ms >= DAY_MS:
            days = open_ms - open_ms % DAY_MS
            at = np.unique(np.searchsorted(self.labels, days[self.is_session_day(days)]))
            share = np.ones(len(at))
        else:
            regular = open_ms[self.regular(open_ms, interval_ms)]
            at, bars = np.unique(
                np.searchsorted(self.opens, regular, "right") - 1, return_counts=True
            )
            fit = self.closes[at] // interval_ms - -(-self.opens[at] // interval_ms)
            share = np.minimum(bars / np.maximum(fit, 1), 1.0)
        span = self.opens[np.minimum(at + 1, len(self.opens) - 1)] - self.opens[at]
        return float((share * span).sum() / DAY_MS)

    @staticmethod
    def bars_per_session(open_ms: np.ndarray) -> float:
        """Bars per New York trading day in the data (pre- and post-market included): an
        intraday stock year is 252 of these days, not 365 × 24 hours."""
        days = pd.to_datetime(np.asarray(open_ms), unit="ms", utc=True).tz_convert(NEW_YORK)
        return len(days) / max(days.normalize().nunique(), 1)

    def is_open(self, now_ms: int) -> bool:
        at = int(np.searchsorted(self.opens, now_ms, side="right")) - 1
        return at >= 0 and now_ms < int(self.closes[at])

    def next_open(self, now_ms: int) -> int:
        """The first regular open after `now_ms`."""
        return int(self.opens[np.searchsorted(self.opens, now_ms, side="right")])

    def state(self, now_ms: int) -> str:
        """One line for a prompt or a status: open or closed, and when it next opens or closes."""
        if self.is_open(now_ms):
            at = int(np.searchsorted(self.opens, now_ms, side="right")) - 1
            early = " (early close)" if int(self.labels[at]) in self.early_closes else ""
            return f"US market open; closes {_local(int(self.closes[at]))}{early}"
        return f"US market closed; next open {_local(self.next_open(now_ms))}"


def _local(ms: int) -> str:
    return (
        pd.Timestamp(ms, unit="ms", tz="UTC").tz_convert(NEW_YORK).strftime("%a %Y-%m-%d %H:%M %Z")
    )


def _ms(values: pd.DatetimeIndex | pd.Series) -> np.ndarray:
    if isinstance(values, pd.Series):
        values = values.array
    return pd.DatetimeIndex(values).as_unit("ms").asi8.astype(np.int64)


def _at_local(labels: pd.DatetimeIndex, when: time) -> np.ndarray:
    return np.array(
        [int(datetime.combine(d.date(), when, NEW_YORK).timestamp() * 1000) for d in labels],
        dtype=np.int64,
    )


@lru_cache(maxsize=1)
def xnys() -> Sessions:
    """Built once per machine: exchange_calendars (0.4 s to import) computes the whole span
    (0.2 s more), which is kept in the user's cache and read back in a millisecond by every
    later process; every question after is a binary search."""
    cached = _cache_file()
    if cached is not None:
        try:
            with np.load(cached, allow_pickle=False) as kept:
                return _from_arrays(kept)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # not made yet, or damaged: built afresh and kept again
    sessions = _built()
    if cached is not None:
        _keep(cached, sessions)
    return sessions


_FIELDS = ("labels", "opens", "closes", "early_closes", "extended_opens", "extended_closes")


def _from_arrays(kept: Mapping[str, np.ndarray]) -> Sessions:
    arrays = {name: np.asarray(kept[name], dtype=np.int64) for name in _FIELDS}
    return Sessions(**{**arrays, "early_closes": frozenset(arrays["early_closes"].tolist())})


def _cache_file() -> Path | None:
    """Named by the calendar's span and hours and by the installed exchange_calendars (its
    XNYS rules file's path, size and time): an upgrade that adds a holiday is a new file."""
    spec = importlib.util.find_spec("exchange_calendars")
    if spec is None or not spec.submodule_search_locations:
        return None
    rules = Path(next(iter(spec.submodule_search_locations))) / "exchange_calendar_xnys.py"
    try:
        made = rules.stat()
    except OSError:
        return None
    key = repr((str(rules), made.st_size, made.st_mtime_ns, FIRST_YEAR, LAST_YEAR,
                PRE_MARKET, POST_MARKET_END, _FIELDS))  # fmt: skip
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "agent-trader" / f"{EXCHANGE.lower()}-sessions-{digest}.npz"


def _keep(path: Path, sessions: Sessions) -> None:
    """Written whole and renamed into place, so a process reading it at the same moment sees
    the old file or the new one; a cache it cannot write is only slower, never an error."""
    arrays = {name: getattr(sessions, name) for name in _FIELDS}
    arrays["early_closes"] = np.array(sorted(sessions.early_closes), dtype=np.int64)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as out:
            np.savez(out, **arrays)
        os.replace(out.name, path)
    except OSError:
        log.debug("the XNYS calendar could not be kept in %s", path.parent, exc_info=True)


def _built() -> Sessions:
    import exchange_calendars

    with warnings.catch_warnings():  # exchange_calendars reads Series.values (pandas 3 warns)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        calendar = exchange_calendars.get_calendar(
            EXCHANGE, start=f"{FIRST_YEAR}-01-01", end=f"{LAST_YEAR}-12-31"
        )
        schedule = calendar.schedule
        early = calendar.early_closes
    labels = pd.DatetimeIndex(schedule.index)
    return Sessions(
        labels=_ms(labels.tz_localize("UTC") if labels.tz is None else labels),
        opens=_ms(schedule["open"]),
        closes=_ms(schedule["close"]),
        early_closes=frozenset(_ms(pd.DatetimeIndex(early).tz_localize("UTC")).tolist()),
        extended_opens=_at_local(labels, PRE_MARKET),
        extended_closes=_at_local(labels, POST_MARKET_END),
    )
