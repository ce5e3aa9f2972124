"""Every arbitrage pair as one row, rewritten at each state it reaches: opened before its legs
are sent, then complete, lone leg, closed or failed, with both legs, the closes and the PnL."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Field, SQLModel

from arbitrage.pairs import Pair
from store.db import Store


class ArbPairRow(SQLModel, table=True):
    __tablename__ = "arb_pairs"

    account: str = Field(primary_key=True)
    pair_id: str = Field(primary_key=True)
    opened_ms: int
    state: str = Field(index=True)
    pnl_quote: float
    pair_json: str


class PairJournal:
    """The store's arbitrage journal for one account (its table is made on first use)."""

    def __init__(self, store: Store, account: str) -> None:
        self.store = store
        self.account = account
        with store.engine.begin() as conn:
            ArbPairRow.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]

    def __call__(self, pair: Pair) -> None:
        row = {
            "account": self.account,
            "pair_id": pair.pair_id,
            "opened_ms": pair.opened_ms,
            "state": pair.state.value,
            "pnl_quote": pair.pnl_quote,
            "pair_json": pair.model_dump_json(),
        }
        table = ArbPairRow.__table__  # type: ignore[attr-defined]
        with self.store.engine.begin() as conn:
            key = (table.c.account == self.account) & (table.c.pair_id == pair.pair_id)
            if conn.execute(select(table.c.pair_id).where(key)).first() is None:
                conn.execute(table.insert().values(**row))
            else:
                conn.execute(table.update().where(key).values(**row))

    def pairs(self) -> list[Pair]:
        table = ArbPairRow.__table__  # type: ignore[attr-defined]
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(table.c.pair_json)
                .where(table.c.account == self.account)
                .order_by(table.c.opened_ms, table.c.pair_id)
            ).scalars()
            return [Pair.model_validate_json(raw) for raw in rows]
