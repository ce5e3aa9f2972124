"""Sizing in float for speed, then exact Decimal quantisation that re-checks the binding limits,
so float rounding can never spend a cent more than a limit allows."""

from __future__ import annotations

import math
import sys
from decimal import ROUND_FLOOR, Context, Decimal
from typing import Any, Final, NamedTuple

from risk.models import ReasonCode
from risk.views import PositionFacts

EXACT: Final = Context(prec=1000, rounding=ROUND_FLOOR)
"""Any finite float fits on a tick grid in 1000 digits, so products are exact; divisions round down."""
# Bound once: a Context looks each method up through its own getattr, on the hot path every call.
exact_multiply: Final = EXACT.multiply
_divide_int: Final = EXACT.divide_int
_divide: Final = EXACT.divide
_add: Final = EXACT.add

_NEAR: Final = 1.0 + 1e-9  # caps within this factor of the final size are re-checked in Decimal
_GRID_MARGIN: Final = 1e-12
"""A float this far (relative) from every grid line has the same floor as its exact decimal:
the float route errs by under 1e-15 (the float's own rounding, the step's, one division)."""
_tuple_new: Final = tuple.__new__  # builds a NamedTuple without running its Python-level __new__
_GRID_SPAN: Final = 2.0**52  # beyond this many steps a float no longer counts steps exactly
_SHORT: Final = 1e15
"""Decimals of at most 15 significant digits that differ never round to the same float."""
_EXACT_SCALE: Final = 10**22  # the largest power of ten a float holds exactly
_NORMAL: Final = sys.float_info.min  # below it floats thin out and the digit argument fails
_INF: Final = math.inf


class Cap(NamedTuple):
    """A limit expressed as room (quote currency, or base units when unit is 1) per unit."""

    code: ReasonCode
    room: float
    unit: float
    room_exact: Decimal | None  # the exact room when known (exchange filters), else the float's
    unit_exact: Decimal
    what: str  # a template for `setting`, formatted only when the cap is reported
    setting: Any  # not `object`: mypyc cannot build a NamedTuple with an `object` field

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


def exact_text(value: float) -> str:
    """`str(exact(value))` without building the decimal: a float's repr in plain notation
    (1e-4 <= |value| < 1e16) already reads as that decimal, digit for digit."""
    text = repr(value)
    return str(Decimal(text)) if "e" in text or "n" in text else text  # 1e-05, inf, nan


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    if step <= 0:
        return value
    return exact_multiply(_divide_int(value, step), step)


def ceil_to(value: Decimal, step: Decimal) -> Decimal:
    floored = floor_to(value, step)
    return floored if floored >= value else _add(floored, step)


def _steps_below(value: float, step_f: float) -> int | None:
    """How many whole steps fit under `value`, when float arithmetic can tell for sure: the
    value lies clearly between two grid lines. None near a line (or for odd inputs): then
    only the exact decimal can decide."""
    ratio = value / step_f if step_f > 0.0 else -1.0
    if not 0.0 <= ratio < _GRID_SPAN:
        return None
    steps = int(ratio)
    margin = ratio * _GRID_MARGIN + _GRID_MARGIN
    if margin < ratio - steps < 1.0 - margin:
        return steps
    return None


class Grid:
    """An exchange step (tickSize, stepSize) with what the float shortcuts read, worked out
    once per symbol's rules: the step as a float, and as an integer over a power of ten with
    both parts exact floats ((inf, 1) when floats cannot hold them exactly)."""

    __slots__ = ("scale", "step", "step_f", "units")

    def __init__(self, step: Decimal) -> None:
        self.step = step
        self.step_f = float(step)
        self.units, self.scale = math.inf, 1.0
        _, digits, exponent = step.as_tuple()
        if isinstance(exponent, str):  # NaN or infinity: never a grid line
            return
        units = int("".join(map(str, digits)))
        units, scale = (units * 10**exponent, 1) if exponent >= 0 else (units, 10**-exponent)
        if units < _SHORT and scale <= _EXACT_SCALE:
            self.units, self.scale = float(units), float(scale)


def on_grid(value: float, grid: Grid) -> Decimal | None:
    """`exact(value)` as a whole number of steps, when the float is provably that grid line;
    None otherwise (or when unsure). Proof: the line n * step is the integer n * units over a
    power of ten, both exact floats (under 10**15 and 10**22), so their float quotient is the
    line's correctly rounded float, and an equal float is the line's nearest; a line of at
    most 15 significant digits is then the float's shortest round-trip decimal, as no other
    decimal that short rounds to the same float. This skips the float's decimal text (a held
    position, a round price: the common exit). Any whole number of steps the equality holds
    for is the line, so the nearest is taken by `int()` (ties up): compiled, a C conversion,
    where `round()` is a call."""
    step_f = grid.step_f
    if not (step_f > 0.0 and value >= _NORMAL):
        return None
    ratio = value / step_f
    if not ratio < _GRID_SPAN:
        return None
    steps = int(ratio + 0.5)
    units = grid.units * steps
    if not (units < _SHORT and units / grid.scale == value):
        return None
    return exact_multiply(steps, grid.step)


