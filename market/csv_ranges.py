"""Read a large CSV's rows on every core: the file is cut at line ends into ranges of 1 MB and
pandas' C reader, which releases the GIL while it tokenises and converts, reads them a thread
per core, one reader per thread for all its ranges. Each range's number columns are copied, in
file order, into one array per column, and the range is dropped: the read holds the parsed bars
plus the ranges in flight (a 1M-bar file: +120 MB over the imports). One reader over the whole
file holds its chunks and their joined copy at once, and pandas 3.1's own split read of a path
keeps every chunk and the mapped file until it has joined them (+300 MB; +226 MB with every
column's type given). Larger ranges cost more CPU, not less (2 and 4 MB: +3-5%)."""

from __future__ import annotations

import io
import mmap
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MIN_RANGE_BYTES = 8 << 20  # smaller files are read whole: a thread would cost more than it saves
RANGE_BYTES = 1 << 20
AHEAD = 2  # ranges in flight per core: a reader that finishes first need not wait for the join
ROOM = 1.25  # rows allowed for, over what the first range's bytes per row predict
_REUSE = ("load_buffer", "trim_after_read")  # pandas 3.1's, which its own split read uses
_COMPRESSED = (".gz", ".bz2", ".zip", ".xz", ".zst", ".tar")  # pandas infers these: read whole


class _Reader:
    """pandas' C reader for one thread's ranges, kept from range to range: its token buffers,
    sized by the first range, are reused rather than freed and page-faulted afresh (a reader
    per range spent a third more CPU), and so is the buffer each range is read into by one
    `os.preadv`. A pandas without these hooks (before 3.1) gets a reader per range."""

    def __init__(self, options: dict[str, Any], longest: int) -> None:
        self._options = options
        self._buffer = memoryview(bytearray(longest))
        self._reader = pd.read_csv(io.BytesIO(b""), **options, iterator=True)
        # Private hooks, so every one is looked for: a pandas that lacks any reads per range.
        self._engine = getattr(self._reader, "_engine", None)
        native = getattr(self._engine, "_reader", None)
        self._reuse = hasattr(self._engine, "_first_chunk") and all(
            hasattr(native, a) for a in _REUSE
        )
        if self._reuse:
            self._engine._reader.trim_after_read = False

    def read(self, fd: int, start: int, end: int, count: bool) -> tuple[dict[Any, Any], int]:
        """The range's columns by name, and its commas if `count`: numbers as the arrays the
        parser made (a frame would copy them into one block), or, where any column is not
        numbers, as `pd.read_csv` reads the range, so that text is typed as pandas types it."""
        text = self._buffer[: os.preadv(fd, [self._buffer[: end - start]], start)]
        return self._columns(text), _commas(text) if count else 0

    def _columns(self, text: memoryview) -> dict[Any, Any]:
        if self._reuse:
            self._engine._reader.load_buffer(text)
            self._engine._first_chunk = True  # an empty range reads as no rows, not the end
            try:
                _, names, arrays = self._engine.read()
            except BaseException:
                self._reuse = False  # its next range would start with this one's rows left
                raise
            if all(isinstance(a, np.ndarray) and a.dtype.kind in "iuf" for a in arrays.values()):
                return {name: arrays[name] for name in names}
        return dict(pd.read_csv(io.BytesIO(text), **self._options).items())

    def close(self) -> None:
        self._reader.close()


