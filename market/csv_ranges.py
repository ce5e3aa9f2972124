"""Read a large CSV's rows on every core: the file is cut at line ends into ranges of 1 MB and
pandas' C reader, which releases the GIL while it tokenises and converts, reads them a thread
per core. Each range's number columns are copied, in file order, into one array per column,
and the range is dropped: the read holds the parsed bars plus the ranges in flight (a 1M-bar
file: +110 MB over the imports). One reader over the whole file holds its chunks and their
joined copy at once, and pandas 3.1's own split read of a path keeps every chunk and the
mapped file until it has joined them (+300 MB). Small ranges also keep the reader's buffers
under glibc's mmap threshold once it has risen, so they are reused instead of mapped afresh
and page-faulted each time. Ranges are streams, so pandas does not split them again."""

from __future__ import annotations

import io
import os
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
_COMPRESSED = (".gz", ".bz2", ".zip", ".xz", ".zst", ".tar")  # pandas infers these: read whole


class _Range(io.RawIOBase):
    """Bytes [start, end) of a file as a stream: each read is one `os.pread`, which copies
    from the page cache without the GIL and allocates only the chunk pandas asks for."""

    def __init__(self, fd: int, start: int, end: int) -> None:
        super().__init__()
        self._fd, self._at, self._end = fd, start, end

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self._end - self._at if size < 0 else min(size, self._end - self._at)
        text = os.pread(self._fd, size, self._at) if size > 0 else b""
        self._at += len(text)
        return text


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

    def add(self, part: pd.Series) -> None:
        if self._parts is None and part.dtype.kind in "iuf":
            if self._array is None:
                self._array = np.empty(self._rows, part.dtype)
            end = self._filled + len(part)
            if self._array.dtype == part.dtype and end <= self._rows:
                self._array[self._filled : end] = part.to_numpy()
                self._filled = end
                return
        if self._parts is None:
            self._parts = [pd.Series(self.values())] if self._filled else []
            self._array = None
        self._parts.append(part)

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

    def one(index: int) -> pd.DataFrame:
        given = whole if index == 0 else {**whole, "header": None}
        return pd.read_csv(_Range(fd, *spans[index]), **given, low_memory=False)

    workers = min(cores, len(spans))
    columns: dict[Any, _Column] = {}
    fd = os.open(path, os.O_RDONLY)
    try:
        with ThreadPoolExecutor(workers) as pool:
            ahead = min(AHEAD * workers, len(spans))
            pending = deque(pool.submit(one, index) for index in range(ahead))
            for index in range(len(spans)):
                try:
                    frame = pending.popleft().result()
                except pd.errors.ParserError:
                    return pd.read_csv(path, **whole)
                if index + ahead < len(spans):
                    pending.append(pool.submit(one, index + ahead))
                if index == 0:
                    rows = int(len(frame) * size / spans[0][1] * ROOM) + 1
                for name, part in frame.items():
                    columns.setdefault(name, _Column(rows)).add(part)
    finally:
        os.close(fd)
    return pd.DataFrame({name: column.values() for name, column in columns.items()}, copy=False)
