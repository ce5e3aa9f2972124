"""The trading loop's stored state, readable without importing the agent (status, halt, UI)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from config import Settings
from core.errors import UserError
from execution.corporate import rebuild_ledger
from execution.key_permissions import last_key_check
from execution.ledger import Ledger
from execution.paper import PaperCheckpoint
from execution.paper_records import load_account
from market.models import iso_ms
from risk.interventions import Action, Intervention, describe, history, intervene
from risk.limits import RiskLimits
from risk.limits_text import limit_lines
from risk.models import SignalSource
from risk.records import load_state
from risk.state import RiskState
from store.db import Store

MINUTE_MS = 60_000
CHAT_ACCOUNT = "chat"  # the UI chat's paper account (agent-ui --account picks another)
CHAT_STRATEGY = "chat"  # what trades a chat account: a person, through the chat's approvals
STALL_MARGIN_MS = 60_000  # beyond the feed's interval: a reconnect and backfill fit in it

LoopStatus = Literal["running", "stopped", "finished"]


class LastDecision(BaseModel):
    time: str
    symbol: str
    outcome: str
    action: str | None = None
    rationale: str | None = None
    order: str | None = None


class Waiting(BaseModel):
    """A running loop that waits for the market to open, as of its last heartbeat."""

    next_open_ms: int
    poll_every_ms: int  # a heartbeat is due at least this often, or the loop is stuck


class LoopState(BaseModel):
    """The loop's checkpoint: stored with every bar's orders and fills in one transaction."""

    account: str
    mode: str = "paper"
    strategy: str = "agent"  # what trades the account: "agent" or a classic strategy's spec
    status: LoopStatus = "running"
    pid: int | None = None
    initial_cash: float
    paper: PaperCheckpoint = Field(default_factory=PaperCheckpoint)
    decisions: int = 0
    outcomes: dict[str, int] = Field(default_factory=dict)
    vetoes: dict[str, int] = Field(default_factory=dict)
    last_decision: LastDecision | None = None
    last_error: str | None = None
    stop_reason: str | None = None
    feed: dict[str, int] = Field(default_factory=dict)
    wall_updated_ms: int = 0  # wall clock of the last commit: the loop's last progress
    bar_every_ms: int = MINUTE_MS  # wall time between bars (a fast replay's are shorter)
    limits: RiskLimits | None = None  # what the gate judges by; None for an older account
    currency: str = "USDT"  # what cash and equity are counted in: the symbols' quote (USD: stocks)
    waiting: Waiting | None = None  # the market is closed: progress is a heartbeat, not a bar

    @property
    def source(self) -> SignalSource:
        return SignalSource.AI if self.strategy == "agent" else SignalSource.STRATEGY


def wall_now_ms() -> int:
    return int(time.time() * 1000)


def stalled_since(state: LoopState, now_ms: int) -> int | None:
    """When a running loop last made progress, if that is longer ago than a bar (or, while it
    waits for the open, a heartbeat) plus the margin: it is alive but not moving, and must not
    read as running."""
    every = max(state.bar_every_ms, state.waiting.poll_every_ms if state.waiting else 0, 1)
    if state.wall_updated_ms and now_ms - state.wall_updated_ms > every + STALL_MARGIN_MS:
        return state.wall_updated_ms
    return None


def kill_switch_path(data_dir: Path, account: str) -> Path:
    """Touch this file (or run `agent-trade halt`) to halt the loop within one bar."""
    return data_dir / f"KILL-{account}"


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def account_status(store: Store, account: str, settings: Settings) -> dict[str, Any]:
    """What `agent-trade status` and the UI's Trading tab show: the account rebuilt from its
    fills, the loop's state, the risk state and the last decision."""
    stored = load_account(store, account)
    if stored.state_json is None:
        raise UserError(
            f"no trading account {account!r} in {store.shown}: start one with "
            f"`agent-trade --feed replay --account {account}`"
        )
    state = LoopState.model_validate_json(stored.state_json)
    ledger = Ledger(state.initial_cash)
    rebuild_ledger(ledger, stored.fills, stored.actions)
    marks = state.paper.marks
    equity = ledger.equity({s: marks.get(s, 0.0) for s, _ in ledger.held()})
    last = state.paper.last_open_time
    risk = load_state(store, risk_scope(account))
    now = (last + MINUTE_MS) if last is not None else 0
    status = state.status
    if status == "running" and not _alive(state.pid):
        status = "not running (ended without a clean stop: killed or crashed)"
    elif status == "running" and (since := stalled_since(state, wall_now_ms())) is not None:
        status = f"stalled since {iso_ms(since)} UTC: no bar for longer than the feed's interval"
    elif status == "running" and state.waiting is not None:
        status = (
            f"waiting for the open at {iso_ms(state.waiting.next_open_ms)} UTC: the market is "
            f"closed (last heartbeat {iso_ms(state.wall_updated_ms)} UTC)"
        )
    return {
        "account": account,
        "mode": state.mode,
        "strategy": state.strategy,
        "status": status,
        "stop_reason": state.stop_reason,
        "last_bar": None if last is None else iso_ms(last),
        "last_open_time": last,
        "bars": state.paper.bars,
        "trading_state": risk.trading_state(now).value,
        "locks": [lock.message for lock in risk.active_locks(now)],
        "kill_switch_file": kill_switch_path(settings.data_dir, account).exists(),
        "cash": round(ledger.cash, 2),
        "currency": state.currency,
        "positions": [
            {
                "symbol": s,
                "quantity": q,
                "avg_price": round(ledger.avg_price(s), 2),
                "mark": marks.get(s),
                "value": round(q * marks.get(s, 0.0), 2),
            }
            for s, q in ledger.held()
        ],
        "equity": round(equity, 2),
        "pnl": round(equity - state.initial_cash, 2),
        "pnl_pct": round((equity / state.initial_cash - 1) * 100, 3),
        "initial_cash": state.initial_cash,
        "fills": len(stored.fills),
        "orders": len(stored.orders),
        "decisions": state.decisions,
        "outcomes": state.outcomes,
        "vetoes": state.vetoes,
        "last_decision": None if state.last_decision is None else state.last_decision.model_dump(),
        "last_error": state.last_error,
        "feed": state.feed,
        "key_permissions": last_key_check(store, account),
        "interventions": last_interventions(store, risk_scope(account)),
        "portfolio": {
            "usdt_usd": settings.portfolio.usdt_usd,
            "accounts": settings.portfolio.accounts
            if account in settings.portfolio.accounts
            else [],
        },
        "limits": None if state.limits is None else state.limits.model_dump(mode="json"),
        "limits_text": (
            ["not recorded: this account last ran before limits were stored"]
            if state.limits is None
            else limit_lines(state.limits, state.source)
        ),
    }


