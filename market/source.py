"""Where candles come from: the local store, then Binance (saved to the store), then the sample."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.clock import Clock
from core.errors import UserError
from market.csv_import import CsvImportError, read_candle_csv
from market.models import CANDLE_COLUMNS, EXCHANGE, INTERVAL_MS, iso_ms
from market.sample import SAMPLE_SYMBOLS, has_sample, is_sample, load_sample, sample_notice
from market.validation import check_candles, in_sessions, row_problem
from store import Store
from store.candles import count_candles, load_candles, upsert_candles

if TYPE_CHECKING:  # the HTTP client loads only when there is a client to call
    from venues.base import MarketData

DAY_MS = 86_400_000
Notify = Callable[[str], None]


def seed_sample_if_empty(store: Store, notify: Notify) -> bool:
    """Give a fresh data directory the bundled real bars, saying so in one line."""
    seeded = []
    for symbol in SAMPLE_SYMBOLS:
        if count_candles(store, symbol, "1m") == 0:
            upsert_candles(store, symbol, "1m", load_sample(symbol))
            seeded.append(symbol)
    if seeded:
        frame = load_sample(seeded[0])
        notify(
            f"notice: loaded the bundled Binance sample ({', '.join(seeded)} 1m, "
            f"{iso_ms(frame['open_time'].iloc[0])} → {iso_ms(frame['open_time'].iloc[-1])} UTC) "
            "into the store; it is not live data"
        )
    return bool(seeded)


def load_csv_candles(
    path: Path,
    interval: str,
    notify: Notify,
    *,
    whole: bool = False,
    stock: bool = False,
    bars_only: bool = False,
) -> pd.DataFrame:
    """A user's CSV, validated; bad rows are refused and reported, never repaired. `whole`:
    one bad row refuses the file (an import into the store is all or nothing). A stock's gaps
    are the bars its sessions lack, not its nights and weekends. `bars_only`: a backtest's
    read, of the times and OHLCV alone (market.csv_import.read_candle_csv)."""
    frame, absent = read_candle_csv(path, interval, bars_only=bars_only)
    report, bad = check_candles(frame, interval)
    if whole and bad is not None:
        first = int(bad.argmax())
        raise CsvImportError(
            f"{path}: data row {first + 1:,} ({iso_ms(int(frame['open_time'].iloc[first]))} UTC)"
            f": {row_problem(frame.iloc[first])}; {int(bad.sum()):,} bad row(s), nothing imported"
        )
    if stock:
        report, missing = in_sessions(report, frame["open_time"].to_numpy(), interval)
        if missing:
            notify(f"warning: {path.name}: {missing}")
    for problem in report.problems():
        notify(f"warning: {path.name}: {problem}")
    if absent:
        notify(f"notice: {path.name} has no {', '.join(absent)} columns; stored as 0")
    valid = _first_good_rows(frame, bad, report.duplicates.count)
    if valid.empty:
        raise CsvImportError(
            f"{path}: none of its {len(frame):,} rows is a valid bar "
            f"({'; '.join(report.problems()) or 'no rows'})"
        )
    return valid


def _first_good_rows(frame: pd.DataFrame, bad: np.ndarray | None, duplicates: int) -> pd.DataFrame:
    """The good rows (`bad` None: all), the first of each duplicated time; the frame itself (no
    copy) when none is left out. Its times never decrease (`read_candle_csv` refuses that), so
    duplicates are neighbours and the rows stay in time order."""
    if bad is None and not duplicates:
        return frame
    keep = np.arange(len(frame)) if bad is None else np.flatnonzero(~bad)
    times = frame["open_time"].to_numpy()[keep]
    first = np.r_[True, np.diff(times) != 0][: len(keep)]
    return frame.iloc[keep[first]]


class CandleSource:
    """Resolves a window of closed bars of one exchange, filling the store from its REST API
    when it can; only Binance's bars fall back to the bundled sample, which is Binance's."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        notify: Notify,
        client_factory: Callable[[], MarketData] | None = None,
        *,
        exchange: str = EXCHANGE,
    ) -> None:
        self.exchange = exchange
        self._venue = exchange.capitalize()
        self._store = store
        self._clock = clock
        self._notify = notify
        self._client_factory = client_factory
        self._told_unreachable = False  # said once per run, not once per symbol
        self._seeded: set[tuple[str, str]] = set()  # series seeded from the sample, deferred

    def window(self, interval: str, days: float) -> tuple[int, int]:
        """The last `days` of closed bars up to now, as [first open, last open] in ms."""
        step = INTERVAL_MS[interval]
        last_open = (self._clock.now_ms() // step) * step - step
        return last_open - int(days * DAY_MS) + step, last_open

    def get(
        self,
        symbol: str,
        interval: str,
        *,
        days: float | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> pd.DataFrame:
        if days is not None:
            start_ms, end_ms = self.window(interval, days)
        if start_ms is None or end_ms is None:
            raise ValueError("give days, or both start_ms and end_ms")
        if end_ms < start_ms:
            raise UserError(f"end {iso_ms(end_ms)} is before start {iso_ms(start_ms)}")
        step = INTERVAL_MS[interval]
        if not self._store.deferred or (symbol, interval) in self._seeded:
            stored = load_candles(
                self._store, symbol, interval, start_ms, end_ms, exchange=self.exchange
            )
            if len(stored) == (end_ms - start_ms) // step + 1:
                return stored
        fetched = self._fetch(symbol, interval, start_ms, end_ms)
        if fetched is not None:
            return fetched
        return self._local_fallback(symbol, interval, start_ms, end_ms, days)

    def before(self, symbol: str, interval: str, first_ms: int, bars: int) -> pd.DataFrame:
        """Up to `bars` bars before the one opening at `first_ms`, a run's warm-up: as stored,
        else fetched while the API answers; for a new store, the sample it is seeded with.
        Quiet, and empty where there are none: the window's own get said where bars came from."""
        step = INTERVAL_MS[interval]
        start_ms, end_ms = first_ms - bars * step, first_ms - step
        if self._store.deferred and (symbol, interval) in self._seeded:
            sample = load_sample(symbol).loc[:, list(CANDLE_COLUMNS)]
            times = sample["open_time"]
            return sample[(times >= start_ms) & (times <= end_ms)].reset_index(drop=True)
        stored = load_candles(
            self._store, symbol, interval, start_ms, end_ms, exchange=self.exchange
        )
        if len(stored) < bars and not self._told_unreachable:
            fetched = self._fetch(symbol, interval, start_ms, end_ms)
            if fetched is not None:
                return fetched
        return stored

    def _fetch(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> pd.DataFrame | None:
        if self._client_factory is None:
            return None
        from venues.registry import UNAVAILABLE

        try:
            with self._client_factory() as client:
                bars = client.klines(symbol, interval, start_ms, end_ms)
        except UNAVAILABLE as exc:
            if not self._told_unreachable:
                self._told_unreachable = True
                self._notify(f"notice: {self._venue} unreachable ({exc}); using local data")
            return None
        upsert_candles(self._store, symbol, interval, bars, exchange=self.exchange)
        return load_candles(self._store, symbol, interval, start_ms, end_ms, exchange=self.exchange)

    def _local_fallback(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, days: float | None
    ) -> pd.DataFrame:
        if self.exchange != EXCHANGE:
            return self._stored_only(symbol, interval, start_ms, end_ms, days)
        seeded = self._seed(symbol, interval)
        if days is not None:
            everything = load_candles(self._store, symbol, interval) if seeded is None else seeded
            if everything.empty:
                raise UserError(self._nothing_here(symbol, interval))
            span = int(days * DAY_MS) // INTERVAL_MS[interval]
            frame = everything.iloc[-span:].reset_index(drop=True)
        else:
            frame = load_candles(self._store, symbol, interval, start_ms, end_ms)
            if frame.empty:
                raise UserError(
                    f"no {symbol} {interval} bars between {iso_ms(start_ms)} and {iso_ms(end_ms)} "
                    f"UTC in the store, and Binance is unreachable. {self._stored_range(symbol, interval)}"
                )
        if has_sample(symbol, interval) and is_sample(symbol, frame):
            self._notify(sample_notice(symbol, frame))
        else:
            self._notify(
                f"notice: offline; using stored {symbol} {interval} "
                f"{iso_ms(frame['open_time'].iloc[0])} → {iso_ms(frame['open_time'].iloc[-1])} UTC"
            )
        return frame

    def _seed(self, symbol: str, interval: str) -> pd.DataFrame | None:
        """A store without the bars gets the bundled sample's when there is one. A deferred
        store (new: nothing stored, see store/db.py) gets them when it settles, and they are
        returned as it will give them back, so the run starts before the store is made."""
        if not has_sample(symbol, interval):
            return None
        if self._store.deferred and (symbol, interval) not in self._seeded:
            self._seeded.add((symbol, interval))
            self._store.later(partial(self._store_sample, symbol, interval))
            return load_sample(symbol).loc[:, list(CANDLE_COLUMNS)]
        if count_candles(self._store, symbol, interval) == 0:
            upsert_candles(self._store, symbol, interval, load_sample(symbol))
        return None

    def _store_sample(self, symbol: str, interval: str) -> None:
        """The sample's bars into the store, then read back once, as a run that had read them
        from the store would have, so the series' columnar cache is there for the next run."""
        upsert_candles(self._store, symbol, interval, load_sample(symbol))
        load_candles(self._store, symbol, interval)

    def _stored_only(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, days: float | None
    ) -> pd.DataFrame:
        """Another exchange's bars come from the store or its API, never from Binance's
        sample: without them the run stops and says how to get them."""
        name = f"{self.exchange} {symbol} {interval}"
        if days is not None:
            everything = load_candles(self._store, symbol, interval, exchange=self.exchange)
            frame = everything.iloc[-(int(days * DAY_MS) // INTERVAL_MS[interval]) :]
        else:
            frame = load_candles(
                self._store, symbol, interval, start_ms, end_ms, exchange=self.exchange
            )
        if frame.empty:
            raise UserError(
                f"no {name} bars in the store for the window asked for, and {self._venue} is "
                f"unreachable (the bundled sample is Binance's, never used for {self.exchange}): "
                f"run `agent-data download --exchange {self.exchange} --symbol {symbol}` online "
                f"or `agent-data import FILE --exchange {self.exchange}` first"
            )
        self._notify(
            f"notice: offline; using stored {name} "
            f"{iso_ms(frame['open_time'].iloc[0])} → {iso_ms(frame['open_time'].iloc[-1])} UTC"
        )
        return frame.reset_index(drop=True)

    def _stored_range(self, symbol: str, interval: str) -> str:
        frame = load_candles(self._store, symbol, interval)
        if frame.empty:
            return "The store has none."
        first, last = frame["open_time"].iloc[0], frame["open_time"].iloc[-1]
        return f"Stored: {iso_ms(first)} → {iso_ms(last)} UTC."

    def _nothing_here(self, symbol: str, interval: str) -> str:
        bundled = ", ".join(f"{s} 1m" for s in SAMPLE_SYMBOLS)
        return (
            f"no {symbol} {interval} data: the store has none, Binance is unreachable, and the "
            f"bundled sample covers only {bundled}. Use `agent-data import FILE` or go online."
        )
