"""What an unattended decision's prompt states up front (the market snapshot, the position, the
limits and the account's trading state), so one model call can end in submit_signal without
spending a round trip on tools that would only return the same figures."""

from __future__ import annotations

import json
import re
from typing import Any

from risk.models import SignalSource
from tools import ToolEnv
from tools.market import SymbolIn, get_market_snapshot

SNAPSHOT_LABEL = "Snapshot: "
_SNAPSHOT_LINE = re.compile(rf"^{SNAPSHOT_LABEL}(\{{.*\}})$", re.MULTILINE)
_SYMBOL_LINE = re.compile(r"Symbol: ([A-Z0-9]+)")
IN_HEADER = ("symbol", "interval", "as_of")  # the prompt's first line already says these


def snapshot_json(env: ToolEnv, symbol: str) -> str:
    """The snapshot as get_market_snapshot returns it (same figures, same rounding), less what
    the prompt's first line says."""
    snapshot = get_market_snapshot(env, SymbolIn(symbol=symbol))
    return json.dumps(
        snapshot.model_dump(mode="json", exclude_none=True, exclude=set(IN_HEADER)),
        separators=(",", ":"),
        ensure_ascii=False,
    )


def read_snapshot(prompt: str) -> dict[str, Any] | None:
    """The snapshot a decision prompt carries, for a model that reads it (the offline one)."""
    found, symbol = _SNAPSHOT_LINE.search(prompt), _SYMBOL_LINE.search(prompt)
    if found is None or symbol is None:
        return None
    return {"symbol": symbol.group(1), **json.loads(found.group(1))}


def describe_position(env: ToolEnv, symbol: str) -> str:
    if not env.stateful:
        return "n/a (stateless run: market data only)"
    held = env.portfolio().positions.get(symbol)
    if held is None or held.quantity == 0:
        return "nothing"
    return f"{held.quantity:g} {symbol} at an average {held.avg_price:g}"


def describe_limits(env: ToolEnv) -> str:
    """The gate's limits that shape an entry, in the units the signal uses, and whether the
    account may trade (ACTIVE; REDUCING: exits only; HALTED); a stateless run has no account."""
    own = env.limits.for_source(SignalSource.AI)
    parts = [f"size_pct<={own.max_position_pct:g}", f"min confidence {own.min_confidence:g}"]
    if env.stateful:
        parts.insert(0, f"account {env.risk_state().trading_state(env.now_ms).value}")
    if own.require_stop_loss:
        parts.append("stop_loss required")
    return ", ".join(parts)
