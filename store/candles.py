"""Candle repository: idempotent bulk upserts, range reads and per-series summaries."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from market.instruments import is_stock
from market.models import CANDLE_COLUMNS, EXCHANGE, INTERVAL_MS
from store import bar_cache
from store.db import Store

_KEY = ("exchange", "symbol", "interval")
_SERIES = ' WHERE exchange = ? AND symbol = ? AND "interval" = ?'
_CHUNK = 50_000
_INTEGERS = frozenset({"open_time", "close_time", "trades"})


class SeriesSummary(BaseModel):
    """What `agent-data list` shows for one (exchange, symbol, interval) series."""

    exchange: str
    symbol: str
    interval: str
    rows: int
    first_open_ms: int
    last_open_ms: int
    missing_bars: int


def _insert_sql(store: Store) -> str:
    cols = (*_KEY, *CANDLE_COLUMNS)
    mark = "?" if store.engine.dialect.paramstyle == "qmark" else "%s"
    return (
        f"INSERT INTO candles ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))}) "
        "ON CONFLICT DO NOTHING"
    )


def count_candles(store: Store, symbol: str, interval: str, exchange: str = EXCHANGE) -> int:
    [(count,)] = store.rows("SELECT COUNT(*) FROM candles" + _SERIES, (exchange, symbol, interval))
    return int(count)


def upsert_candles(
    store: Store,
    symbol: str,
    interval: str,
    candles: pd.DataFrame,
    *,
    exchange: str = EXCHANGE,
    on_chunk: Callable[[int], None] | None = None,
) -> int:
    """Insert bars not already stored (closed bars never change); returns how many were new."""
    if candles.empty:
        return 0
    before = count_candles(store, symbol, interval, exchange)
    frame = candles.loc[:, list(CANDLE_COLUMNS)]
    columns = [frame[c].to_numpy() for c in CANDLE_COLUMNS]
    ints = {"open_time", "close_time", "trades"}
    native = [
        col.astype(np.int64).tolist() if name in ints else col.astype(np.float64).tolist()
        for name, col in zip(CANDLE_COLUMNS, columns, strict=True)
    ]
    key = (exchange, symbol, interval)
    rows = [key + values for values in zip(*native, strict=True)]
    sql = _insert_sql(store)
    with store.engine.begin() as conn:
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            conn.exec_driver_sql(sql, chunk)
            if on_chunk:
                on_chunk(len(chunk))
        conn.exec_driver_sql(_token_sql(store), (*key, secrets.randbits(62)))
    return count_candles(store, symbol, interval, exchange) - before


def _token_sql(store: Store) -> str:
    """A new write token for the series, in the write's own transaction (see bar_cache)."""
    mark = "?" if store.engine.dialect.paramstyle == "qmark" else "%s"
    return (
        f"INSERT INTO candle_series (exchange, symbol, interval, write_token) VALUES "
        f"({mark}, {mark}, {mark}, {mark}) ON CONFLICT (exchange, symbol, interval) "
        "DO UPDATE SET write_token = excluded.write_token"
    )


def load_candles(
    store: Store,
    symbol: str,
    interval: str,
    start_ms: int | None = None,
    end_ms: int | None = None,
    *,
    exchange: str = EXCHANGE,
) -> pd.DataFrame:
    """Bars with start_ms <= open_time <= end_ms, oldest first, in the CANDLE_COLUMNS layout:
    from the series' columnar cache while it matches the database (store/bar_cache.py), else
    through SQL. A read of most of a series reads all of it and caches it for the next run
    (at most twice the rows asked for); a short window is read alone."""
    series = (exchange, symbol, interval)
    if store.sqlite_file is None:
        root = bar_cache.cache_root(store.engine)
        if root is None:
            return _select(store, series, start_ms, end_ms)
    else:
        root = bar_cache.file_root(store.sqlite_file)
    token, first, last = _series_state(store, series)
    if token is None or first is None or last is None:
        return _select(store, series, start_ms, end_ms)
    cached = bar_cache.read(root, series, token, CANDLE_COLUMNS)
    if cached is not None and _same_ends(cached["open_time"], first, last):
        return _window(cached, start_ms, end_ms)
    low = first if start_ms is None else max(start_ms, first)
    high = last if end_ms is None else min(end_ms, last)
    if (high - low) * 2 < last - first:
        return _select(store, series, start_ms, end_ms)
    columns = _columns(store, series, None, None)
    bar_cache.write(root, series, token, columns)
    return _window(columns, start_ms, end_ms)


