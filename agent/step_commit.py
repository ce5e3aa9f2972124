"""One bar's commit for a stored account, shared by `agent-trade`'s loop and the chat's desk: the
venue's changes, the checkpoint and the equity point in one transaction, and the venue forgets
its changes only once they are stored."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection

from agent.loop_state import LoopState
from execution.orders import Fill
from execution.paper import PaperCheckpoint, PaperOrder
from execution.paper_records import save_step
from store.db import Store


class Committing(Protocol):
    ledger: Any

    def changes(
        self, signals: Mapping[str, dict[str, Any]]
    ) -> tuple[list[PaperOrder], list[Fill], PaperCheckpoint]: ...

    def committed(self) -> None: ...


def commit_step(
    store: Store,
    state: LoopState,
    venue: Committing,
    signals: Mapping[str, dict[str, Any]],
    *,
    now_ms: int,
    wall_ms: int,
    equity: float | None,
    also: Sequence[Callable[[Connection], None]] = (),
) -> tuple[LoopState, dict[str, dict[str, Any]], list[Fill]]:
    """Store the step; returns the state as stored, the signals of orders still waiting for
    the next open (the others have filled, or will never) and the fills it stored."""
    orders, fills, checkpoint = venue.changes(signals)
    state = state.model_copy(update={"paper": checkpoint, "wall_updated_ms": wall_ms})
    save_step(
        store,
        state.account,
        orders=orders,
        fills=fills,
        state_json=state.model_dump_json(),
        now_ms=now_ms,
        equity=None if equity is None else (now_ms, equity, venue.ledger.cash),
        also=also,
        actions=getattr(venue, "new_actions", ()),  # the paper venue's splits and dividends
    )
    venue.committed()
    waiting = {q["order"]["client_order_id"] for q in checkpoint.queued}
    return state, {cid: s for cid, s in signals.items() if cid in waiting}, fills
