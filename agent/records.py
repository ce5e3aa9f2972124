"""Decision records (DESIGN invariant 4): every decision, including an abstain, is stored with
what went in (hash, model, endpoint, prompt version) and everything that came out.

They are written by the driver's own statements (like a saved run, backtest/runs.py), so the
records, which every agent command imports before its first model call, load neither
SQLAlchemy nor SQLModel: a cold agent backtest sends its first requests 0.2-0.3 s sooner.
Reading them back does use Core, imported then."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from store.db import Store

if TYPE_CHECKING:
    from sqlalchemy import Connection

Outcome = Literal[
    "signal", "hold", "abstain", "approved", "vetoed", "rejected", "answered", "halted"
]
"""`halted`: decided ahead of the runner (agent-backtest), then never gated: the account was
halted at that bar (the verdict names the locks)."""


class LLMCallRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    cache_key: str
    model: str
    cached: bool
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    cost_usd: float | None  # None: n/a, the endpoint's price is unknown
    finish_reason: str | None = None


class ToolCallRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    arguments: str
    ok: bool
    error: str | None = None
    duration_ms: float = 0.0


class DecisionRecord(BaseModel):
    """JSON all the way down, so it is stored, compared and shown without custom encoders."""

    decision_id: str
    run_id: str
    mode: str
    symbol: str
    decided_ms: int
    outcome: Outcome
    model: str
    base_url: str
    prompt_version: str
    inputs_sha256: str
    llm_calls: list[LLMCallRecord] = Field(default_factory=list)
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    signal: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None
    order: dict[str, Any] | None = None
    execution: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None
    abstain: dict[str, Any] | None = None
    answer: str | None = None
    samples: dict[str, Any] | None = None  # --samples K: the vote (agent/samples.py)
    blocked: dict[str, Any] | None = None  # a loop's veto or clamp, for its ledger


def save_decisions(store: Store, records: list[DecisionRecord]) -> int:
    """Insert or replace by decision id in one transaction (a rerun replaces its own rows)."""
    if not records:
        return 0
    mark = "?" if store.dialect == "sqlite" else "%s"  # sqlite3's paramstyle, psycopg's
    with store.driver() as conn:
        cursor = conn.cursor()
        for sql, params in _statements(records, mark):
            (cursor.executemany if isinstance(params, list) else cursor.execute)(sql, params)
    return len(records)


def write_decisions(conn: Connection, records: list[DecisionRecord]) -> int:
    """`save_decisions` inside the caller's transaction (the loop's bar commit)."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    for sql, params in _statements(records, mark):
        conn.exec_driver_sql(sql, params)
    return len(records)


_COLUMNS = (
    "decision_id",
    "run_id",
    "mode",
    "symbol",
    "decided_ms",
    "outcome",
    "model",
    "base_url",
    "prompt_version",
    "inputs_sha256",
)


def _statements(records: list[DecisionRecord], mark: str) -> Iterator[tuple[str, Any]]:
    """The deletes of the records' ids (500 a statement, a tuple each), then one INSERT of
    all of them (a list of rows, for executemany) into `DecisionRow`'s columns (the table
    store/migrations.py made), in `mark`'s paramstyle."""
    if not records:
        return
    ids = [r.decision_id for r in records]
    for start in range(0, len(ids), 500):
        chunk = tuple(ids[start : start + 500])
        yield (
            f"DELETE FROM decisions WHERE decision_id IN ({', '.join([mark] * len(chunk))})",
            chunk,
        )
    columns = (*_COLUMNS, "record_json")
    rows = [(*(getattr(r, c) for c in _COLUMNS), r.model_dump_json()) for r in records]
    values = ", ".join([mark] * len(columns))
    yield f"INSERT INTO decisions ({', '.join(columns)}) VALUES ({values})", rows


def loop_run_id(account: str) -> str:
    """The run id under which a trading loop records its account's decisions."""
    return f"trade-{account}"


def load_decisions(
    store: Store,
    run_id: str | None = None,
    limit: int | None = None,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> list[DecisionRecord]:
    """Newest last; a run's decisions (made in [since_ms, until_ms) when given), or the latest
    `limit` of them."""
    from sqlalchemy import select

    from store.tables import DecisionRow

    stmt = select(DecisionRow.record_json)
    if run_id is not None:
        stmt = stmt.where(DecisionRow.run_id == run_id)
    if since_ms is not None:
        stmt = stmt.where(DecisionRow.decided_ms >= since_ms)
    if until_ms is not None:
        stmt = stmt.where(DecisionRow.decided_ms < until_ms)
    stmt = stmt.order_by(DecisionRow.decided_ms.desc(), DecisionRow.decision_id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).scalars().all()
    return [DecisionRecord.model_validate(json.loads(raw)) for raw in reversed(rows)]
