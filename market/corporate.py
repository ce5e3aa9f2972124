"""Corporate actions as data: the splits and dividends of a stock on raw prices, keyed by the
ex-date's first bar, read from a Yahoo/yfinance CSV's `Stock Splits` and `Dividends` columns,
and the causally adjusted history indicators read (the account side is execution.corporate)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from execution.feed import SymbolBars


@dataclass(frozen=True, slots=True)
class Action:
    """What happens at one ex-date's open: `ratio` new shares per old (2.0 for a 2:1 split,
    0.1 for a 1:10 reverse split), `dividend` in cash per share held before that open."""

    ratio: float = 1.0
    dividend: float = 0.0


class CorporateActions:
    """Each symbol's actions keyed by the open time (epoch ms) of its ex-date's first bar."""

    def __init__(self, by_symbol: Mapping[str, Mapping[int, Action]]) -> None:
        self._by = {s: dict(a) for s, a in by_symbol.items() if a}
        self._times = np.unique(np.array([t for a in self._by.values() for t in a], np.int64))

    def __bool__(self) -> bool:
        return bool(self._by)

    def counts(self) -> dict[str, int]:
        """How many splits and dividends the run applies, for its report."""
        every = [a for actions in self._by.values() for a in actions.values()]
        return {
            "splits": sum(a.ratio != 1.0 for a in every),
            "dividends": sum(a.dividend != 0.0 for a in every),
        }

    def at(self, open_time: int) -> list[tuple[str, Action]]:
        return [(s, a[open_time]) for s, a in self._by.items() if open_time in a]

    def first_between(self, open_time: np.ndarray, start: int, stop: int) -> int | None:
        """The first bar in [start, stop] that carries an action (the engine must step it)."""
        if stop < start or not len(self._times):
            return None
        found = np.searchsorted(self._times, open_time[start])
        if found == len(self._times) or self._times[found] > open_time[stop]:
            return None
        return start + int(np.searchsorted(open_time[start : stop + 1], self._times[found]))

    def adjusted(self, symbol: str, open_time: np.ndarray, bars: SymbolBars) -> SymbolBars:
        """Prices from each ex-date on scaled back onto the scale of the first bar (volume the
        other way), using only actions at or before each bar: no later split leaks into an
        indicator, and a backtest and a paper replay see the same history."""
        actions = self._by.get(symbol)
        if not actions:
            return bars
        price = np.ones(len(open_time))
        shares = np.ones(len(open_time))
        for i in np.flatnonzero(np.isin(open_time, list(actions))).tolist():
            action = actions[int(open_time[i])]
            step = action.ratio
            if i and action.dividend:
                close = float(bars.close[i - 1])
                step *= close / (close - action.dividend * action.ratio)
            price[i] *= step
            shares[i] *= action.ratio
        price, shares = np.cumprod(price), np.cumprod(shares)
        return SymbolBars(
            bars.open * price,
            bars.high * price,
            bars.low * price,
            bars.close * price,
            bars.volume / shares,
        )

    def marks(
        self, symbol: str, open_time: np.ndarray, close: np.ndarray, tradable: np.ndarray
    ) -> np.ndarray:
        """What a position is valued at, at each close: the close of the last bar at or before
        it that could trade (a bar before the first such one: its own close, nothing is held
        yet), carried through the bars that cannot, so a pre-market print is no mark. An action
        between the two bars moves the carried price as it moves the position (less the
        dividend paid as cash per old share, then ÷ the ratio), so equity does not jump."""
        n = len(close)
        at = np.arange(n)
        source = np.maximum.accumulate(np.where(tradable, at, -1))
        source = np.where(source < 0, at, source)
        mark = close[source]
        actions = self._by.get(symbol)
        if actions:
            for i in np.flatnonzero(np.isin(open_time, list(actions))).tolist():
                action = actions[int(open_time[i])]
                carried = i + np.flatnonzero(source[i:] < i)  # up to the next tradable bar
                mark[carried] = (mark[carried] - action.dividend) / action.ratio
        return mark

    def held(self, symbol: str, open_time: np.ndarray, close: np.ndarray, first: int) -> np.ndarray:
        """What one share bought at bar `first`'s close is worth at each close: the shares its
        later splits made at that close, plus its later dividends as cash (not reinvested),
        as the engine pays a position. The closes up to `first` are the raw ones."""
        actions = self._by.get(symbol)
        if not actions:
            return close
        shares, cash = np.ones(len(close)), np.zeros(len(close))
        held, paid = 1.0, 0.0
        for i in np.flatnonzero(np.isin(open_time, list(actions))).tolist():
            if i <= first:
                continue
            action = actions[int(open_time[i])]
            paid += action.dividend * held  # on the shares held before the open, then split
            held *= action.ratio
            shares[i:], cash[i:] = held, paid
        return close * shares + cash


def read_actions(path: Path, interval: str) -> dict[int, Action]:
    """A Yahoo file's nonzero `Stock Splits` (new shares per old) and `Dividends` (per share)
    rows, keyed by their bar's open time; {} for a file without those columns."""
    import pandas as pd  # to read the CSV: the types load without it (agent-trade status)

    from market.csv_import import read_candle_csv

    open_time = read_candle_csv(path, interval, bars_only=True)[0]["open_time"].to_numpy()
    header = [c.strip().lower() for c in pd.read_csv(path, nrows=0).columns]
    wanted = [c for c in ("stock splits", "dividends") if c in header]
    if not wanted:
        return {}
    raw = pd.read_csv(path, usecols=lambda c: c.strip().lower() in wanted)
    raw.columns = [c.strip().lower() for c in raw.columns]
    split = pd.to_numeric(raw.get("stock splits", 0.0), errors="coerce")
    dividend = pd.to_numeric(raw.get("dividends", 0.0), errors="coerce")
    frame = pd.DataFrame({"split": split, "dividend": dividend}).fillna(0.0)
    rows = np.flatnonzero((frame["split"] > 0) | (frame["dividend"] > 0))
    return {
        int(open_time[i]): Action(
            ratio=float(frame["split"].iloc[i]) or 1.0, dividend=float(frame["dividend"].iloc[i])
        )
        for i in rows.tolist()
    }
