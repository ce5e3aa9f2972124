"""Exchange symbol rules seen from the venue: which filter an order breaks, as a reason code."""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from market.models import SymbolRules
from risk.models import ReasonCode

_ZERO: Final = Decimal(0)  # a Decimal compares with a Decimal in half the time it takes with an int


def rule_breaches(
    rules: SymbolRules,
    quantity: Decimal,
    price: Decimal,
    *,
    priced: tuple[Decimal | None, ...] = (),
) -> list[tuple[ReasonCode, str]]:
    """Breaches of stepSize, min/maxQty and notional at `price`, and of tickSize for the order's
    own `priced` levels (limit, stop, stop-loss, take-profit; None: unused). Nothing is rounded."""
    found: list[tuple[ReasonCode, str]] = []
    filters = rules.__dict__  # read once: a model's attribute read is slower than a dict's
    step_size, tick_size = filters["step_size"], filters["tick_size"]
    min_qty, max_qty = filters["min_qty"], filters["max_qty"]
    min_notional, max_notional = filters["min_notional"], filters["max_notional"]
    if _off_grid(quantity, step_size):
        found.append(
            (ReasonCode.STEP_SIZE, f"quantity {quantity} is not a multiple of {step_size}")
        )
    for level in priced:
        if level is not None and _off_grid(level, tick_size):
            found.append((ReasonCode.TICK_SIZE, f"price {level} is not a multiple of {tick_size}"))
    if quantity < min_qty:
        found.append((ReasonCode.MIN_QTY, f"quantity {quantity} is below minQty {min_qty}"))
    if quantity > max_qty:
        found.append((ReasonCode.MAX_QTY, f"quantity {quantity} is above maxQty {max_qty}"))
    notional = quantity * price
    if notional < min_notional:
        found.append(
            (
                ReasonCode.MIN_NOTIONAL,
                f"notional {notional:.8f} is below minNotional {min_notional}",
            )
        )
    if max_notional is not None and notional > max_notional:
        found.append(
            (
                ReasonCode.MAX_ORDER_NOTIONAL,
                f"notional {notional:.8f} is above maxNotional {max_notional}",
            )
        )
    return found


def _off_grid(value: Decimal, step: Decimal) -> bool:
    return step > _ZERO and value % step != _ZERO
