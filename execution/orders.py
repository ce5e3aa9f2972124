"""What the simulated venue holds and reports: working orders, brackets, fills and rejections."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from execution.fees import Liquidity
from risk.models import OrderType

_SHORT_BELOW: Final = 2.0**19
"""Under 2**19 a float's half-ulp is under half of 1e-10, and times 1e10 it is an exact integer
below 2**53: what makes `snap`'s shortcut exact."""


def snap(quantity: float) -> float:
    """Quantities live on exchange step grids (>= 1e-8), so rounding to 10 decimals removes the
    float dust of sums and differences without moving any real quantity: a position is flat
    when it is exactly 0, never 1e-15 BTC that no order could close. (A symbol without
    filters has no grid: there it moves a quantity by under 5e-11 units.)

    `round(x, 10)` writes x out in decimal and reads it back (~0.3 us), and most quantities
    have no dust: when x is already the nearest float to a decimal n / 1e10 (n an integer,
    1e10 exact, the division correctly rounded), that decimal is x's rounding to 10 places
    and round() would return x itself, so x is returned as it is (a property test holds the
    two equal, bit for bit). Any integer n proves it, so n is x * 1e10 to the nearest, ties
    away from zero, by `int()`: compiled, a plain C conversion, where `round()` is a call."""
    if -_SHORT_BELOW < quantity < _SHORT_BELOW:
        scaled = quantity * 1e10
        n = int(scaled + 0.5) if scaled >= 0.0 else -int(0.5 - scaled)
        if n / 1e10 == quantity:
            return quantity
    return round(quantity, 10)


def fixed_cost(side: int, base: float, bps: float) -> float:
    """The taker price `bps` basis points against the order from `base` (side +1 buys, -1
    sells): FixedBps.price, here where the compiled simulator prices a fill without calling it."""
    return base * (1.0 + side * bps / 10_000)


class ExitReason(StrEnum):
    """Why a position was reduced; reports group trades by these, so never rename one."""

    SIGNAL = "signal"
    STOP_LOSS = "stop_loss"
    TRAILING_STOP = "trailing_stop"
    TAKE_PROFIT = "take_profit"
    END_OF_DATA = "end_of_data"


@dataclass(slots=True, init=False)  # the __init__ below: compiled, not generated at import
class Fill:
    """One execution; side +1 buy, -1 sell; fee in quote currency."""

    order_id: str
    symbol: str
    side: int
    quantity: float
    price: float
    fee: float
    liquidity: Liquidity
    bar: int
    time_ms: int
    reason: ExitReason

    def __init__(
        self,
        order_id: str,
        symbol: str,
        side: int,
        quantity: float,
        price: float,
        fee: float,
        liquidity: Liquidity,
        bar: int,
        time_ms: int,
        reason: ExitReason,
    ) -> None:
        self.order_id = order_id
        self.symbol = symbol
        self.side = side
        self.quantity = quantity
        self.price = price
        self.fee = fee
        self.liquidity = liquidity
        self.bar = bar
        self.time_ms = time_ms
        self.reason = reason


@dataclass(slots=True, frozen=True)
class Rejection:
    """An order the venue refused (exchange rules, balance); counted by code, never repaired."""

    order_id: str
    symbol: str
    code: str
    message: str
    bar: int


@dataclass(frozen=True, slots=True)
class Pending:
    """An order the venue holds but has not filled: it locks cash (buys) and will move the
    position, so the gate must count it before sizing the next signal."""

    symbol: str
    side: int
    quantity: float
    price: float | None  # a limit or stop level; None: at the market


@dataclass(slots=True, init=False)  # the __init__ below: compiled, not generated at import
class WorkingOrder:
    """An accepted order still (partly) open. `armed`: its stop has triggered; `active_from`: the
    first bar it may fill inside (a stop-limit that gapped past its limit waits a bar)."""

    order_id: str
    symbol: str
    side: int
    kind: OrderType
    remaining: float
    limit: float | None
    stop: float | None
    stop_loss: float | None
    take_profit: float | None
    submitted_bar: int
    active_from: int
    reason: ExitReason = ExitReason.SIGNAL
    trail_pct: float | None = None
    reduce_only: bool = False
    armed: bool = False
    last_fill_bar: int = -1

    def __init__(
        self,
        order_id: str,
        symbol: str,
        side: int,
        kind: OrderType,
        remaining: float,
        limit: float | None,
        stop: float | None,
        stop_loss: float | None,
        take_profit: float | None,
        submitted_bar: int,
        active_from: int,
        reason: ExitReason = ExitReason.SIGNAL,
        trail_pct: float | None = None,
        reduce_only: bool = False,
        armed: bool = False,
        last_fill_bar: int = -1,
    ) -> None:
        self.order_id = order_id
        self.symbol = symbol
        self.side = side
        self.kind = kind
        self.remaining = remaining
        self.limit = limit
        self.stop = stop
        self.stop_loss = stop_loss
        self.take_profit = take_profit
        self.submitted_bar = submitted_bar
        self.active_from = active_from
        self.reason = reason
        self.trail_pct = trail_pct
        self.reduce_only = reduce_only
        self.armed = armed
        self.last_fill_bar = last_fill_bar


@dataclass(slots=True, init=False)  # the __init__ below: compiled, not generated at import
class Bracket:
    """Stop-loss and take-profit guarding a symbol's whole position (one-cancels-other), and a
    trailing stop: `trail_stop` is the level in force at bar `trail_next`, having seen the highs
    of the bars before it; later bars' highs ratchet it up (execution.fills.trail_levels)."""

    symbol: str
    stop_loss: float | None
    take_profit: float | None
    created_bar: int
    active_from: int
    trail_pct: float | None = None
    trail_stop: float | None = None
    trail_next: int = 0

    def __init__(
        self,
        symbol: str,
        stop_loss: float | None,
        take_profit: float | None,
        created_bar: int,
        active_from: int,
        trail_pct: float | None = None,
        trail_stop: float | None = None,
        trail_next: int = 0,
    ) -> None:
        self.symbol = symbol
        self.stop_loss = stop_loss
        self.take_profit = take_profit
        self.created_bar = created_bar
        self.active_from = active_from
        self.trail_pct = trail_pct
        self.trail_stop = trail_stop
        self.trail_next = trail_next
