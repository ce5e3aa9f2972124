"""Which database the store runs on, and whether TimescaleDB is in use there.

The `timescaledb` setting decides: `auto` creates the extension where the server offers it and
runs on plain PostgreSQL where it does not, `require` refuses to start without it, `off` never
touches it. The answer is one label (`sqlite`, `postgresql 15.18`,
`postgresql 15.18 + timescaledb 2.28.3 (apache)`) that status output shows.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from core.errors import UserError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)

TimescaleMode = Literal["auto", "require", "off"]


class Backend(BaseModel):
    """The database behind a store; `timescaledb` is None unless the extension is in use."""

    dialect: str
    server_version: str | None = None
    timescaledb: str | None = None
    license: str | None = None
    schema_name: str | None = None

    @property
    def label(self) -> str:
        if self.dialect != "postgresql":
            return self.dialect
        base = f"postgresql {self.server_version}"
        if self.timescaledb is None:
            return base
        return f"{base} + timescaledb {self.timescaledb} ({self.license})"

    def fn(self, name: str) -> str:
        """A TimescaleDB function qualified by the extension's schema, so a store whose
        search_path leaves that schema out still reaches it."""
        return f'"{self.schema_name}".{name}'


def _installed(conn: Connection) -> tuple[str, str] | None:
    from sqlalchemy import text

    row = conn.execute(
        text(
            "SELECT extversion, extnamespace::regnamespace::text FROM pg_extension "
            "WHERE extname = 'timescaledb'"
        )
    ).first()
    return (row[0], row[1]) if row else None


def _create_extension(engine: Engine) -> str | None:
    """Creates the extension; returns why it could not, or None."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.begin() as conn:
            offered = conn.execute(
                text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
            ).first()
            if not offered:
                return "the server has no timescaledb extension installed"
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS timescaledb"))
    except DBAPIError as exc:
        return str(exc.orig).strip().splitlines()[0]
    return None


def plain_backend(dialect: str, mode: TimescaleMode) -> Backend:
    """A store that is not PostgreSQL, so has no TimescaleDB: `require` refuses it."""
    if mode == "require":
        raise UserError(
            f"timescaledb = require, but the store is {dialect}: "
            "set DATABASE_URL to a PostgreSQL database with TimescaleDB"
        )
    return Backend(dialect=dialect)


def detect_backend(engine: Engine, mode: TimescaleMode) -> Backend:
    """The store's backend, creating TimescaleDB where `mode` allows and the server offers it."""
    from sqlalchemy import text

    if engine.dialect.name != "postgresql":
        return plain_backend(engine.dialect.name, mode)
    with engine.connect() as conn:
        version = str(conn.execute(text("SHOW server_version")).scalar_one()).split()[0]
        installed = _installed(conn) if mode != "off" else None
    plain = Backend(dialect="postgresql", server_version=version)
    if mode == "off":
        return plain
    why = None if installed else _create_extension(engine)
    if why is not None:
        if mode == "require":
            raise UserError(f"timescaledb = require, but it cannot be used here: {why}")
        log.info("TimescaleDB not in use (%s); plain PostgreSQL tables", why)
        return plain
    with engine.connect() as conn:
        extversion, schema = _installed(conn) or ("?", "public")
        license_ = str(conn.execute(text("SHOW timescaledb.license")).scalar_one())
    return plain.model_copy(
        update={"timescaledb": extversion, "license": license_, "schema_name": schema}
    )