def _same_ends(times: np.ndarray, first: int, last: int) -> bool:
    return bool(len(times)) and (int(times[0]), int(times[-1])) == (first, last)


def _window(
    columns: dict[str, np.ndarray], start_ms: int | None, end_ms: int | None
) -> pd.DataFrame:
    """The bars of [start_ms, end_ms] of a whole series' columns, as views of them."""
    times = columns["open_time"]
    low = 0 if start_ms is None else int(np.searchsorted(times, start_ms, "left"))
    high = len(times) if end_ms is None else int(np.searchsorted(times, end_ms, "right"))
    return pd.DataFrame({name: values[low:high] for name, values in columns.items()}, copy=False)


def _series_state(
    store: Store, series: bar_cache.Series
) -> tuple[int | None, int | None, int | None]:
    """The series' write token and its first and last open time (index seeks, the token read
    first): a cache whose ends differ was made before a write that did not renew the token (an
    older version of this program), and is not read."""
    [(token, first, last)] = store.rows(
        "SELECT (SELECT write_token FROM candle_series" + _SERIES + "), "
        "(SELECT min(open_time) FROM candles" + _SERIES + "), "
        "(SELECT max(open_time) FROM candles" + _SERIES + ")",
        series * 3,
    )
    return token, first, last


def _select(
    store: Store, series: bar_cache.Series, start_ms: int | None, end_ms: int | None
) -> pd.DataFrame:
    return pd.DataFrame(_columns(store, series, start_ms, end_ms), copy=False)


def _columns(
    store: Store, series: bar_cache.Series, start_ms: int | None, end_ms: int | None
) -> dict[str, np.ndarray]:
    """Rows are read in chunks straight into float64 arrays (exact for the integer columns
    too, which are below 2**53), never into a list of a million tuples."""
    from sqlalchemy import select

    from store.tables import CandleRow

    exchange, symbol, interval = series
    table = CandleRow.__table__
    stmt = select(*(table.c[c] for c in CANDLE_COLUMNS)).where(
        table.c.exchange == exchange, table.c.symbol == symbol, table.c.interval == interval
    )
    if start_ms is not None:
        stmt = stmt.where(table.c.open_time >= start_ms)
    if end_ms is not None:
        stmt = stmt.where(table.c.open_time <= end_ms)
    parts: list[list[np.ndarray]] = [[] for _ in CANDLE_COLUMNS]
    with store.engine.connect() as conn:
        compiled = stmt.order_by(table.c.open_time).compile(dialect=conn.dialect)
        names = compiled.positiontup or []
        params = [compiled.params[n] for n in names] if compiled.positional else compiled.params
        if conn.dialect.name == "postgresql":
            copied = _copy_columns(conn.connection.driver_connection, str(compiled), params)
            if copied is not None:
                return copied
        cursor = conn.connection.cursor()  # the driver's plain tuples: no Row objects
        cursor.execute(str(compiled), params)
        while rows := cursor.fetchmany(_CHUNK):
            block = np.fromiter(itertools.chain.from_iterable(rows), np.float64).reshape(
                len(rows), len(CANDLE_COLUMNS)
            )
            for column, values in zip(parts, block.T, strict=True):
                column.append(values.copy())
        cursor.close()
    return {name: _join(name, column) for name, column in zip(CANDLE_COLUMNS, parts, strict=True)}


# PostgreSQL's binary COPY row of the CANDLE_COLUMNS: a field count, then per field its length
# and its big-endian bigint or double. Every field is NOT NULL and 8 bytes wide, so the rows are
# fixed records numpy reads whole, with no Python object per bar.
_COPY_ROW = np.dtype(
    [("fields", ">i2")]
    + [
        field
        for name in CANDLE_COLUMNS
        for field in ((f"{name}_size", ">i4"), (name, ">i8" if name in _INTEGERS else ">f8"))
    ]
)
_COPY_HEADER = 19  # signature, flags, extension length
_COPY_BLOCK = 1 << 20


