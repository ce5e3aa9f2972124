"""What an account did, read back from its SQLite store: what two runs that must agree (a
restarted one and an uninterrupted one) are compared by."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path


def query(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def account_record(path: Path) -> dict:
    """Every decision (its inputs, signal, verdict and order), every order with its client id,
    the fills, the gate's verdicts, the risk state and the equity and cash at every bar. Timings and the
    per-process seal are left out: they differ between any two runs."""

    def unsealed(order: dict | None) -> dict | None:
        return order and {k: v for k, v in order.items() if k != "seal"}

    decisions = []
    for (raw,) in query(path, "SELECT record_json FROM decisions ORDER BY decision_id"):
        r = json.loads(raw)
        verdict = r["verdict"] and {**r["verdict"], "order": unsealed(r["verdict"].get("order"))}
        seen = (r["decision_id"], r["outcome"], r["inputs_sha256"], r["signal"], verdict)
        decisions.append((*seen, unsealed(r["order"]), r["abstain"]))
    orders = query(
        path, "SELECT client_order_id, decision_id, status, order_json FROM paper_orders"
    )
    return {
        "decisions": decisions,
        "orders": sorted((c, d, s, unsealed(json.loads(o))) for c, d, s, o in orders),
        "fills": query(path, "SELECT order_id, quantity, price, fee, time_ms FROM paper_fills"),
        "equity": query(path, "SELECT time_ms, equity, cash FROM equity_points ORDER BY time_ms"),
        "risk": query(path, "SELECT scope, state_json FROM risk_state ORDER BY scope"),
        "verdicts": query(path, "SELECT decision_id, kind, codes FROM risk_verdicts ORDER BY id"),
    }
