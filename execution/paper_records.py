"""A paper account in the store: each bar's orders, fills, equity and loop checkpoint are written
in one transaction, so a kill -9 leaves either the whole step or none of it.

Reading an account back (`agent-trade status`, `fills`) is plain SQL through `Store.rows`: on a
SQLite file those commands never import SQLAlchemy (~0.15 s of each); the writes use it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from execution.corporate import AppliedAction
from execution.orders import Fill
from execution.paper import PaperOrder, fill_from_row
from store.db import Store

if TYPE_CHECKING:
    from sqlalchemy import Connection

_FILL_COLUMNS = "order_id, symbol, side, quantity, price, fee, liquidity, bar, time_ms, reason"
_ACTION_COLUMNS = [f.name for f in fields(AppliedAction)]


@dataclass(frozen=True)
class StoredAccount:
    state_json: str | None
    fills: list[Fill]
    orders: list[PaperOrder]
    actions: list[AppliedAction]


class _Statements(NamedTuple):
    """A step's statements, built once with parameters for the account and the bar: SQLAlchemy
    builds and keys a statement anew each time one is written out in place, which was most of
    the CPU a quiet bar's commit took."""

    delete_orders: Any
    insert_orders: Any
    count_fills: Any
    insert_fills: Any
    delete_equity: Any
    insert_equity: Any
    delete_loop: Any
    insert_loop: Any


@cache
def _statements() -> _Statements:
    from sqlalchemy import bindparam, delete, func, insert, select

    from store.tables import EquityPointRow, PaperFillRow, PaperOrderRow, TradingLoopRow

    return _Statements(
        delete_orders=delete(PaperOrderRow).where(
            PaperOrderRow.account == bindparam("key"),
            PaperOrderRow.client_order_id.in_(bindparam("ids", expanding=True)),
        ),
        insert_orders=insert(PaperOrderRow),
        count_fills=select(func.count()).where(PaperFillRow.account == bindparam("key")),
        insert_fills=insert(PaperFillRow),
        delete_equity=delete(EquityPointRow).where(
            EquityPointRow.account == bindparam("key"),
            EquityPointRow.time_ms == bindparam("at"),
        ),
        insert_equity=insert(EquityPointRow),
        delete_loop=delete(TradingLoopRow).where(TradingLoopRow.account == bindparam("key")),
        insert_loop=insert(TradingLoopRow),
    )


def save_orders(store: Store, account: str, orders: Sequence[PaperOrder]) -> None:
    """Write-ahead for a real venue: the order is on disk before its request leaves, so a
    crash in between is settled by asking the exchange, never by sending it again."""
    with store.engine.begin() as conn:
        _upsert_orders(conn, account, orders)


def _upsert_orders(conn: Connection, account: str, orders: Sequence[PaperOrder]) -> None:
    statements = _statements()
    ids = [o.client_order_id for o in orders]
    conn.execute(statements.delete_orders, {"key": account, "ids": ids})
    conn.execute(
        statements.insert_orders,
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
    statements = _statements()
    with store.engine.begin() as conn:
        for write in also:
            write(conn)
        if orders:
            _upsert_orders(conn, account, orders)
        if fills:
            stored = conn.execute(statements.count_fills, {"key": account}).scalar_one()
            conn.execute(
                statements.insert_fills,
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
            conn.execute(statements.delete_equity, {"key": account, "at": time_ms})
            conn.execute(
                statements.insert_equity,
                {"account": account, "time_ms": time_ms, "equity": value, "cash": cash},
            )
        conn.execute(statements.delete_loop, {"key": account})
        conn.execute(
            statements.insert_loop,
            {"account": account, "updated_ms": now_ms, "state_json": state_json},
        )


def _append_actions(conn: Connection, account: str, actions: Sequence[AppliedAction]) -> None:
    from sqlalchemy import func, insert, select

    from store.tables import PaperCorporateActionRow as table

    stored = conn.execute(select(func.count()).where(table.account == account)).scalar_one()
    conn.execute(
        insert(table),
        [{"account": account, "seq": stored + i, **asdict(a)} for i, a in enumerate(actions)],
    )


def load_account(store: Store, account: str) -> StoredAccount:
    where = " WHERE account = ?"
    state = store.rows("SELECT state_json FROM trading_loops" + where, (account,))
    fills = store.rows(f"SELECT {_FILL_COLUMNS} FROM paper_fills{where} ORDER BY seq", (account,))
    names = _FILL_COLUMNS.split(", ")
    orders = store.rows(
        f"SELECT order_json FROM paper_orders{where} ORDER BY accepted_ms, client_order_id",
        (account,),
    )
    actions = store.rows(
        f"SELECT {', '.join(_ACTION_COLUMNS)} FROM paper_corporate_actions{where} ORDER BY seq",
        (account,),
    )
    return StoredAccount(
        state[0][0] if state else None,
        [fill_from_row(dict(zip(names, row, strict=True))) for row in fills],
        [PaperOrder.model_validate_json(raw) for (raw,) in orders],
        [AppliedAction(*row) for row in actions],
    )


def load_equity(store: Store, account: str) -> list[tuple[int, float, float]]:
    """(close time, equity, cash) per processed bar, oldest first."""
    rows = store.rows(
        "SELECT time_ms, equity, cash FROM equity_points WHERE account = ? ORDER BY time_ms",
        (account,),
    )
    return [(int(t), float(e), float(c)) for t, e, c in rows]


def accounts(store: Store) -> list[str]:
    return [
        account for (account,) in store.rows("SELECT account FROM trading_loops ORDER BY account")
    ]
