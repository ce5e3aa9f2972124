"""The limits in force, in a few readable lines: `agent-trade status` and the UI show them, so a
user can see that the number they configured is the one the gate applies."""

from __future__ import annotations

from typing import Any

from risk.limits import RiskLimits, SourceLimits
from risk.models import SignalSource


def _value(name: str, value: Any) -> str:
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name.endswith("_pct"):
        return f"{value * 100:g}%"
    return f"{value:,g}" if isinstance(value, int | float) else str(value)


def _pairs(values: dict[str, Any]) -> str:
    return " · ".join(f"{name} {_value(name, value)}" for name, value in values.items())


def limit_lines(limits: RiskLimits, source: SignalSource) -> list[str]:
    """One line for the account-wide breakers, one for the source whose signals this account
    trades (the agent's and the chat's `ai`, a classic strategy's `strategy`)."""
    account = limits.model_dump(exclude={s.value for s in SignalSource} | {"fee_rate"})
    own: SourceLimits = limits.for_source(source)
    return [f"account: {_pairs(account)}", f"{source.value}: {_pairs(own.model_dump())}"]
