"""Exchange symbol rules seen from the venue: which filter an order breaks, as a reason code."""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from market.models import SymbolRules
from risk.models import ReasonCode
from risk.plain import Filters

_ZERO: Final = Decimal(0)  # a Decimal compares with a Decimal in half the time it takes with an int
_ABOVE: Final = 1.0 + 1e-9
_BELOW: Final = 1.0 - 1e-9


def rule_breaches(
    rules: SymbolRules,
    quantity: Decimal,
    price: Decimal | None,
    *,
    priced: tuple[Decimal | None, ...] = (),
) -> list[tuple[ReasonCode, str]]:
    """Breaches of stepSize, min/maxQty and notional at `price` (None: the caller has shown the
    notional inside both filters, `within_notional`), and of tickSize for the order's own
    `priced` levels (limit, stop, stop-loss, take-profit; None: unused). Nothing is rounded."""
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
    if price is None:
        return found
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


def within_notional(filters: Filters, quantity: float, price: float) -> bool:
    """Whether `quantity` at `price` is inside minNotional and maxNotional by far more than
    float error (a float product errs by under 1e-15 from the decimals'), so no exact decimal
    of the price is needed to tell: a venue's market order at the open, nearly always."""
    notional = quantity * price
    ceiling = filters.max_notional_f
    return notional > filters.min_notional_f * _ABOVE and (
        ceiling is None or notional < ceiling * _BELOW
    )


def _off_grid(value: Decimal, step: Decimal) -> bool:
    return step > _ZERO and value % step != _ZERO
