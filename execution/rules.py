"""Exchange symbol rules seen from the venue: which filter an order breaks, as a reason code."""

from __future__ import annotations

from decimal import Decimal

from market.models import SymbolRules
from risk.models import ReasonCode


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
    if _off_grid(quantity, rules.step_size):
        found.append(
            (ReasonCode.STEP_SIZE, f"quantity {quantity} is not a multiple of {rules.step_size}")
        )
    for level in priced:
        if level is not None and _off_grid(level, rules.tick_size):
            found.append(
                (ReasonCode.TICK_SIZE, f"price {level} is not a multiple of {rules.tick_size}")
            )
    if quantity < rules.min_qty:
        found.append((ReasonCode.MIN_QTY, f"quantity {quantity} is below minQty {rules.min_qty}"))
    if quantity > rules.max_qty:
        found.append((ReasonCode.MAX_QTY, f"quantity {quantity} is above maxQty {rules.max_qty}"))
    notional = quantity * price
    if notional < rules.min_notional:
        found.append(
            (
                ReasonCode.MIN_NOTIONAL,
                f"notional {notional:.8f} is below minNotional {rules.min_notional}",
            )
        )
    if rules.max_notional is not None and notional > rules.max_notional:
        found.append(
            (
                ReasonCode.MAX_ORDER_NOTIONAL,
                f"notional {notional:.8f} is above maxNotional {rules.max_notional}",
            )
        )
    return found


def _off_grid(value: Decimal, step: Decimal) -> bool:
    return step > 0 and value % step != 0