def _copy_columns(driver: Any, query: str, params: Any) -> dict[str, np.ndarray] | None:
    """The query's rows through `COPY ... TO STDOUT (FORMAT BINARY)`, a megabyte at a time
    into each column's parts; None when a row is not the fixed record (the cursor reads
    them then)."""
    parts: list[list[np.ndarray]] = [[] for _ in CANDLE_COLUMNS]
    buffer, start, fixed = bytearray(), None, True
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)", params) as copy,
    ):
        for data in copy:  # read to the end even past a bad row: the COPY must finish
            if not fixed:
                continue
            buffer += data
            if start is None and len(buffer) >= _COPY_HEADER:
                start = _COPY_HEADER + int.from_bytes(buffer[15:19], "big")
            if start is not None and len(buffer) - start >= _COPY_BLOCK:
                taken = _take_rows(buffer, start, parts)
                fixed, start = taken is not None, 0
                del buffer[: taken or 0]
    if not fixed or start is None or (taken := _take_rows(buffer, start, parts)) is None:
        return None
    if bytes(buffer[taken:]) != b"\xff\xff":  # the trailer
        return None
    return {name: _join(name, column) for name, column in zip(CANDLE_COLUMNS, parts, strict=True)}


def _take_rows(buffer: bytearray, start: int, parts: list[list[np.ndarray]]) -> int | None:
    """Copy the whole rows after `start` into `parts`; returns the bytes they end at, or None
    for a row that is not the fixed record."""
    count = max(len(buffer) - start, 0) // _COPY_ROW.itemsize
    rows = np.frombuffer(buffer, _COPY_ROW, count=count, offset=start)
    if (rows["fields"] != len(CANDLE_COLUMNS)).any():
        return None
    if any((rows[f"{name}_size"] != 8).any() for name in CANDLE_COLUMNS):
        return None
    for name, column in zip(CANDLE_COLUMNS, parts, strict=True):
        column.append(rows[name].astype(rows.dtype[name].newbyteorder("=")))
    return start + count * _COPY_ROW.itemsize


def _join(name: str, parts: list[np.ndarray]) -> np.ndarray:
    """One column from its chunks, emptying the list so each chunk is freed once copied."""
    values = np.concatenate(parts) if parts else np.empty(0)
    parts.clear()
    return values.astype(np.int64, copy=False) if name in _INTEGERS else values


def summarize(store: Store, symbol: str | None = None) -> list[SeriesSummary]:
    """Row counts, ranges and missing bars per series (duplicates cannot exist: the key forbids them)."""
    from sqlalchemy import func, select

    from store.tables import CandleRow

    table = CandleRow.__table__
    stmt = select(
        table.c.exchange,
        table.c.symbol,
        table.c.interval,
        func.count(),
        func.min(table.c.open_time),
        func.max(table.c.open_time),
    ).group_by(table.c.exchange, table.c.symbol, table.c.interval)
    if symbol:
        stmt = stmt.where(table.c.symbol == symbol)
    with store.engine.connect() as conn:
        result = conn.execute(stmt.order_by(table.c.symbol, table.c.interval)).all()
    return [
        SeriesSummary(
            exchange=exchange,
            symbol=sym,
            interval=interval,
            rows=rows,
            first_open_ms=first,
            last_open_ms=last,
            missing_bars=_missing(store, (exchange, sym, interval), rows, first, last),
        )
        for exchange, sym, interval, rows, first, last in result
    ]


def _missing(store: Store, series: bar_cache.Series, rows: int, first: int, last: int) -> int:
    """The bars a series lacks between its first and last: a US stock's are those its XNYS
    sessions should have, read from its open times as `agent-data verify` reads them (its
    nights and weekends are no gap); a coin's, every step not there."""
    exchange, symbol, interval = series
    step = INTERVAL_MS.get(interval)
    if step is None:
        return 0
    if is_stock(symbol):
        from market.calendar import xnys  # exchange_calendars: only for a stock's series

        opens = load_candles(store, symbol, interval, exchange=exchange)["open_time"].to_numpy()
        return xnys().missing(opens, step)
    return max((last - first) // step + 1 - rows, 0)