def halt_account(
    store: Store, data_dir: Path, account: str, reason: str, now_ms: int, who: str
) -> Path:
    """HALTED in the store (a stopped loop starts halted) and the kill-switch file (a running
    loop sees it within one bar), on record with who and why."""
    path = kill_switch_path(data_dir, account)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reason + "\n")
    step = Intervention(
        scope=risk_scope(account), action="halt", who=who, reason=reason, at_ms=now_ms
    )
    intervene(store, step)
    return path


def clear_account(
    store: Store,
    settings: Settings,
    account: str | None,
    action: Action,
    who: str,
    reason: str,
    now_ms: int,
) -> tuple[Intervention, RiskState]:
    """A person's resume or drawdown reset of a loop's account (an unknown one is a UserError)
    or, with no account, of the chat desk; recorded, and applied by a running loop."""
    if account is None:
        scope, equity = CHAT_DESK_SCOPE, None
    else:
        equity = account_status(store, account, settings)["equity"]
        scope = risk_scope(account)
        if action == "resume":
            kill_switch_path(settings.data_dir, account).unlink(missing_ok=True)
    step = Intervention(
        scope=scope, action=action, who=who, reason=reason, at_ms=now_ms, equity=equity
    )
    record_id, _before, after = intervene(store, step)
    return step.model_copy(update={"id": record_id}), after


def last_interventions(store: Store, scope: str, count: int = 3) -> list[str]:
    return [describe(step) for step in history(store, scope)[-count:]]


def risk_scope(account: str) -> str:
    return f"trade:{account}"


CHAT_DESK_SCOPE = risk_scope(CHAT_ACCOUNT)


def live_accounts(store: Store) -> list[str]:
    """Accounts whose loop trades real money: a server must not open without a login to them."""
    rows = store.rows("SELECT account, state_json FROM trading_loops")
    return sorted(a for a, raw in rows if LoopState.model_validate_json(raw).mode == "live")


def loop_report(
    store: Store, settings: Settings, account: str | None, chat_account: str
) -> dict[str, Any]:
    """One loop's status for the chat's `get_loop_status`: the named account, or the loop that
    committed last. The chat's own account is not a loop."""
    rows = store.rows("SELECT account, state_json FROM trading_loops")
    loops = {}
    for name, raw in rows:
        state = LoopState.model_validate_json(raw)
        if name != chat_account and state.strategy != CHAT_STRATEGY:
            loops[name] = state.wall_updated_ms
    if not loops:
        raise UserError("no autonomous loop has run yet: start one with `agent-trade`")
    if account is not None and account not in loops:
        raise UserError(f"no loop account {account!r}: the loops are {', '.join(sorted(loops))}")
    chosen = account or max(loops, key=lambda name: (loops[name], name))
    st = account_status(store, chosen, settings)
    return {
        **st,
        "equity_usdt": st["equity"],
        "pnl_usdt": st["pnl"],
        "positions": [{**p, "value_usdt": p["value"]} for p in st["positions"]],
        "other_accounts": sorted(set(loops) - {chosen}),
    }
