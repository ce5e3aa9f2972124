"""Read a user's candle CSV: Binance's kline layout, or OHLCV with a timestamp column (which
covers Yahoo/yfinance exports, tz-aware times and all, and backtesting.py's dated index)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pandas._libs.parsers import STR_NA_VALUES  # the cells pandas reads as NA

from core.errors import UserError
from market.calendar import dated
from market.csv_ranges import read_rows
from market.models import INTERVAL_MS

BINANCE_KLINE_HEADER = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
_TIME_NAMES = ("open_time", "timestamp", "time", "datetime", "date", "ts")
_OHLCV = ("open", "high", "low", "close", "volume")
_OPTIONAL = {  # CANDLE_COLUMNS' name: Binance's
    "quote_volume": "quote_volume",
    "trades": "count",
    "taker_buy_volume": "taker_buy_volume",
    "taker_buy_quote_volume": "taker_buy_quote_volume",
}
_UNNAMED_INDEX = ("nan", "", "unnamed: 0")
_EXPECTED = (
    "expected Binance's kline layout (open_time,open,high,low,close,volume,close_time,"
    "quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore; header optional) "
    "or OHLCV with a timestamp column (timestamp,open,high,low,close,volume)"
)


class CsvImportError(UserError):
    pass


def _epoch_to_ms(values: pd.Series, path: Path) -> np.ndarray:
    """Epoch seconds, ms or µs (Binance's newer dumps) by magnitude, or ISO text, to epoch ms.
    Whole numbers stay integers: exact, and epoch ms (the usual case) are used without a copy."""
    if pd.api.types.is_integer_dtype(values.dtype):
        stamps = values.to_numpy(dtype=np.int64)
        peak = max(-int(stamps.min()), int(stamps.max())) if len(stamps) else 0
        return stamps // 1000 if peak > 1e14 else stamps if peak > 1e11 else stamps * 1000
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        sample = float(numeric.abs().max())
        scale = 1e-3 if sample > 1e14 else 1.0 if sample > 1e11 else 1e3
        return (numeric.to_numpy(dtype=np.float64) * scale).astype(np.int64)
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    if parsed.isna().any():
        bad = values[parsed.isna()].iloc[0]
        raise CsvImportError(f"{path}: cannot parse timestamp {bad!r}; use epoch ms or ISO 8601")
    return parsed.to_numpy(dtype="datetime64[ms]").astype(np.int64)


def _read(path: Path, bars_only: bool = False) -> pd.DataFrame:
    """The header is sniffed from the first row as text; the rows are parsed by pandas' C
    reader into numbers directly (text only where a column holds some), which is several
    times faster and lighter than reading every cell as a string, a byte range per core.
    `bars_only`: only the columns bars are made of are converted (`_bar_columns`)."""
    if not path.is_file():
        what = (
            "is a directory, not a CSV file"
            if path.is_dir()
            else ("is not a regular file" if path.exists() else "no such file")
        )
        raise CsvImportError(f"{path}: {what}")
    try:
        first = _first_row(path)
        if first is None:
            head = pd.read_csv(path, header=None, dtype=str, skip_blank_lines=True, nrows=1)
            first = [str(v).strip().lower() for v in head.iloc[0]] if not head.empty else []
        has_header = any(not _is_number(v) for v in first)
        labels = _labels(first, has_header)
        keep = _bar_columns(labels) if bars_only and labels is not None else None
        options = {} if keep is None else {"usecols": keep}
        try:
            with warnings.catch_warnings():  # a row wider than the header is an error
                warnings.simplefilter("error", pd.errors.ParserWarning)
                # A column with text in it: its cells that are not numbers are reported as bad
                # rows by the validation, by time, not as pandas' chunk-typing advice.
                warnings.simplefilter("ignore", pd.errors.DtypeWarning)
                raw = read_rows(
                    path,
                    has_header,
                    names=range(len(first)),  # the first row's width
                    index_col=False,
                    skip_blank_lines=True,
                    **options,
                )
        except pd.errors.EmptyDataError:
            if not has_header:
                raise
            raw, keep = pd.DataFrame(columns=range(len(first)), dtype=object), None  # no rows
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CsvImportError(
            f"{path}: not a readable CSV ({str(exc).strip()}); {_EXPECTED}"
        ) from None
    except pd.errors.ParserWarning:
        raise CsvImportError(
            f"{path}: not a readable CSV (a row has more fields than the header); {_EXPECTED}"
        ) from None
    if raw.empty and not has_header:
        raise CsvImportError(f"{path}: the file has no rows; {_EXPECTED}")
    if labels is None:
        raise CsvImportError(f"{path}: {raw.shape[1]} unnamed columns; {_EXPECTED}")
    raw.columns = [labels[at] for at in raw.columns]
    return raw


_HEAD_BYTES = 1 << 16


def _first_row(path: Path) -> list[str] | None:
    """The first row's cells, stripped and in lower case, as pandas reads them with
    `dtype=str` (its NA markers as "nan"), from the file's first line with text: a pandas
    read for one row costs more than a small file's checks. None where the line is not plain
    (a quote, a carriage return or a NUL inside, not UTF-8, or past the first 64 KB) or
    missing, and pandas reads it."""
    with path.open("rb") as file:
        head = file.read(_HEAD_BYTES)
    lines = head.split(b"\n")
    if len(head) == _HEAD_BYTES:
        lines.pop()  # perhaps cut short
    for number, line in enumerate(lines):
        line = line.removesuffix(b"\r")
        if number == 0:
            line = line.removeprefix(b"\xef\xbb\xbf")  # UTF-8's byte order mark
        if not line.strip(b" \t"):
            continue  # blank: pandas skips it
        if any(mark in line for mark in (b'"', b"\r", b"\x00")):
            return None
        try:
            cells = line.decode("utf-8").split(",")
        except UnicodeDecodeError:
            return None
        return [("nan" if cell in STR_NA_VALUES else cell).strip().lower() for cell in cells]
    return None  # no line with text: pandas' own error says so


def _labels(first: list[str], has_header: bool) -> list[str] | None:
    """The columns' names: the header's, or Binance's for its 12 unnamed columns (None: a
    file without a header in another layout)."""
    if has_header:
        if first and first[0] in _UNNAMED_INDEX:  # pandas' to_csv of a dated index
            return ["date", *first[1:]]
        return first
    return list(BINANCE_KLINE_HEADER) if len(first) == len(BINANCE_KLINE_HEADER) else None


def _bar_columns(labels: list[str]) -> list[int] | None:
    """The positions of the columns bars are made of, and of the last (market.csv_ranges
    counts a row's fields by it), or None where some are missing (the full read names
    them). The rest are split into fields but not converted: a third of the parse of a
    Binance file, whose quote volume, trade count and taker columns no backtest reads."""
    time_col = next((c for c in _TIME_NAMES if c in labels), None)
    if time_col is None or any(c not in labels for c in _OHLCV):
        return None
    wanted = {time_col, *_OHLCV, "close_time"}
    last = len(labels) - 1
    return [at for at, name in enumerate(labels) if name in wanted or at == last]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_candle_csv(
    path: Path, interval: str, *, bars_only: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """Parse into the CANDLE_COLUMNS layout; returns the frame and the columns that were absent.
    `bars_only`: only open_time, OHLCV and close_time, what a backtest's bars are made of (the
    optional columns are neither read nor reported absent)."""
    raw = _read(path, bars_only)
    names = set(raw.columns)
    time_col = next((c for c in _TIME_NAMES if c in names), None)
    missing = [c for c in _OHLCV if c not in names]
    if time_col is None or missing:
        need = ["timestamp"] if time_col is None else []
        raise CsvImportError(
            f"{path}: missing columns {need + missing} (found {sorted(names)}); {_EXPECTED}"
        )
    step = INTERVAL_MS[interval]
    open_time = dated(_epoch_to_ms(raw[time_col], path), step)
    columns: dict[str, np.ndarray] = {"open_time": open_time}
    columns.update((col, _floats(raw[col])) for col in _OHLCV)
    columns["close_time"] = (
        _epoch_to_ms(raw["close_time"], path) if "close_time" in names else open_time + (step - 1)
    )
    absent = []
    for target, source in () if bars_only else _OPTIONAL.items():
        alias = source if source in names else target if target in names else None
        if alias is None:
            absent.append(target)
            values = np.zeros(len(raw))
        elif target == "trades" and pd.api.types.is_integer_dtype(raw[alias].dtype):
            values = raw[alias].to_numpy(dtype=np.int64)  # whole already: no float round trip
        else:
            values = _floats(raw[alias])
            values = np.nan_to_num(values) if np.isnan(values).any() else values
        columns[target] = values.astype(np.int64, copy=False) if target == "trades" else values
    del raw  # the frame below holds the parsed columns themselves, not copies of them
    frame = pd.DataFrame({name: _writable(values) for name, values in columns.items()}, copy=False)
    _check_spacing(frame, interval, path)
    return frame, absent


def _writable(values: np.ndarray) -> np.ndarray:
    """pandas hands out read-only views of a frame's columns; with that frame gone the view is
    the only user, so it is made writable again (a copy only where numpy refuses): a caller may
    edit the frame it gets, and pandas cannot copy-on-write an array it did not allocate."""
    if values.flags.writeable:
        return values
    try:
        values.flags.writeable = True
    except ValueError:
        return values.copy()
    return values


def _floats(values: pd.Series) -> np.ndarray:
    """A column as float64, text that is not a number as NaN (reported, never stored). A
    column parsed as numbers is used as it is: `pd.to_numeric` would copy it."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)


