"""What `agent-data status` shows: where the store lives, what it runs on, what it holds."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import func, select

from store.db import Store
from store.hypertables import hypertables
from store.tables import CandleRow


class StoreStatus(BaseModel):
    database: str
    backend: str
    timescaledb_setting: str
    schema_version: int
    hypertables: list[str]
    candle_rows: int

    def lines(self) -> list[tuple[str, str]]:
        return [
            ("database", self.database),
            ("backend", self.backend),
            ("timescaledb setting", self.timescaledb_setting),
            ("schema version", str(self.schema_version)),
            ("hypertables", ", ".join(self.hypertables) or "none"),
            ("candles", f"{self.candle_rows:,} rows"),
        ]


def store_status(store: Store, setting: str) -> StoreStatus:
    with store.engine.connect() as conn:
        rows = int(conn.execute(select(func.count()).select_from(CandleRow.__table__)).scalar_one())
    return StoreStatus(
        database=store.shown,
        backend=store.backend.label,
        timescaledb_setting=setting,
        schema_version=store.schema_version(),
        hypertables=hypertables(store.engine, store.backend),
        candle_rows=rows,
    )
