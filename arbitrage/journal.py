"""Every arbitrage pair as one row, rewritten at each state it reaches: opened before its legs
are sent, then complete, lone leg, closed or failed, with both legs, the closes and the PnL;
and every inventory transfer between the venues, with its cost."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, select
from sqlmodel import Field, SQLModel

from arbitrage.pairs import Pair
from arbitrage.rebalance import Transfer
from store.db import Store


class ArbPairRow(SQLModel, table=True):
    __tablename__ = "arb_pairs"

    account: str = Field(primary_key=True)
    pair_id: str = Field(primary_key=True)
    opened_ms: int = Field(sa_column=Column(BigInteger, nullable=False))  # past 2**31
    state: str = Field(index=True)
    pnl_quote: float
    pair_json: str


class ArbTransferRow(SQLModel, table=True):
    __tablename__ = "arb_transfers"

    account: str = Field(primary_key=True)
    transfer_id: str = Field(primary_key=True)
    time_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    cost_quote: float
    transfer_json: str


class PairJournal:
    """The store's arbitrage journal for one account (its table is made on first use)."""

    def __init__(self, store: Store, account: str) -> None:
        self.store = store
        self.account = account
        with store.engine.begin() as conn:
            ArbPairRow.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]
            ArbTransferRow.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]

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

    def transfer(self, transfer: Transfer) -> None:
        """A rebalancing transfer, written once: it is executed before it is journaled on paper."""
        row = ArbTransferRow(
            account=self.account,
            transfer_id=transfer.transfer_id,
            time_ms=transfer.time_ms,
            cost_quote=transfer.cost_quote,
            transfer_json=transfer.model_dump_json(),
        )
        with self.store.engine.begin() as conn:
            conn.execute(ArbTransferRow.__table__.insert().values(**row.model_dump()))  # type: ignore[attr-defined]

    def transfers(self) -> list[Transfer]:
        table = ArbTransferRow.__table__  # type: ignore[attr-defined]
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(table.c.transfer_json)
                .where(table.c.account == self.account)
                .order_by(table.c.time_ms, table.c.transfer_id)
            ).scalars()
            return [Transfer.model_validate_json(raw) for raw in rows]
