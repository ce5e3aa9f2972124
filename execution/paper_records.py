"""A paper account in the store: each bar's orders, fills, equity and loop checkpoint are written
in one transaction, so a kill -9 leaves either the whole step or none of it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import Connection, delete, func, insert, select

from execution.corporate import AppliedAction
from execution.orders import Fill
from execution.paper import PaperOrder, fill_from_row
from store.db import Store
from store.tables import (
    EquityPointRow,
    PaperCorporateActionRow,
    PaperFillRow,
    PaperOrderRow,
    TradingLoopRow,
)


@dataclass(frozen=True)
class StoredAccount:
    state_json: str | None
    fills: list[Fill]
    orders: list[PaperOrder]
    actions: list[AppliedAction]


def save_orders(store: Store, account: str, orders: Sequence[PaperOrder]) -> None:
    """Write-ahead for a real venue: the order is on disk before its request leaves, so a
    crash in between is settled by asking the exchange, never by sending it again."""
    with store.engine.begin() as conn:
        _upsert_orders(conn, account, orders)


def _upsert_orders(conn: Connection, account: str, orders: Sequence[PaperOrder]) -> None:
    ids = [o.client_order_id for o in orders]
    conn.execute(
        delete(PaperOrderRow).where(
            PaperOrderRow.account == account, PaperOrderRow.client_order_id.in_(ids)
        )
    )
    conn.execute(
        insert(PaperOrderRow),
        [
            {
                "account": account,
                "client_order_id": o.client_order_id,
                "decision_id": o.decision_id,
                "status": o.status,
                "accepted_ms": o.accepted_ms,
                "order_json": o.model_dump_json(),
            }
            for o in orders
        ],
    )


def save_step(
    store: Store,
    account: str,
    *,
    orders: Sequence[PaperOrder],
    fills: Sequence[Fill],
    state_json: str,
    now_ms: int,
    equity: tuple[int, float, float] | None = None,
    also: Sequence[Callable[[Connection], None]] = (),
    actions: Sequence[AppliedAction] = (),
) -> None:
    """One atomic step: upsert changed orders, append fills (and the splits and dividends the
    account took) after the stored ones, replace the checkpoint (and the bar's equity point),
    and whatever `also` writes (the gate's memory of the bar)."""
    with store.engine.begin() as conn:
        for write in also:
            write(conn)
        if orders:
            _upsert_orders(conn, account, orders)
        if fills:
            stored = conn.execute(
                select(func.count()).where(PaperFillRow.account == account)
            ).scalar_one()
            conn.execute(
                insert(PaperFillRow),
                [
                    {
                        "account": account,
                        "seq": stored + i,
                        "order_id": f.order_id,
                        "symbol": f.symbol,
                        "side": f.side,
                        "quantity": f.quantity,
                        "price": f.price,
                        "fee": f.fee,
                        "liquidity": f.liquidity.value,
                        "bar": f.bar,
                        "time_ms": f.time_ms,
                        "reason": f.reason.value,
                    }
                    for i, f in enumerate(fills)
                ],
            )
        if actions:
            _append_actions(conn, account, actions)
        if equity is not None:
            time_ms, value, cash = equity
            conn.execute(
                delete(EquityPointRow).where(
                    EquityPointRow.account == account, EquityPointRow.time_ms == time_ms
                )
            )
            conn.execute(
                insert(EquityPointRow),
                [{"account": account, "time_ms": time_ms, "equity": value, "cash": cash}],
            )
        conn.execute(delete(TradingLoopRow).where(TradingLoopRow.account == account))
        conn.execute(
            insert(TradingLoopRow),
            [{"account": account, "updated_ms": now_ms, "state_json": state_json}],
        )


def _append_actions(conn: Connection, account: str, actions: Sequence[AppliedAction]) -> None:
    table = PaperCorporateActionRow
    stored = conn.execute(select(func.count()).where(table.account == account)).scalar_one()
    conn.execute(
        insert(table),
        [{"account": account, "seq": stored + i, **asdict(a)} for i, a in enumerate(actions)],
    )


def load_account(store: Store, account: str) -> StoredAccount:
    with store.engine.connect() as conn:
        state = conn.execute(
            select(TradingLoopRow.state_json).where(TradingLoopRow.account == account)
        ).scalar_one_or_none()
        fills = conn.execute(
            select(PaperFillRow).where(PaperFillRow.account == account).order_by(PaperFillRow.seq)
        ).mappings()
        fill_list = [fill_from_row(row) for row in fills]
        orders = conn.execute(
            select(PaperOrderRow.order_json)
            .where(PaperOrderRow.account == account)
            .order_by(PaperOrderRow.accepted_ms, PaperOrderRow.client_order_id)
        ).scalars()
        order_list = [PaperOrder.model_validate_json(raw) for raw in orders]
        table = PaperCorporateActionRow
        taken = conn.execute(
            select(table).where(table.account == account).order_by(table.seq)
        ).mappings()
        fields = AppliedAction.__dataclass_fields__
        actions = [AppliedAction(**{k: row[k] for k in fields}) for row in taken]
    return StoredAccount(state, fill_list, order_list, actions)


def load_equity(store: Store, account: str) -> list[tuple[int, float, float]]:
    """(close time, equity, cash) per processed bar, oldest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(EquityPointRow.time_ms, EquityPointRow.equity, EquityPointRow.cash)
            .where(EquityPointRow.account == account)
            .order_by(EquityPointRow.time_ms)
        ).all()
    return [(int(t), float(e), float(c)) for t, e, c in rows]


def accounts(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(
            conn.execute(select(TradingLoopRow.account).order_by(TradingLoopRow.account)).scalars()
        )
