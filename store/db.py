"""Engine creation and schema upgrades for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, column, create_engine, event, inspect, select, table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from core.errors import UserError
from core.security import PRIVATE_DIR, private_file
from store.backend import Backend, TimescaleMode, detect_backend
from store.hypertables import ensure_hypertables
from store.migrations import MIGRATIONS, Migration

log = logging.getLogger(__name__)

# The migrations' ledger, read as a plain query: opening an up-to-date store loads no SQLModel.
SCHEMA_VERSION = table("schema_version", column("version"))


class Store:
    """Owns the engine; repositories (candles, runs, ...) take a Store and share its engine."""

    def __init__(self, engine: Engine, backend: Backend | None = None) -> None:
        self.engine = engine
        self.backend = backend or Backend(dialect=engine.dialect.name)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(SCHEMA_VERSION.name):
                return 0
            versions = conn.execute(select(SCHEMA_VERSION.c.version)).scalars().all()
        return max(versions, default=0)

    def migrate(self, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
        """Apply every pending migration in its own transaction; returns the new version."""
        current = self.schema_version()
        pending = [m for m in migrations if m.version > current]
        if not pending:
            return current
        from store.tables import SchemaVersion

        with self.engine.begin() as conn:
            SchemaVersion.__table__.create(conn, checkfirst=True)
        for migration in pending:
            with self.engine.begin() as conn:
                migration.apply(conn)
                conn.execute(
                    SchemaVersion.__table__.insert().values(
                        version=migration.version,
                        description=migration.description,
                        applied_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    )
                )
            log.debug("schema upgraded to v%d (%s)", migration.version, migration.description)
        return self.schema_version()

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def _private_sqlite(path: Path) -> None:
    """The database and its -wal/-shm files are 0600: SQLite creates the latter two with the
    database's own mode, so creating it private first covers all three."""
    path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    private_file(path)
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            private_file(companion)


def open_store(url: str, timescaledb: TimescaleMode = "auto") -> Store:
    """Connect, create the SQLite directory if needed, bring the schema up to date, and on
    TimescaleDB (as `timescaledb` allows) keep the time-series tables as hypertables."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(
            f"invalid DATABASE_URL {url!r}: expected e.g. sqlite:///path/agent.db"
        ) from None
    if parsed.drivername.startswith("postgresql") and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        _private_sqlite(Path(parsed.database).expanduser())
    try:
        engine = create_engine(parsed, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError):
        raise UserError(
            f"invalid DATABASE_URL: no database driver {parsed.drivername!r}; use "
            "sqlite:///path/agent.db or postgresql://user@host/db"
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        store = Store(engine, detect_backend(engine, timescaledb))
        store.migrate()
        ensure_hypertables(engine, store.backend)
    except OperationalError as exc:
        shown = parsed.render_as_string(hide_password=True)
        raise UserError(f"cannot open database {shown}: {exc.orig}") from None
    return store
