"""The account: one quote-currency cash balance shared by every symbol, fractional positions as
FIFO lots, realised and unrealised PnL, fees and closed trades. Float64 throughout."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from execution.orders import ExitReason, Fill, snap
from risk.models import ReasonCode


@dataclass(slots=True, init=False)  # the __init__ below: compiled, not generated at import
class Lot:
    """An open slice of a position at one entry price; `fee` is its not yet allocated entry fee,
    `dividends` the dividends it took (paid, if short) not yet allocated to a trade."""

    lot_id: int
    side: int
    quantity: float
    price: float
    fee: float
    bar: int
    time_ms: int
    dividends: float = 0.0

    def __init__(
        self,
        lot_id: int,
        side: int,
        quantity: float,
        price: float,
        fee: float,
        bar: int,
        time_ms: int,
        dividends: float = 0.0,
    ) -> None:
        self.lot_id = lot_id
        self.side = side
        self.quantity = quantity
        self.price = price
        self.fee = fee
        self.bar = bar
        self.time_ms = time_ms
        self.dividends = dividends


@dataclass(slots=True, init=False)  # the __init__ below: compiled, not generated at import
class TradeRecord:
    """A closed (or, at the end, marked) round trip of one lot; pnl is net of both fees and
    includes the dividends received (a short: paid) while it was open, as the cash did."""

    symbol: str
    side: str
    entry_bar: int
    exit_bar: int
    entry_time: int
    exit_time: int
    entry_price: float
    exit_price: float
    size: float
    pnl: float
    fees: float
    exit_reason: ExitReason
    lot_id: int
    exit_order: str
    dividends: float = 0.0

    def __init__(
        self,
        symbol: str,
        side: str,
        entry_bar: int,
        exit_bar: int,
        entry_time: int,
        exit_time: int,
        entry_price: float,
        exit_price: float,
        size: float,
        pnl: float,
        fees: float,
        exit_reason: ExitReason,
        lot_id: int,
        exit_order: str,
        dividends: float = 0.0,
    ) -> None:
        self.symbol = symbol
        self.side = side
        self.entry_bar = entry_bar
        self.exit_bar = exit_bar
        self.entry_time = entry_time
        self.exit_time = exit_time
        self.entry_price = entry_price
        self.exit_price = exit_price
        self.size = size
        self.pnl = pnl
        self.fees = fees
        self.exit_reason = exit_reason
        self.lot_id = lot_id
        self.exit_order = exit_order
        self.dividends = dividends

    @property
    def return_pct(self) -> float:
        """Net return on the capital the trade tied up, as a fraction (backtesting.py's ReturnPct)."""
        return self.pnl / (self.entry_price * self.size)


class Ledger:
    """Applies fills; refuses (never resizes) what the balance cannot cover."""

    def __init__(self, cash: float, *, allow_short: bool = False) -> None:
        self.initial_cash = float(cash)
        self.cash = float(cash)
        self.allow_short = allow_short
        self.fees = 0.0
        self.realised = 0.0
        self.turnover = 0.0
        self.corporate_cash = 0.0  # dividends and cash in lieu of fractional shares
        self.dividends = 0.0  # the dividends of those (a short's paid count negative)
        self.trades: list[TradeRecord] = []
        self._lots: dict[str, deque[Lot]] = {}
        self._qty: dict[str, float] = {}
        self._next_lot = 0

    def quantity(self, symbol: str) -> float:
        return self._qty.get(symbol, 0.0)

    def avg_price(self, symbol: str) -> float:
        """The lots' quantity-weighted price, summed in order in one loop (no lists: the gate
        asks at every signal, for each position)."""
        lots = self._lots.get(symbol)
        if not lots:
            return 0.0
        size = cost = 0.0
        for lot in lots:
            size += lot.quantity
            cost += lot.quantity * lot.price
        return cost / size

    def held(self) -> list[tuple[str, float]]:
        """(symbol, signed quantity) of every open position."""
        return [(symbol, qty) for symbol, qty in self._qty.items() if qty]

    def equity(self, marks: Mapping[str, float]) -> float:
        """The positions at `marks`, summed in order, plus the cash: the floats a backtest's
        equity curve adds up (engine._Run._write_equity), in one loop (a step and a signal each
        ask)."""
        value = 0.0
        for symbol, qty in self._qty.items():
            if qty:
                value += qty * marks[symbol]
        return self.cash + value

    def unrealised(self, marks: Mapping[str, float]) -> float:
        return sum(
            lot.side * lot.quantity * (marks[symbol] - lot.price)
            for symbol, lots in self._lots.items()
            for lot in lots
        )

    def refusal(
        self,
        symbol: str,
        side: int,
        quantity: float,
        price: float,
        fee: float,
        marks: Callable[[], Mapping[str, float]],
    ) -> tuple[ReasonCode, str] | None:
        """Why this fill cannot happen, or None. Spot: no buying without cash; shorts (if allowed)
        at most 1× equity, valued at `marks()`; reducing a position is always allowed."""
        before = self.quantity(symbol)
        after = snap(before + side * quantity)
        cash_after = self.cash - side * quantity * price - fee
        if side > 0 and after > 0 and cash_after < 0 and cash_after < -_tolerance(self.cash):
            return (
                ReasonCode.INSUFFICIENT_CASH,
                f"buying {quantity:g} {symbol} at {price:g} needs "
                f"{quantity * price + fee:,.2f} but cash is {self.cash:,.2f}",
            )
        if side < 0 and after < 0:
            if not self.allow_short:
                return (
                    ReasonCode.SHORT_NOT_ALLOWED,
                    f"selling {quantity:g} {symbol} with {before:g} held would go short (long-only)",
                )
            equity_after = self.equity({**marks(), symbol: price}) - fee
            if -after * price > equity_after + _tolerance(equity_after):
                return (
                    ReasonCode.INSUFFICIENT_CASH,
                    f"a short of {-after * price:,.2f} exceeds equity {equity_after:,.2f}",
                )
        return None

    def apply(self, fill: Fill) -> None:
        """Close opposite lots FIFO, open a lot with any remainder, and move cash and fees."""
        lots = self._lots.get(fill.symbol)
        if lots is None:
            lots = self._lots[fill.symbol] = deque()
        remaining = fill.quantity
        while lots and lots[0].side != fill.side and remaining > 0:
            lot = lots[0]
            closed = min(lot.quantity, remaining)
            self._close(fill, lot, closed)
            lot.quantity = snap(lot.quantity - closed)
            remaining = snap(remaining - closed)
            if lot.quantity <= 0:
                lots.popleft()
        if remaining > 0:
            self._next_lot += 1
            lots.append(
                Lot(
                    self._next_lot,
                    fill.side,
                    remaining,
                    fill.price,
                    fill.fee * remaining / fill.quantity,
                    fill.bar,
                    fill.time_ms,
                )
            )
        self._qty[fill.symbol] = snap(self._qty.get(fill.symbol, 0.0) + fill.side * fill.quantity)
        self.cash -= fill.side * fill.quantity * fill.price + fill.fee
        self.fees += fill.fee
        self.turnover += fill.quantity * fill.price

    def credit(self, symbol: str, per_share: float) -> None:
        """A dividend on the shares held (a short pays it to the lender), booked to each open
        lot too, so the trade that closes it counts it in its PnL."""
        amount = self.quantity(symbol) * per_share
        self.cash += amount
        self.corporate_cash += amount
        self.dividends += amount
        for lot in self._lots.get(symbol, ()):
            lot.dividends += lot.side * lot.quantity * per_share

    def split(self, symbol: str, ratio: float, price: float, step: float) -> None:
        """Every lot × `ratio` at its price ÷ `ratio`; what falls below a whole `step` leaves
        the newest lot and is paid as cash at `price`."""
        lots = self._lots.get(symbol)
        if not lots:
            return
        for lot in lots:
            lot.quantity = snap(lot.quantity * ratio)
            lot.price /= ratio
        held = snap(sum(lot.quantity for lot in lots))
        leftover = snap(held - math.floor(snap(held / step)) * step)
        while leftover > 0:
            lot = lots[-1]
            taken = min(lot.quantity, leftover)
            lot.quantity = snap(lot.quantity - taken)
            leftover = snap(leftover - taken)
            amount = lot.side * taken * price
            self.cash += amount
            self.corporate_cash += amount
            if lot.quantity <= 0:
                lots.pop()
        self._qty[symbol] = snap(sum(lot.side * lot.quantity for lot in lots))

    def _close(self, fill: Fill, lot: Lot, quantity: float) -> None:
        entry_fee = lot.fee * quantity / lot.quantity
        lot.fee -= entry_fee
        dividends = lot.dividends * quantity / lot.quantity
        lot.dividends -= dividends
        exit_fee = fill.fee * quantity / fill.quantity
        gross = lot.side * quantity * (fill.price - lot.price)
        self.realised += gross
        last = self.trades[-1] if self.trades else None
        if last is not None and last.lot_id == lot.lot_id and last.exit_order == fill.order_id:
            # A partial fill of the same exit order on the same lot extends that trade.
            total = snap(last.size + quantity)
            last.exit_price = (last.exit_price * last.size + fill.price * quantity) / total
            last.size = total
            last.pnl += gross - entry_fee - exit_fee + dividends
            last.fees += entry_fee + exit_fee
            last.dividends += dividends
            last.exit_bar, last.exit_time = fill.bar, fill.time_ms
            return
        self.trades.append(
            TradeRecord(
                fill.symbol,
                "long" if lot.side > 0 else "short",
                lot.bar,
                fill.bar,
                lot.time_ms,
                fill.time_ms,
                lot.price,
                fill.price,
                quantity,
                gross - entry_fee - exit_fee + dividends,
                entry_fee + exit_fee,
                fill.reason,
                lot.lot_id,
                fill.order_id,
                dividends,
            )
        )

    def marked_trades(
        self, marks: Mapping[str, float], bar: int, time_ms: int
    ) -> list[TradeRecord]:
        """Open lots as trades marked at `marks` with no exit fee: how a report shows what is
        still open on the last bar (exit reason END_OF_DATA); the account itself is unchanged."""
        return [
            TradeRecord(
                symbol,
                "long" if lot.side > 0 else "short",
                lot.bar,
                bar,
                lot.time_ms,
                time_ms,
                lot.price,
                marks[symbol],
                lot.quantity,
                lot.side * lot.quantity * (marks[symbol] - lot.price) - lot.fee + lot.dividends,
                lot.fee,
                ExitReason.END_OF_DATA,
                lot.lot_id,
                "",
                lot.dividends,
            )
            for symbol, lots in self._lots.items()
            for lot in lots
        ]


def _tolerance(amount: float) -> float:
    """Float dust allowed when a buy spends exactly all cash."""
    return 1e-9 * max(abs(amount), 1.0)
