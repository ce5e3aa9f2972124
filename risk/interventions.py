"""A person's way back from a halt, on record. A halt, a resume (the kill switch and the day's
loss halt) or a drawdown reset is applied to the stored state of one scope and kept with who
did it and why; a loop running in another process applies it at its next bar."""

from __future__ import annotations

import math
from functools import reduce
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from risk.desk import RiskDesk
from risk.models import ReasonCode
from risk.records import load_state, save_state
from risk.state import RiskState, clear_kill, kill, reset_drawdown
from store.db import Store

Action = Literal["halt", "resume", "reset_drawdown"]


class Intervention(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int | None = None
    scope: str
    action: Action
    who: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    at_ms: int
    equity: float | None = None  # the account's equity when it was made (a reset's new peak)


def apply(state: RiskState, step: Intervention) -> RiskState:
    """The transition a person asked for; pure, so a running loop applies the same one."""
    if step.action == "halt":
        return kill(state, f"{step.reason} (by {step.who})", step.at_ms)
    equity = math.nan if step.equity is None else step.equity
    if step.action == "reset_drawdown":
        return reset_drawdown(state, equity)
    cleared = clear_kill(state)
    if not any(lock.code is ReasonCode.DAILY_LOSS for lock in cleared.locks):
        return cleared
    # The day's loss is accepted: the day restarts here, so the breaker does not trip again
    # on the same loss at the next bar.
    return cleared.model_copy(
        update={
            "locks": tuple(
                lock for lock in cleared.locks if lock.code is not ReasonCode.DAILY_LOSS
            ),
            "day_start_equity": equity if math.isfinite(equity) else cleared.day_start_equity,
        }
    )


def intervene(store: Store, step: Intervention) -> tuple[int, RiskState, RiskState]:
    """Apply to the scope's stored state and record it; returns the record id and the states."""
    before = load_state(store, step.scope)
    after = apply(before, step)
    save_state(store, after, step.at_ms, step.scope)
    from sqlalchemy import insert

    from store.tables import RiskInterventionRow

    with store.engine.begin() as conn:
        result = conn.execute(
            insert(RiskInterventionRow).values(
                **step.model_dump(exclude={"id"}),
                state_before_json=before.model_dump_json(),
                state_after_json=after.model_dump_json(),
            )
        )
    return int(result.inserted_primary_key[0]), before, after


def history(store: Store, scope: str, after_id: int = 0) -> list[Intervention]:
    """The scope's interventions, oldest first, after a given record id (plain SQL: `status`
    on a SQLite file imports no SQLAlchemy)."""
    names = list(Intervention.model_fields)
    rows = store.rows(
        f"SELECT {', '.join(names)} FROM risk_interventions WHERE scope = ? AND id > ? ORDER BY id",
        (scope, after_id),
    )
    return [Intervention.model_validate(dict(zip(names, row, strict=True))) for row in rows]


def describe(step: Intervention) -> str:
    what = {"halt": "halted", "resume": "resumed", "reset_drawdown": "drawdown reset"}
    return f"#{step.id} {what[step.action]} by {step.who}: {step.reason}"


class Catchup:
    """A running loop's view of the record: what a person did from another process since it
    started is applied to the loop's own state at its next bar."""

    def __init__(self, store: Store, scope: str) -> None:
        self.store, self.scope = store, scope
        [(latest,)] = store.rows("SELECT MAX(id) FROM risk_interventions WHERE scope = ?", (scope,))
        self.seen = latest or 0

    def apply_to(self, desk: RiskDesk) -> None:
        pending = history(self.store, self.scope, self.seen)
        if pending:
            desk.update(lambda state: reduce(apply, pending, state))
            self.seen = pending[-1].id or self.seen
