"""Stored candle series as numpy columns beside the SQLite database, so a backtest reads a
million bars as fast as pandas reads a CSV: a row-by-row SQL fetch builds a tuple per bar and
takes ten times longer. The database stays the truth. Each series' folder is named by the write
token its last write left in the database (`candle_series`), replaced in the same transaction
as every write to its bars, so a folder is read only while no bar was added or replaced since
it was made (its bars are at least that new: the token is read before the rows); a fresh
database at the same path has new tokens. Its files are memory-mapped copy-on-write: pages
are read on first touch, and a caller may edit the arrays without changing the files.
PostgreSQL and in-memory databases have no file to sit beside: they are read through SQL."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.security import PRIVATE_DIR

if TYPE_CHECKING:
    from sqlalchemy import Engine

Series = tuple[str, str, str]  # exchange, symbol, interval


def cache_root(engine: Engine) -> Path | None:
    """`agent.db.bars/` beside a SQLite file; None for PostgreSQL or an in-memory database."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return None
    return file_root(database)


def file_root(database: str) -> Path:
    """`agent.db.bars/` beside the SQLite file `database`."""
    path = Path(database).expanduser()
    return path.with_name(path.name + ".bars")


def _prefix(series: Series) -> str:
    """A file name for any symbol (`BRK.B`, `BTC/USDT`): a digest of the series' key."""
    return hashlib.sha256("\0".join(series).encode()).hexdigest()[:24]


def read(
    root: Path, series: Series, token: int, names: tuple[str, ...]
) -> dict[str, np.ndarray] | None:
    """The series' columns as written under `token`, or None (never made, or made under an
    older token, or removed while being read)."""
    folder = root / f"{_prefix(series)}-{token}"
    try:
        return {name: np.asarray(np.load(folder / f"{name}.npy", mmap_mode="c")) for name in names}
    except (OSError, ValueError):
        return None


def write(root: Path, series: Series, token: int, columns: dict[str, np.ndarray]) -> None:
    """Keep `columns` under `token`, replacing the series' older folders. A folder appears
    whole (written aside, then renamed) or not at all; a cache that cannot be written (a
    read-only or full disk) only costs the next load its speed."""
    prefix = _prefix(series)
    try:
        root.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=root))
        for name, values in columns.items():
            np.save(staging / f"{name}.npy", values, allow_pickle=False)
        try:
            os.rename(staging, root / f"{prefix}-{token}")
        except OSError:  # another process made the same folder first
            shutil.rmtree(staging, ignore_errors=True)
        for old in root.glob(f"{prefix}-*"):
            if old.name != f"{prefix}-{token}":
                shutil.rmtree(old, ignore_errors=True)
    except OSError:
        return


def forget(root: Path, series: Series) -> None:
    """Remove the series' folders: its bars are no longer under its key (a migration moved them)."""
    for folder in root.glob(f"{_prefix(series)}-*"):
        shutil.rmtree(folder, ignore_errors=True)
