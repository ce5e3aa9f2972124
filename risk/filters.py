"""A symbol's exchange filters as the gate reads them on every signal: the floats and the
fixed maxQty cap are derived once per rules object (a run keeps one per symbol), not once per
signal."""

from __future__ import annotations

from decimal import Decimal

from market.models import SymbolRules
from risk.models import ReasonCode
from risk.sizing import Cap

_ONE = Decimal(1)
_KEPT = 256  # rules objects remembered; a long-lived process meets few, so a full reset is fine


class Filters:
    """The rules plus what the gate derives from them."""

    __slots__ = ("max_notional_f", "max_qty_cap", "rules", "step_f", "tick_f")

    def __init__(self, rules: SymbolRules) -> None:
        self.rules = rules
        self.tick_f = float(rules.tick_size)
        self.step_f = float(rules.step_size)
        self.max_notional_f = None if rules.max_notional is None else float(rules.max_notional)
        self.max_qty_cap = Cap(
            ReasonCode.MAX_QTY,
            float(rules.max_qty),
            1.0,
            rules.max_qty,
            _ONE,
            "exchange maxQty {}",
            rules.max_qty,
        )


_known: dict[int, Filters] = {}


def filters_of(rules: SymbolRules) -> Filters:
    """The filters of this very rules object (frozen, so they cannot go stale); each entry
    holds its rules, so an id is never reused while it is remembered."""
    found = _known.get(id(rules))
    if found is not None and found.rules is rules:
        return found
    if len(_known) >= _KEPT:
        _known.clear()
    found = _known[id(rules)] = Filters(rules)
    return found