def exact_on(value: float, grid: Grid) -> Decimal:
    """`exact(value)`, read off the grid when the float provably is one of its lines
    (`on_grid`): a market's prices mostly are, and that skips the float's decimal text."""
    line = on_grid(value, grid)
    return exact(value) if line is None else line


def _floor_exact(value: float, grid: Grid) -> tuple[Decimal, bool]:
    """`floor_to(exact(value), step)` and whether it moved the value."""
    line = on_grid(value, grid)
    if line is not None:
        return line, False
    raw = exact(value)
    floored = floor_to(raw, grid.step)
    return floored, floored != raw


def _line(steps: int, grid: Grid) -> tuple[Decimal, bool, float]:
    """The grid line `steps` steps up, moved to, with its float: as in `on_grid`, the integer
    steps * units and the power of ten are exact floats (under 10**15 and 10**22), so their
    quotient is the decimal's correctly rounded float, found without the decimal's text."""
    line = exact_multiply(steps, grid.step)
    units = grid.units * steps
    return line, True, units / grid.scale if units < _SHORT else float(line)


def floor_float(value: float, grid: Grid) -> tuple[Decimal, bool, float]:
    """`_floor_exact`, by float arithmetic when the value lies clearly between grid lines (so
    it cannot be on one and moves): that skips the float's decimal text, the costliest step.
    The rounded decimal's float comes third."""
    steps = _steps_below(value, grid.step_f)
    if steps is not None:
        return _line(steps, grid)
    floored, moved = _floor_exact(value, grid)
    return floored, moved, float(floored) if moved else value


def ceil_float(value: float, grid: Grid) -> tuple[Decimal, bool, float]:
    """`ceil_to(exact(value), step)`, whether it moved the value and its float, by the same
    float shortcut as `floor_float`."""
    steps = _steps_below(value, grid.step_f)
    if steps is not None:
        return _line(steps + 1, grid)
    line = on_grid(value, grid)
    if line is not None:
        return line, False, value
    raw = exact(value)
    ceiled = ceil_to(raw, grid.step)
    moved = ceiled != raw
    return ceiled, moved, float(ceiled) if moved else value


def _floor_quotient(room: Decimal, unit: Decimal, step: Decimal) -> Decimal:
    """floor_to(room / unit, step) without the 1000-digit quotient: one exact integer division
    by unit * step gives the same multiple of the step."""
    if step <= 0:
        return _divide(room, unit)
    return exact_multiply(_divide_int(room, exact_multiply(unit, step)), step)


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
    positions: dict[str, PositionFacts], symbol: str, last_price: float
) -> float | None:
    """Open positions at market (this symbol) or cost (others, whose price the gate lacks);
    None when a position is garbage, since exposure then cannot be known."""
    total = 0.0
    for name, position in positions.items():
        mark = last_price if name == symbol else position.avg_price
        value = abs(position.quantity) * mark
        if not 0.0 <= value < _INF:  # finite, without math.isfinite's call
            return None
        total += value
    return total


def out_of_reach(room: float, unit: float, quantity: float) -> bool:
    """Whether a cap this far above `quantity` leaves `fit` unchanged: it can neither bind nor
    come near enough to be re-checked (`fit` only ever shrinks the quantity), so a caller may
    leave it out."""
    return room / unit > quantity * _NEAR


def fit(quantity: float, caps: list[Cap], grid: Grid) -> Fitted | NoRoom:
    """Shrink `quantity` under every cap, round down to the step, and re-check the near-binding
    caps exactly so the Decimal result never exceeds any of them."""
    binding: list[tuple[Cap, float]] = []
    for cap in caps:
        room = cap.room / cap.unit
        if not room > 0:
            return NoRoom(cap)
        if room < quantity:
            quantity = room
            binding.append((cap, room))
    step = grid.step
    steps = _steps_below(quantity, grid.step_f)
    if steps is not None:
        # Rounded down clearly below the size, by far more than float error, so the order is
        # under every cap's exact room as well: nothing is near enough to re-check.
        return _tuple_new(Fitted, (exact_multiply(steps, step), quantity, True, binding))
    qty, rounded = _floor_exact(quantity, grid)
    for cap in caps:
        if cap.room / cap.unit > quantity * _NEAR:
            continue
        room_exact = cap.room_exact if cap.room_exact is not None else exact(cap.room)
        if exact_multiply(qty, cap.unit_exact) > room_exact:
            qty = _floor_quotient(room_exact, cap.unit_exact, step)
            # With no grid (step 0) this is the cap's exact room, not a rounding to a step.
            rounded = rounded or step > 0
    return _tuple_new(Fitted, (qty, quantity, rounded, binding))
