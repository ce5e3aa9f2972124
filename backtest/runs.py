"""Every backtest run is saved in the store: what ran, its metrics, order counts and trades."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pandas as pd

from backtest.report import BacktestReport, RunSummary, SweepRow
from store import Store

if TYPE_CHECKING:
    from store.tables import BacktestRunRow


def save_run(store: Store, run: BacktestReport | RunSummary | SweepRow, created_ms: int) -> int:
    """Insert one run (a single backtest or one sweep point) and return its id."""
    config = run.config
    row = dict(
        created_ms=created_ms,
        strategy=config["strategy"],
        symbols=",".join(config["symbols"]),
        interval=config["interval"],
        start_ms=_ms(config["first_bar"]),
        end_ms=_ms(config["last_bar"]),
        report_sha256=run.sha256(),
        config_json=json.dumps(config, sort_keys=True),
        metrics_json=json.dumps(run.metrics),
        orders_json=run.orders.model_dump_json(),
        trades_json=run.trades_json
        if isinstance(run, SweepRow)
        else json.dumps([t.model_dump() for t in run.trades]),
    )
    # The driver's own INSERT of `BacktestRunRow`'s columns (store/migrations.py made the
    # table): a command that only saves its run loads neither SQLAlchemy nor SQLModel for it.
    # SQLite gives the new id as the cursor's lastrowid (any version; RETURNING needs 3.35),
    # PostgreSQL by RETURNING.
    sqlite = store.dialect == "sqlite"
    mark = "?" if sqlite else "%s"  # sqlite3's paramstyle, psycopg's
    sql = f"INSERT INTO backtest_runs ({', '.join(row)}) VALUES ({', '.join([mark] * len(row))})"
    with store.driver() as conn:
        cursor = conn.cursor()
        if sqlite:
            cursor.execute(sql, list(row.values()))
            return cursor.lastrowid
        cursor.execute(f"{sql} RETURNING id", list(row.values()))
        return cursor.fetchone()[0]


def _ms(iso: str) -> int:
    return int(pd.Timestamp(iso).value // 1_000_000)


def load_runs(store: Store, strategy: str | None = None) -> list[BacktestRunRow]:
    """Saved runs, oldest first."""
    from sqlmodel import Session, select

    from store.tables import BacktestRunRow

    query = select(BacktestRunRow).order_by(BacktestRunRow.id)
    if strategy is not None:
        query = query.where(BacktestRunRow.strategy == strategy)
    with Session(store.engine) as session:
        return list(session.exec(query))
