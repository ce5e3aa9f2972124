"""Persistence of the trading state (a restart keeps a halt) and of every verdict with its
inputs and the state around it, so any decision can be explained and replayed. The state is
read with plain SQL (`Store.rows`): `agent-trade status` on a SQLite file imports no SQLAlchemy."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, TypeAdapter

from risk.limits import RiskLimits
from risk.models import Approved, MarketView, PortfolioView, TradeSignal, Verdict
from risk.state import RiskState
from store.db import Store

if TYPE_CHECKING:
    from sqlalchemy import Connection

DEFAULT_SCOPE = "default"
_VERDICT = TypeAdapter(Verdict)


class VerdictRecord(BaseModel):
    """One gate call: what it saw, what it said, and the state before and after."""

    model_config = ConfigDict(frozen=True)

    scope: str = DEFAULT_SCOPE
    now_ms: int
    signal: TradeSignal
    portfolio: PortfolioView
    market: MarketView
    limits: RiskLimits
    verdict: Verdict
    state_before: RiskState
    state_after: RiskState


def _dumps(value: Any) -> str:
    """JSON that keeps NaN and inf (pydantic's own JSON turns them into null), because a
    garbage signal must be recorded as the garbage it was."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _model_json(model: BaseModel) -> str:
    return _dumps(model.model_dump(mode="json"))


def save_state(store: Store, state: RiskState, now_ms: int, scope: str = DEFAULT_SCOPE) -> None:
    """Replace the scope's state in one transaction."""
    with store.engine.begin() as conn:
        write_state(conn, state, now_ms, scope)


def write_state(conn: Connection, state: RiskState, now_ms: int, scope: str) -> None:
    """Replace the scope's state inside the caller's transaction (the loop's bar commit)."""
    remove, add = _state_statements()
    conn.execute(remove, {"key": scope})
    conn.execute(add, {"scope": scope, "state_json": _model_json(state), "updated_ms": now_ms})


@cache
def _state_statements() -> tuple[Any, Any]:
    """Built once, with the scope a parameter: a loop replaces its state at every bar, and
    SQLAlchemy builds and keys a statement anew each time one is written out in place."""
    from sqlalchemy import bindparam, delete, insert

    from store.tables import RiskStateRow

    return delete(RiskStateRow).where(RiskStateRow.scope == bindparam("key")), insert(RiskStateRow)


def load_state(store: Store, scope: str = DEFAULT_SCOPE) -> RiskState:
    """The persisted state, or a fresh ACTIVE one for a scope never saved."""
    found = store.rows("SELECT state_json FROM risk_state WHERE scope = ?", (scope,))
    return RiskState.model_validate(json.loads(found[0][0])) if found else RiskState()


def record_verdicts(store: Store, records: Iterable[VerdictRecord]) -> int:
    """Insert many records in one transaction (a backtest records thousands); returns count."""
    with store.engine.begin() as conn:
        return write_verdicts(conn, records)


def write_verdicts(conn: Connection, records: Iterable[VerdictRecord]) -> int:
    """Insert records inside the caller's transaction; returns count."""
    from sqlalchemy import insert

    from store.tables import RiskVerdictRow

    rows = [_verdict_row(record) for record in records]
    if rows:
        conn.execute(insert(RiskVerdictRow), rows)
    return len(rows)


def _verdict_row(record: VerdictRecord) -> dict[str, Any]:
    verdict = record.verdict
    reasons = verdict.adjustments if isinstance(verdict, Approved) else verdict.reasons
    return {
        "scope": record.scope,
        "decision_id": record.signal.decision_id,
        "now_ms": record.now_ms,
        "symbol": record.signal.symbol,
        "source": record.signal.source.value,
        "kind": verdict.kind,
        "codes": ",".join(reason.code.value for reason in reasons),
        "inputs_json": _dumps(
            {
                "now_ms": record.now_ms,
                "signal": record.signal.model_dump(mode="json"),
                "portfolio": record.portfolio.model_dump(mode="json"),
                "market": record.market.model_dump(mode="json"),
                "limits": record.limits.model_dump(mode="json"),
            }
        ),
        "verdict_json": _model_json(verdict),
        "state_before_json": _model_json(record.state_before),
        "state_after_json": _model_json(record.state_after),
    }


def last_limits(store: Store, scope: str = DEFAULT_SCOPE) -> RiskLimits | None:
    """The limits the gate applied at its latest call in this scope, or None before any call."""
    from sqlalchemy import select

    from store.tables import RiskVerdictRow

    stmt = (
        select(RiskVerdictRow.inputs_json)
        .where(RiskVerdictRow.scope == scope)
        .order_by(RiskVerdictRow.now_ms.desc(), RiskVerdictRow.id.desc())
        .limit(1)
    )
    with store.engine.connect() as conn:
        raw = conn.execute(stmt).scalar_one_or_none()
    return None if raw is None else RiskLimits.model_validate(json.loads(raw)["limits"])


def load_verdicts(store: Store, scope: str = DEFAULT_SCOPE) -> list[VerdictRecord]:
    """A scope's records in the order they were made."""
    from sqlalchemy import select

    from store.tables import RiskVerdictRow

    stmt = (
        select(RiskVerdictRow.__table__)
        .where(RiskVerdictRow.scope == scope)
        .order_by(RiskVerdictRow.now_ms, RiskVerdictRow.id)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    records = []
    for row in rows:
        inputs = json.loads(row["inputs_json"])
        records.append(
            VerdictRecord(
                scope=row["scope"],
                now_ms=inputs["now_ms"],
                signal=TradeSignal.model_validate(inputs["signal"]),
                portfolio=PortfolioView.model_validate(inputs["portfolio"]),
                market=MarketView.model_validate(inputs["market"]),
                limits=RiskLimits.model_validate(inputs["limits"]),
                verdict=_VERDICT.validate_python(json.loads(row["verdict_json"])),
                state_before=RiskState.model_validate(json.loads(row["state_before_json"])),
                state_after=RiskState.model_validate(json.loads(row["state_after_json"])),
            )
        )
    return records