def sniff_interval(path: Path) -> str:
    """The interval a CSV's bars are spaced at (the median step between rows)."""
    raw = _read(path, bars_only=True)
    time_col = next((c for c in _TIME_NAMES if c in set(raw.columns)), None)
    if time_col is None:
        raise CsvImportError(f"{path}: missing columns ['timestamp']; {_EXPECTED}")
    steps = np.diff(_epoch_to_ms(raw[time_col], path))
    steps = steps[steps > 0]
    typical = int(np.median(steps)) if len(steps) else 0
    found = next((k for k, v in INTERVAL_MS.items() if v == typical), None)
    if found is None:
        raise CsvImportError(f"{path}: bars are {typical / 1000:g}s apart, not a known interval")
    return found


def _check_spacing(frame: pd.DataFrame, interval: str, path: Path) -> None:
    """A file of 5m bars imported as 1m would corrupt every later calculation: refuse it. The
    typical step is the median of the positive steps, which is the interval's own when more
    than half of them are (the usual file): only the other steps are picked out, and the
    median is taken only when they are that many."""
    step = INTERVAL_MS[interval]
    diffs = np.diff(frame["open_time"].to_numpy())
    odd = np.flatnonzero(diffs != step)
    odd_diffs = diffs[odd]
    backwards = odd[odd_diffs < 0]
    if len(backwards):
        row = int(backwards[0]) + 2  # the later of the pair, counted from 1 after the header
        raise CsvImportError(
            f"{path}: rows are not in time order ({len(backwards):,} bars earlier than the row "
            f"before, first at data row {row}); sort the file by its time column"
        )
    positive = len(diffs) - np.count_nonzero(odd_diffs <= 0)
    if positive == 0 or 2 * (len(diffs) - len(odd)) > positive:
        return
    typical = int(np.median(diffs[diffs > 0]))
    if typical != step:
        found = next((k for k, v in INTERVAL_MS.items() if v == typical), f"{typical / 1000:g}s")
        raise CsvImportError(
            f"{path}: bars are {found} apart but --interval is {interval}; pass --interval {found}"
        )
