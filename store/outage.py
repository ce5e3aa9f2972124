"""Telling a store that cannot be reached now (a server down, a file gone or locked) from a
mistake in our own SQL: the first is the operator's to fix and worth a retry, the second a bug
that must not be dressed up as an outage."""

from __future__ import annotations

import sqlite3

# sqlite3 raises OperationalError for "no such table" too: only these say the file is out of reach.
_SQLITE_OUT_OF_REACH = (
    "unable to open database file",
    "disk I/O error",
    "database is locked",
    "attempt to write a readonly database",
)
# SQLSTATE classes of a connection lost or refused: 08 connection exception, 53 insufficient
# resources (too many connections), 57P operator intervention (shutdown, cannot connect now).
_PG_OUT_OF_REACH = ("08", "53", "57P")


def unreachable(exc: BaseException) -> BaseException | None:
    """The driver's error when `exc` says the store cannot be reached or opened; else None."""
    if not isinstance(exc, sqlite3.Error):
        from sqlalchemy.exc import DBAPIError  # only once a store error is being looked at

        if not isinstance(exc, DBAPIError):
            return _psycopg_unreachable(exc)
        if exc.connection_invalidated:
            return exc.orig
        exc = exc.orig
    if isinstance(exc, sqlite3.OperationalError):
        return exc if str(exc).startswith(_SQLITE_OUT_OF_REACH) else None
    if type(exc) is sqlite3.DatabaseError:  # not an SQLite file, or a damaged one
        return exc
    return _psycopg_unreachable(exc)


def _psycopg_unreachable(exc: BaseException) -> BaseException | None:
    if not type(exc).__module__.startswith("psycopg"):
        return None
    import psycopg

    if not isinstance(exc, psycopg.OperationalError):
        return None
    state = exc.sqlstate
    return exc if state is None or state.startswith(_PG_OUT_OF_REACH) else None