def line_ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    """Up to `parts` byte ranges covering the file, each but the last ending at a newline."""
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as file:
        for part in range(1, parts):
            file.seek(size * part // parts)
            file.readline()
            if cuts[-1] < file.tell() < size:
                cuts.append(file.tell())
    return list(zip(cuts, [*cuts[1:], size], strict=True))


class _Column:
    """One column, joined range by range. Numbers are copied into one array with room for
    `rows`; a column with text, whose type changes between ranges, or with more rows than
    that keeps its parts for `pd.concat`, which widens int to float and numbers to text as
    one reader would (the rows copied so far, all of one type, count as one part)."""

    def __init__(self, rows: int) -> None:
        self._rows, self._filled = rows, 0
        self._array: np.ndarray | None = None
        self._parts: list[pd.Series] | None = None

    def add(self, part: pd.Series | np.ndarray) -> None:
        if self._parts is None and part.dtype.kind in "iuf":
            if self._array is None:
                self._array = np.empty(self._rows, part.dtype)
            end = self._filled + len(part)
            if self._array.dtype == part.dtype and end <= self._rows:
                self._array[self._filled : end] = part
                self._filled = end
                return
        if self._parts is None:
            self._parts = [pd.Series(self.values())] if self._filled else []
            self._array = None
        self._parts.append(pd.Series(part, copy=False))

    def values(self) -> Any:
        if self._parts is not None:
            return pd.concat(self._parts, ignore_index=True)
        assert self._array is not None
        return self._array[: self._filled]


def read_rows(path: Path, has_header: bool, **options: Any) -> pd.DataFrame:
    """What `pd.read_csv(path, header=0 if has_header else None, **options)` reads, a range
    per core (pandas skips a header row faster than `skiprows`). Give `names`: only the first
    range holds the header, which they replace. A file pandas cannot read is read again by
    one reader, whose error names the file's own line.

    With `usecols` (positions, the last of `names` among them) only those columns are
    converted, but pandas then no longer counts a row's fields, and a row with a comma too
    many would shift its values unseen. So the commas are counted here: with no row short
    (none has an empty last field) they must be exactly `len(names) - 1` per row, the
    header's included. Where they are not (a wide or short row, a quoted comma), or where the
    bytes cannot be counted (a compressed file), every column is read, and pandas judges."""
    size, cores = path.stat().st_size, os.cpu_count() or 1
    parts = max(cores, -(-size // RANGE_BYTES)) if size >= MIN_RANGE_BYTES else 1
    compressed = path.suffix.lower() in _COMPRESSED
    spans = line_ranges(path, parts) if not compressed else []
    whole = {**options, "header": 0 if has_header else None}
    counting = "usecols" in options

    def one_reader() -> pd.DataFrame:
        """Every column by one reader (cut to `usecols`): pandas judges every row, and its
        error names the file's own line."""
        frame = pd.read_csv(path, **{k: v for k, v in whole.items() if k != "usecols"})
        return _kept(frame, options["usecols"]) if counting else frame

    if len(spans) < 2:  # small or compressed: one reader
        if not counting or not size or compressed:
            return one_reader()
        # Mapped, so the commas are counted without a copy; typing each column whole, as a
        # range's reader does.
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            counted: list[int] = []
            counter = threading.Thread(target=lambda: counted.append(_commas(data)))
            counter.start()  # on another core while pandas parses: both release the GIL
            try:
                frame = pd.read_csv(data, **whole, low_memory=False)
            finally:
                counter.join()
        return frame if _fields_add_up(frame, counted[0], has_header, options) else one_reader()

    rest = {**whole, "header": None, "low_memory": False}
    longest = max(end - start for start, end in spans[1:])
    local, readers = threading.local(), []

    def one(index: int) -> tuple[dict[Any, Any], int]:
        if index == 0:
            text = os.pread(fd, spans[0][1], 0)
            frame = pd.read_csv(io.BytesIO(text), **whole, low_memory=False)
            return dict(frame.items()), _commas(text) if counting else 0
        if not hasattr(local, "reader"):
            local.reader = _Reader(rest, longest)
            readers.append(local.reader)
        return local.reader.read(fd, *spans[index], counting)

    workers = min(cores, len(spans))
    columns: dict[Any, _Column] = {}
    commas = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        with ThreadPoolExecutor(workers) as pool:
            ahead = min(AHEAD * workers, len(spans))
            pending = deque(pool.submit(one, index) for index in range(ahead))
            for index in range(len(spans)):
                try:
                    parts, counted = pending.popleft().result()
                except pd.errors.ParserError:
                    return one_reader()
                commas += counted
                if index + ahead < len(spans):
                    pending.append(pool.submit(one, index + ahead))
                if index == 0:
                    rows = int(len(next(iter(parts.values()))) * size / spans[0][1] * ROOM) + 1
                for name, part in parts.items():
                    columns.setdefault(name, _Column(rows)).add(part)
    finally:
        os.close(fd)
        for reader in readers:
            reader.close()
    frame = pd.DataFrame({name: column.values() for name, column in columns.items()}, copy=False)
    if counting and not _fields_add_up(frame, commas, has_header, options):
        return one_reader()
    return frame


def _commas(text: bytes | memoryview | mmap.mmap) -> int:
    """The field separators in `text`: one vectorised pass, the GIL released."""
    return int(np.count_nonzero(np.frombuffer(text, dtype=np.uint8) == ord(",")))


def _fields_add_up(frame: pd.DataFrame, commas: int, has_header: bool, options: Any) -> bool:
    """Every row (and the header) has exactly as many fields as `names`: no row is short, as
    the last field, a number, is in each, and then the commas allow no row one more."""
    width = len(options["names"])
    if width - 1 not in options["usecols"]:
        return False
    last = frame[width - 1]
    if last.dtype.kind not in "iuf" or (last.dtype.kind == "f" and bool(last.isna().any())):
        return False
    return commas == (len(frame) + has_header) * (width - 1)


def _kept(frame: pd.DataFrame, usecols: Any) -> pd.DataFrame:
    """The columns a full read would have given with `usecols`."""
    kept = set(usecols)
    return frame[[name for name in frame.columns if name in kept]]
