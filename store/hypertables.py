"""Time-series tables as TimescaleDB hypertables, converted in place with their rows.

Every unique key of these tables already holds the time column, as hypertables demand. One
candles table holds every interval, so its chunk size is chosen for the 1m bars that fill it: a
week of 1m bars is ~10,000 rows per symbol per chunk. Each table converts in its own
transaction (`migrate_data` moves the rows into chunks), so a restart in the middle leaves each
table either plain with all its rows or a hypertable with all its rows, and the next open
finishes the job.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import Engine, inspect, text

from store.backend import Backend

DAY_MS = 86_400_000


class TimeSeries(NamedTuple):
    table: str
    time_column: str
    chunk_ms: int


TIME_SERIES: tuple[TimeSeries, ...] = (
    TimeSeries("candles", "open_time", 7 * DAY_MS),
    TimeSeries("equity_points", "time_ms", 30 * DAY_MS),
)


def hypertables(engine: Engine, backend: Backend) -> list[str]:
    """The store's tables that are hypertables (none without TimescaleDB)."""
    if backend.timescaledb is None:
        return []
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT hypertable_name FROM timescaledb_information.hypertables "
                "WHERE hypertable_schema = current_schema() ORDER BY hypertable_name"
            )
        )
        return [row[0] for row in rows]


def ensure_hypertables(engine: Engine, backend: Backend) -> list[str]:
    """Converts each plain time-series table; idempotent. Returns the tables converted now."""
    if backend.timescaledb is None:
        return []
    done = set(hypertables(engine, backend))
    converted = []
    for series in TIME_SERIES:
        if series.table in done or not inspect(engine).has_table(series.table):
            continue
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"SELECT {backend.fn('create_hypertable')}("
                    f"CAST(:table AS regclass), "
                    f"{backend.fn('by_range')}(CAST(:column AS name), CAST(:chunk AS bigint)), "
                    "if_not_exists => true, migrate_data => true)"
                ),
                {"table": series.table, "column": series.time_column, "chunk": series.chunk_ms},
            )
        converted.append(series.table)
    return converted
