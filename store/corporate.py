"""A stock's splits and dividends beside its raw candles, as `agent-data import` read them from
the file, so a backtest on the store adjusts exactly as one on the file does."""

from __future__ import annotations

from collections.abc import Mapping

from market.corporate import Action
from store.db import Store


def save_actions(store: Store, symbol: str, interval: str, actions: Mapping[int, Action]) -> None:
    """The file's actions replace those stored at the same bars (a re-import is idempotent)."""
    if not actions:
        return
    from sqlalchemy import delete, insert

    from store.tables import CorporateActionRow  # SQLModel loads when a stock's actions are used

    table = CorporateActionRow
    with store.engine.begin() as conn:
        conn.execute(
            delete(table).where(
                table.symbol == symbol,
                table.interval == interval,
                table.open_time.in_(list(actions)),
            )
        )
        conn.execute(
            insert(table),
            [
                {"symbol": symbol, "interval": interval, "open_time": t, "ratio": a.ratio,
                 "dividend": a.dividend}
                for t, a in sorted(actions.items())
            ],
        )  # fmt: skip


def load_actions(store: Store, symbol: str, interval: str) -> dict[int, Action]:
    """Every stored action of the series, keyed by its ex-date bar's open time."""
    from sqlalchemy import select

    from store.tables import CorporateActionRow

    table = CorporateActionRow
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(table.open_time, table.ratio, table.dividend)
            .where(table.symbol == symbol, table.interval == interval)
            .order_by(table.open_time)
        ).all()
    return {int(t): Action(ratio=float(r), dividend=float(d)) for t, r, d in rows}
