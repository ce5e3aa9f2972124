"""Store opening and schema upgrades for SQLite (WAL) and PostgreSQL.

A SQLite file store is opened with the driver alone: checking its schema version and saving a
run are a few plain statements on a `sqlite3` connection, so a command that does only that never
imports SQLAlchemy. The engine (same URL, same pragmas) is made the first time anything needs
Core or the ORM: a pending migration, a query of candles, any other repository.

A command that can start without the store (agent-backtest sends its first model calls from the
bundled sample's bars) opens a new SQLite file with `defer=True`: its tables are then created,
and the writes queued with `Store.later` made, by `Store.settle`, which the first use of the
store, or its close, runs. The command runs it while its first answers are waited on, so
creating the tables (SQLAlchemy and SQLModel's import included) is not before its first call.

Reads a run starts with (a series' cache state, its count, the venue's stored rules) are plain
SQL through `Store.rows`, so a run on an up-to-date SQLite store whose bars the columnar cache
holds never imports SQLAlchemy.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import UserError
from core.logging import masked_url
from core.security import PRIVATE_DIR, private_file
from store.backend import Backend, TimescaleMode, detect_backend, plain_backend
from store.migrations import MIGRATIONS, Migration

if TYPE_CHECKING:
    from sqlalchemy import URL, Connection, Engine

log = logging.getLogger(__name__)

# `sqlite:///PATH` with nothing SQLAlchemy's URL parser would decode or split off (query,
# escapes, fragment, credentials): PATH is then exactly the URL's `database`. Any other URL,
# in-memory SQLite included, is parsed and opened by SQLAlchemy.
PLAIN_SQLITE_FILE = re.compile(r"sqlite:///(?!:memory:$)([^?%#@]+)")
SUPPORTED_BACKENDS = ("sqlite", "postgresql")


class Store:
    """Owns the connections; repositories (candles, runs, ...) take a Store and share its engine."""

    backend: Backend  # set by open_store

    def __init__(self, url: str | URL, sqlite_file: str | None = None) -> None:
        self.url = url
        self.sqlite_file = sqlite_file
        self._engine: Engine | None = None
        self._making = threading.Lock()  # threads that first touch the engine share one
        self._put_off: list[Callable[[], object]] = []  # run in order by `settle`
        self._settling = threading.RLock()
        self._settler: int | None = None  # the thread running them, which may use the store
        self._reader: sqlite3.Connection | None = None  # `rows`' own, on a SQLite file
        self._reader_pid = 0
        self._inherited: sqlite3.Connection | None = None  # a parent's, never used or closed
        self._reading = threading.Lock()

    @property
    def shown(self) -> str:
        """The store's URL as a person may read it (a message, a status): the password hidden."""
        if self.sqlite_file is not None:
            return str(self.url)  # a plain SQLite file: nothing to hide (and no SQLAlchemy)
        if isinstance(self.url, str):
            return masked_url(self.url)
        return masked_url(self.url.render_as_string(hide_password=False))

    @property
    def deferred(self) -> bool:
        """A new store whose tables are not made yet: it holds nothing but the writes queued
        with `later`, so a reader may take what it queued for what the store will hold."""
        return bool(self._put_off)

    def later(self, write: Callable[[], object]) -> None:
        """`write` (a function of this store) now, or after the put-off work when deferred."""
        with self._settling:
            if self._put_off:
                self._put_off.append(write)
                return
        write()

    def settle(self) -> None:
        """Run the put-off work in order: the migrations, then the queued writes. Every use of
        the store waits for it; a step that fails stays queued and fails its next settle."""
        if not self._put_off or self._settler == threading.get_ident():
            return
        with self._settling:
            self._settler = threading.get_ident()
            try:
                while self._put_off:
                    self._put_off[0]()
                    self._put_off.pop(0)
            finally:
                self._settler = None

    @property
    def engine(self) -> Engine:
        """SQLAlchemy's engine, made on first use."""
        self.settle()
        if self._engine is None:
            with self._making:
                if self._engine is None:
                    self._engine = _engine(self.url)
        return self._engine

    @property
    def dialect(self) -> str:
        return "sqlite" if self.sqlite_file is not None else self.engine.dialect.name

    @contextmanager
    def driver(self) -> Iterator[Any]:
        """The database driver's own (DB-API) connection, in one transaction that commits on
        success: a fresh `sqlite3` one on a SQLite file store (as cheap as a pooled one, and
        never shared between threads), else a pooled connection of the engine."""
        self.settle()
        if self.sqlite_file is None:
            conn = self.engine.raw_connection()
        else:
            conn = sqlite3.connect(self.sqlite_file)
            _sqlite_pragmas(conn, None)
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()  # a pooled one goes back to the pool

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """The rows of a plain query, its parameters marked `?`, on the driver's connection: on
        a SQLite file, a read without SQLAlchemy (whose import is ~0.13 s of a command), on one
        kept read-only connection (a loop reads the record at every bar: a fresh connection
        and its pragmas were ~0.2 ms of each)."""
        if self.sqlite_file is None:
            if self.dialect != "sqlite":
                sql = sql.replace("?", "%s")
            with self.driver() as conn:
                cursor = conn.cursor()
                cursor.execute(sql, tuple(params))
                found = cursor.fetchall()
                cursor.close()
            return found
        self.settle()
        with self._reading:
            cursor = self._read_connection().execute(sql, tuple(params))
            try:
                return cursor.fetchall()
            finally:
                cursor.close()

    def _read_connection(self) -> sqlite3.Connection:
        """In autocommit, so each query reads what is committed when it runs; query-only, so
        nothing is ever written on it. A forked child opens its own (SQLite's rule)."""
        if self._reader is None or self._reader_pid != os.getpid():
            if self._reader is not None:
                self._inherited = self._reader
            reader = sqlite3.connect(
                self.sqlite_file, check_same_thread=False, isolation_level=None
            )
            reader.execute("PRAGMA busy_timeout=5000")
            reader.execute("PRAGMA query_only=ON")
            self._reader, self._reader_pid = reader, os.getpid()
        return self._reader

    def schema_version(self) -> int:
        if self.sqlite_file is None:
            from sqlalchemy import column, inspect, select, table

            with self.engine.connect() as conn:
                if not inspect(conn).has_table("schema_version"):
                    return 0
                versions = table("schema_version", column("version"))
                found = conn.execute(select(versions.c.version)).scalars().all()
            return max(found, default=0)
        with self.driver() as conn:
            cursor = conn.cursor()
            cursor.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            )
            if cursor.fetchone() is None:
                return 0
            cursor.execute("SELECT max(version) FROM schema_version")
            (version,) = cursor.fetchone()
        return version or 0

    def migrate(self, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
        """Apply every pending migration, all in one transaction; returns the new version. A
        new store is made in one go (13 transactions had cost a new SQLite store 37 ms and a
        PostgreSQL one 110 ms), and an upgrade cut short leaves the store as it was, to be
        upgraded whole on the next open. Processes that open a new or older store at once (a
        loop starting, `agent-trade status` beside it) take turns: the upgrade runs holding the
        database's migration lock, and a migration the other process applied meanwhile is
        skipped, never run twice."""
        current = self.schema_version()
        pending = [m for m in migrations if m.version > current]
        if not pending:
            return current
        from sqlalchemy import select

        from store.tables import SchemaVersion

        versions = SchemaVersion.__table__
        with self.engine.begin() as conn:
            _hold_migration_lock(conn)
            versions.create(conn, checkfirst=True)
            applied = set(conn.execute(select(versions.c.version)).scalars())
            for migration in pending:
                if migration.version in applied:
                    continue  # applied by another process while this one waited
                migration.apply(conn)
                conn.execute(
                    versions.insert().values(
                        version=migration.version,
                        description=migration.description,
                        applied_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    )
                )
                log.debug("schema upgraded to v%d (%s)", migration.version, migration.description)
        return self.schema_version()

    def close(self) -> None:
        self.settle()
        if self._engine is not None:
            self._engine.dispose()
        with self._reading:
            if self._reader is not None and self._reader_pid == os.getpid():
                self._reader.close()
            self._reader = None


_MIGRATION_LOCK = 0x6167656E74  # PostgreSQL's advisory lock key for migrations ("agent")


def _hold_migration_lock(conn: Connection) -> None:
    """Until the transaction ends. SQLite: its write lock, taken first (a deferred
    transaction that read the version could not then write once another had); waits up to
    the busy timeout. PostgreSQL: a transaction-scoped advisory lock, whose waits are
    unbounded, as a migration's length is."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    """Every SQLite connection's settings, the engine's and the driver's alike."""
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


_created: list[Path] = []
"""SQLite files this process created, so a refused command can leave none behind."""


def _private_sqlite(path: Path) -> None:
    """The database and its -wal/-shm files are 0600: SQLite creates the latter two with the
    database's own mode, so creating it private first covers all three."""
    path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if not path.exists():
        _created.append(path)
    private_file(path)
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            private_file(companion)


def _engine(parsed: str | URL) -> Engine:
    from sqlalchemy import create_engine, event
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        engine = create_engine(parsed, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError):
        raise UserError(
            f"invalid DATABASE_URL: no database driver {_driver_name(parsed)!r}; use "
            "sqlite:///path/agent.db or postgresql://user@host/db"
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _driver_name(parsed: str | URL) -> str:
    return parsed.split(":", 1)[0] if isinstance(parsed, str) else parsed.drivername


def _parsed(url: str) -> tuple[str | URL, str | None]:
    """The URL to open and, for a plain SQLite file, its path (created private here)."""
    plain = PLAIN_SQLITE_FILE.fullmatch(url)
    if plain:
        _private_sqlite(Path(plain.group(1)).expanduser())
        return url, plain.group(1)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise UserError(
            f"invalid DATABASE_URL {masked_url(url)!r}: expected e.g. sqlite:///path/agent.db"
        ) from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        # SQLAlchemy knows mysql, oracle, mssql: opening one raised the missing driver's
        # ModuleNotFoundError, and the store's SQL is written for these two only
        raise UserError(
            f"invalid DATABASE_URL: no database driver {parsed.drivername!r}; the store runs on "
            "SQLite or PostgreSQL: use sqlite:///path/agent.db or postgresql://user@host/db"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        _private_sqlite(Path(parsed.database).expanduser())
    return parsed, None


def _cannot_open(exc: BaseException) -> BaseException | None:
    """The driver's error when `exc` is a failure to reach or open the database, or a file
    that is not an SQLite database at all (sqlite3 raises the bare DatabaseError for it)."""
    if not isinstance(exc, sqlite3.Error):
        from sqlalchemy.exc import DBAPIError, OperationalError

        if isinstance(exc, OperationalError):
            return exc.orig
        if not isinstance(exc, DBAPIError):
            return None
        exc = exc.orig
    if isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError:
        return exc
    return None


def open_store(url: str, timescaledb: TimescaleMode = "auto", *, defer: bool = False) -> Store:
    """Connect, create the SQLite directory if needed, bring the schema up to date, and on
    TimescaleDB (as `timescaledb` allows) keep the time-series tables as hypertables.
    `defer`: a new SQLite file gets its tables on `Store.settle` (see the module's notes)."""
    parsed, sqlite_file = _parsed(url)
    store = Store(parsed, sqlite_file)
    shown = store.shown
    with _opening(shown):
        if store.dialect == "postgresql":
            store.backend = detect_backend(store.engine, timescaledb)
        else:
            store.backend = plain_backend(store.dialect, timescaledb)
        if defer and sqlite_file is not None and _new_file(Path(sqlite_file).expanduser()):
            store._put_off.append(partial(_migrate, store, shown))
            return store
        store.migrate()
        if store.backend.timescaledb is not None:
            from store.hypertables import ensure_hypertables

            ensure_hypertables(store.engine, store.backend)
    return store


def _new_file(path: Path) -> bool:
    """An SQLite file nothing has written to: empty, with no write-ahead log beside it."""
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size == 0 and (not wal.exists() or wal.stat().st_size == 0)


def _migrate(store: Store, shown: str) -> None:
    with _opening(shown):
        store.migrate()


@contextmanager
def _opening(shown: str) -> Iterator[None]:
    """A database that cannot be reached or opened is the user's to fix: one line, no trace."""
    try:
        yield
    except Exception as exc:
        why = _cannot_open(exc)
        if why is None:
            raise
        raise UserError(f"cannot open database {shown}: {why}") from None


def discard_created_empty() -> None:
    """Remove the SQLite stores this process created that hold no row but the schema's own
    version: a command refused after it opened the store (a flag checked late, an account that
    does not exist) leaves no database behind. A store anything was written to is kept."""
    for path in _created:
        if _open_elsewhere(path):
            continue  # another process opened the new store meanwhile: it is theirs too
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                tables = [
                    t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                ]
                held = any(
                    db.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone()  # nosec B608  # names from sqlite_master
                    for t in tables
                    if t != "schema_version" and not t.startswith("sqlite_")
                )
        except sqlite3.Error:
            continue  # not ours to judge: left as it is
        if not held:
            for suffix in ("", "-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
    _created.clear()


_SHM_DMS = 128
"""SQLite's unix VFS: while a connection to a WAL database lives, it holds a shared lock on this
byte of the -shm file (its "dead man switch"), which is how SQLite knows it is the last one."""


def _open_elsewhere(path: Path) -> bool:
    """Whether another process has the SQLite store open: an exclusive lock on the -shm file's
    DMS byte is free only when no other process holds its shared one (POSIX locks belong to a
    process, so this one's own connections do not count). Without fcntl nothing is assumed."""
    shm = path.with_name(path.name + "-shm")
    if not shm.exists():
        return False
    try:
        import fcntl
    except ImportError:
        return True
    with shm.open("rb+") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS)
        except OSError:
            return True
    return False
