"""Sizing in float for speed, then exact Decimal quantisation that re-checks the binding limits,
so float rounding can never spend a cent more than a limit allows."""

from __future__ import annotations

import math
from decimal import ROUND_FLOOR, Context, Decimal
from typing import NamedTuple

from risk.models import PositionView, ReasonCode

EXACT = Context(prec=1000, rounding=ROUND_FLOOR)
"""Any finite float fits on a tick grid in 1000 digits, so products are exact; divisions round down."""

_NEAR = 1.0 + 1e-9  # caps within this factor of the final size are re-checked in Decimal


class Cap(NamedTuple):
    """A limit expressed as room (quote currency, or base units when unit is 1) per unit."""

    code: ReasonCode
    room: float
    unit: float
    room_exact: Decimal | None  # the exact room when known (exchange filters), else the float's
    unit_exact: Decimal
    what: str  # a template for `setting`, formatted only when the cap is reported
    setting: object

    def describe(self) -> str:
        return self.what.format(self.setting)


class Fitted(NamedTuple):
    quantity: Decimal
    before: float  # the float size under every cap, before rounding to the step
    rounded: bool  # whether rounding to the step changed it, or an exact re-check shrank it
    binding: list[tuple[Cap, float]]  # the caps that shrank the size, with the size each allowed


class NoRoom(NamedTuple):
    cap: Cap


def exact(value: float) -> Decimal:
    """The shortest decimal that round-trips the float, so 0.3 stays 0.3 and not 0.2999…"""
    return Decimal(repr(value))


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    if step <= 0:
        return value
    return EXACT.multiply(EXACT.divide_int(value, step), step)


def ceil_to(value: Decimal, step: Decimal) -> Decimal:
    floored = floor_to(value, step)
    return floored if floored >= value else EXACT.add(floored, step)


def _floor_quotient(room: Decimal, unit: Decimal, step: Decimal) -> Decimal:
    """floor_to(room / unit, step) without the 1000-digit quotient: one exact integer division
    by unit * step gives the same multiple of the step."""
    if step <= 0:
        return EXACT.divide(room, unit)
    return EXACT.multiply(EXACT.divide_int(room, EXACT.multiply(unit, step)), step)


def atr_stop(entry: float, atr: float | None, multiple: float) -> float | None:
    """A long's stop `multiple` ATRs below the entry; None when ATR is unknown or too large."""
    if atr is None or not (math.isfinite(atr) and atr > 0):
        return None
    stop = entry - multiple * atr
    return stop if stop > 0 else None


def risk_quantity(equity: float, risk_pct: float, stop_distance: float) -> float:
    """The size that loses `risk_pct` of equity if the stop is hit."""
    return equity * risk_pct / stop_distance


def gross_exposure(
    positions: dict[str, PositionView], symbol: str, last_price: float
) -> float | None:
    """Open positions at market (this symbol) or cost (others, whose price the gate lacks);
    None when a position is garbage, since exposure then cannot be known."""
    total = 0.0
    for name, position in positions.items():
        mark = last_price if name == symbol else position.avg_price
        value = abs(position.quantity) * mark
        if not (math.isfinite(value) and value >= 0):
            return None
        total += value
    return total


def fit(quantity: float, caps: list[Cap], step: Decimal) -> Fitted | NoRoom:
    """Shrink `quantity` under every cap, round down to the step, and re-check the near-binding
    caps exactly so the Decimal result never exceeds any of them."""
    binding: list[tuple[Cap, float]] = []
    limits: list[tuple[float, Cap]] = []
    for cap in caps:
        room = cap.room / cap.unit
        if not room > 0:
            return NoRoom(cap)
        if room < quantity:
            quantity = room
            binding.append((cap, room))
        limits.append((room, cap))
    unrounded = exact(quantity)
    qty = floor_to(unrounded, step)
    rounded = qty != unrounded
    for room, cap in limits:
        if room > quantity * _NEAR:
            continue
        room_exact = cap.room_exact if cap.room_exact is not None else exact(cap.room)
        if EXACT.multiply(qty, cap.unit_exact) > room_exact:
            qty = _floor_quotient(room_exact, cap.unit_exact, step)
            rounded = True
    return Fitted(qty, quantity, rounded, binding)
