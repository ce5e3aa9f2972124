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

    def read(self, fd: int, start: int, end: int) -> dict[Any, Any]:
        """The range's columns by name: numbers as the arrays the parser made (a frame would
        copy them into one block), or, where any column is not numbers, as `pd.read_csv`
        reads the range, so that text is typed as pandas types it."""
        text = self._buffer[: os.preadv(fd, [self._buffer[: end - start]], start)]
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
    one reader, whose error names the file's own line."""
    size, cores = path.stat().st_size, os.cpu_count() or 1
    parts = max(cores, -(-size // RANGE_BYTES)) if size >= MIN_RANGE_BYTES else 1
    spans = line_ranges(path, parts) if path.suffix.lower() not in _COMPRESSED else []
    whole = {**options, "header": 0 if has_header else None}
    if len(spans) < 2:
        return pd.read_csv(path, **whole)

    rest = {**whole, "header": None, "low_memory": False}
    longest = max(end - start for start, end in spans[1:])
    local, readers = threading.local(), []

    def one(index: int) -> dict[Any, Any]:
        if index == 0:
            text = io.BytesIO(os.pread(fd, spans[0][1], 0))
            return dict(pd.read_csv(text, **whole, low_memory=False).items())
        if not hasattr(local, "reader"):
            local.reader = _Reader(rest, longest)
            readers.append(local.reader)
        return local.reader.read(fd, *spans[index])

    workers = min(cores, len(spans))
    columns: dict[Any, _Column] = {}
    fd = os.open(path, os.O_RDONLY)
    try:
        with ThreadPoolExecutor(workers) as pool:
            ahead = min(AHEAD * workers, len(spans))
            pending = deque(pool.submit(one, index) for index in range(ahead))
            for index in range(len(spans)):
                try:
                    parts = pending.popleft().result()
                except pd.errors.ParserError:
                    return pd.read_csv(path, **whole)
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
    return pd.DataFrame({name: column.values() for name, column in columns.items()}, copy=False)
