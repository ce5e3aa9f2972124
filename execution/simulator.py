"""The simulated venue shared by backtests and paper trading: it accepts only gate-approved orders,
checks exchange rules, and fills against bars by the rules in `execution.fills` (docs/fills.md)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

import numpy as np

from execution.corporate import AppliedAction, apply_action, split_placed
from execution.equity_fees import sale_fees
from execution.feed import BarArrays
from execution.fees import FeeFn, FeeSchedule, Liquidity
from execution.fills import (
    first_true,
    limit_price,
    limit_reached,
    protective_stop,
    stop_price,
    stop_reached,
    trail_level,
    trail_levels,
)
from execution.ledger import Ledger
from execution.orders import (
    Bracket,
    ExitReason,
    Fill,
    Pending,
    Rejection,
    WorkingOrder,
    fixed_cost,
    snap,
)
from execution.rules import rule_breaches, within_notional
from execution.slippage import FixedBps, Slippage
from market.corporate import CorporateActions
from market.models import SymbolRules
from risk.approval import verify_approved
from risk.gate import filters_of
from risk.models import ApprovedOrder, OrderType, ReasonCode, Side
from risk.sizing import exact_on

_MARKET: Final = "market"
_LIMIT: Final = "limit"
_STOP: Final = "stop"
# Enum members read once: on Python 3.11 each `OrderType.MARKET` is a metaclass lookup.
_MARKET_ORDER: Final = OrderType.MARKET
_STOP_ORDER: Final = OrderType.STOP
_BUY: Final = Side.BUY
_TAKER: Final = Liquidity.TAKER
_MAKER: Final = Liquidity.MAKER


def _mode(order: WorkingOrder) -> str:
    """How an order behaves now: a triggered stop is a market order, a triggered stop-limit a limit."""
    kind = order.kind
    if kind is _MARKET_ORDER or (kind is _STOP_ORDER and order.armed):
        return _MARKET
    if kind is OrderType.LIMIT or order.armed:
        return _LIMIT
    return _STOP


def _level(value: float | None) -> float:
    """A level its order's mode or its bracket's trail says is set (a limit, a stop, a trail)."""
    if value is None:
        raise ValueError("an order or bracket without the level its kind needs")
    return value


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


class SimulatedExecutor:
    """Bar by bar: first what happens at the open (gaps, orders submitted now), then inside the
    bar. A runner calls `accept` at a decision and `on_bar` for each bar."""

    def __init__(
        self,
        feed: BarArrays,
        ledger: Ledger,
        rules: Mapping[str, SymbolRules],
        *,
        fees: FeeFn | None = None,
        slippage: Slippage | None = None,
        limit_on_touch: bool = False,
        actions: CorporateActions | None = None,
    ) -> None:
        self.feed = feed
        self.actions = actions or CorporateActions({})
        self._has_actions = bool(self.actions)  # asked at every bar
        self._split_since_accept: dict[str, float] = {}  # for orders not placed yet
        self.applied: list[AppliedAction] = []  # what the account took, for a paper store
        self.ledger = ledger
        self.rules = rules
        self.fees: FeeFn = fees or FeeSchedule()
        self.slippage: Slippage = slippage or FixedBps()
        self.symbol_slippage: dict[str, Slippage] = {}  # e.g. a live book's walk, per symbol
        self.limit_on_touch = limit_on_touch
        self.working: list[WorkingOrder] = []
        self.brackets: dict[str, Bracket] = {}
        self.fills: list[Fill] = []
        self.rejections: list[Rejection] = []
        self.ambiguous_bars = 0
        self._accepted: list[ApprovedOrder] = []

    @property
    def idle(self) -> bool:
        """Nothing can fill until a new order arrives, so the engine may skip bars in bulk."""
        return not self.working and not self.brackets and not self._accepted

    @property
    def accepted(self) -> tuple[ApprovedOrder, ...]:
        """Orders accepted since the last bar, waiting for the next bar's open."""
        return tuple(self._accepted)

    def accept(self, order: object) -> None:
        """Take a sealed ApprovedOrder at a decision; it is placed at the next bar's open
        (docs/fills.md). Anything the gate did not seal, or that was altered, raises."""
        self._accepted.append(verify_approved(order))

    def execute(self, order: object) -> dict[str, Any]:
        """The runner's venue call: accept now, place at the next bar's open."""
        self.accept(order)
        placed = self._accepted[-1]
        return {"status": "accepted", "client_order_id": placed.client_order_id}

    def pending(self) -> list[Pending]:
        """Accepted and resting orders, as the gate must count them."""
        if not self._accepted and not self.working:
            return []  # the usual at a decision: every order filled at its open
        waiting = [
            Pending(o.symbol, 1 if o.side is _BUY else -1, float(o.quantity), _float(o.limit_price))
            for o in self._accepted
        ]
        return waiting + [
            Pending(o.symbol, o.side, o.remaining, o.limit if o.limit is not None else o.stop)
            for o in self.working
        ]

    def protective_exits(self, index: int) -> list[tuple[str, str]]:
        """None to send: stops and targets fill inside the fill model."""
        return []

    def cancel(self, order_id: str) -> bool:
        """Drop one entry not filled yet (waiting for its open, or resting); a bracket's exit
        is not an order a person placed, so it stays."""
        before = len(self._accepted) + len(self.working)
        self._accepted = [o for o in self._accepted if o.client_order_id != order_id]
        self.working = [o for o in self.working if o.order_id != order_id or o.reduce_only]
        return len(self._accepted) + len(self.working) < before

    def cancel_accepted(self) -> list[ApprovedOrder]:
        """Drop the orders not yet placed (a halt); returns them so the venue can say so."""
        cancelled, self._accepted = self._accepted, []
        self._split_since_accept.clear()
        return cancelled

    def on_bar(self, index: int, *, fills: bool = True) -> list[ApprovedOrder]:
        """One bar: resting orders against its open (gaps), the accepted orders placed at that
        open, then everything against its high and low. Returns the orders placed. A bar
        outside market hours (`fills=False`) fills nothing: every order waits. A split or
        dividend at this bar applies first, in or out of hours."""
        if self._has_actions:
            self._corporate(index)
        if not fills:
            return []
        if self.working or self.brackets:
            self.open_phase(index)
        placed, self._accepted = self._accepted, []
        for order in placed:
            self._place(order, index)
        if self._split_since_accept:
            self._split_since_accept.clear()
        if self.working or self.brackets:
            self.intrabar_phase(index)
        return placed

    def _place(self, approved: ApprovedOrder, bar: int) -> Rejection | None:
        fields = approved.__dict__  # read once: a plain market order is most of a backtest's
        symbol = fields["symbol"]
        rules = self.rules.get(symbol)
        bars = self.feed.symbols.get(symbol)
        if rules is None or bars is None:
            return self._reject(
                fields["client_order_id"],
                symbol,
                ReasonCode.UNKNOWN_SYMBOL,
                "no rules or bars",
                bar,
            )
        open_ = float(bars.open[bar])
        kind = fields["order_type"]
        limit, stop, loss, profit = (
            fields["limit_price"],
            fields["stop_price"],
            fields["stop_loss"],
            fields["take_profit"],
        )
        quantity = fields["quantity"]
        quantity_f = float(quantity)
        reference: Decimal | None = stop if kind is _STOP_ORDER else limit
        if kind is _MARKET_ORDER:  # at the open, exact only where near a notional filter
            filters = filters_of(rules)
            clear = within_notional(filters, quantity_f, open_)
            reference = None if clear else exact_on(open_, filters.tick)
        breaches = rule_breaches(rules, quantity, reference, priced=(limit, stop, loss, profit))
        if breaches:
            return self._reject(
                fields["client_order_id"],
                symbol,
                breaches[0][0],
                "; ".join(message for _, message in breaches),
                bar,
            )
        trail = fields["trailing_stop_pct"]
        working = WorkingOrder(
            fields["client_order_id"],
            symbol,
            1 if fields["side"] is _BUY else -1,
            kind,
            quantity_f,
            None if limit is None else float(limit),
            None if stop is None else float(stop),
            None if loss is None else float(loss),
            None if profit is None else float(profit),
            bar,
            bar,
            trail_pct=None if trail is None else float(trail),
            reduce_only=fields["reduce_only"],
        )
        if self._split_since_accept:
            ratio = self._split_since_accept.get(symbol)
            if ratio is not None:
                working = split_placed(working, ratio, rules)
        rejected_before = len(self.rejections)
        if not self._at_open(working, bar, open_, resting=False):
            self.working.append(working)
        return self.rejections[-1] if len(self.rejections) > rejected_before else None

    def _corporate(self, bar: int) -> None:
        """Splits and dividends whose ex-date opens at this bar (execution.corporate)."""
        open_time = int(self.feed.open_time[bar])
        for symbol, action in self.actions.at(open_time):
            if any(a.symbol == symbol and a.open_time == open_time for a in self.applied):
                continue  # a restarted paper account took it before the restart
            bars = self.feed.symbols[symbol]
            last = float(bars.close[bar - 1] if bar else bars.open[bar])
            bracket = self.brackets.get(symbol)
            if bracket is not None:
                self._trail_to(bracket, bar)  # the old shares' highs, on the old scale
            apply_action(
                symbol,
                action,
                last / action.ratio,
                self.ledger,
                self.working,
                self.brackets,
                self.rules[symbol],
            )
            self.applied.append(
                AppliedAction(
                    symbol, open_time, action.ratio, action.dividend, last / action.ratio,
                    float(self.rules[symbol].step_size), len(self.fills),
                )
            )  # fmt: skip
            if action.ratio != 1.0 and any(o.symbol == symbol for o in self._accepted):
                self._split_since_accept[symbol] = (
                    self._split_since_accept.get(symbol, 1.0) * action.ratio
                )

    def open_phase(self, bar: int) -> None:
        """Orders and brackets that rested before this bar, against its open (gaps)."""
        for order in list(self.working):
            if order.submitted_bar < bar:
                opened = float(self.feed.symbols[order.symbol].open[bar])
                if self._at_open(order, bar, opened, resting=True):
                    self.working.remove(order)
        for bracket in list(self.brackets.values()):
            if bracket.created_bar < bar:
                self._trail_to(bracket, bar)
                self._bracket_at_open(bracket, bar)

    def settle_trails(self, bar: int) -> None:
        """Fold every bar before `bar` into the trailing stops, so a checkpoint needs no bars."""
        for bracket in self.brackets.values():
            self._trail_to(bracket, bar)

    def _trail_to(self, bracket: Bracket, bar: int) -> None:
        """The trailing stop in force at `bar`: the highs of the bars since it last moved."""
        if bracket.trail_pct is None or bar <= bracket.trail_next:
            return
        highs = self.feed.symbols[bracket.symbol].high[bracket.trail_next : bar]
        levels = trail_levels(_level(bracket.trail_stop), bracket.trail_pct, highs)
        bracket.trail_stop = float(levels[-1])
        bracket.trail_next = bar

    def intrabar_phase(self, bar: int) -> None:
        """Every live order and bracket against this bar's high and low."""
        for order in list(self.working):
            if order.active_from > bar or order.last_fill_bar == bar:
                continue
            bars = self.feed.symbols[order.symbol]
            low, high = float(bars.low[bar]), float(bars.high[bar])
            mode = _mode(order)
            done = False
            if mode == _LIMIT:
                limit = _level(order.limit)
                if limit_reached(order.side, limit, low, high, self.limit_on_touch):
                    done = self._execute(order, bar, limit, _MAKER, slip=False, opening=False)
            elif mode == _STOP:
                stop = _level(order.stop)
                if stop_reached(order.side, stop, low, high):
                    done = self._trigger(order, bar, stop, opening=False)
            if done:
                self.working.remove(order)
        for bracket in list(self.brackets.values()):
            if bracket.active_from <= bar and self.brackets.get(bracket.symbol) is bracket:
                self._bracket_intrabar(bracket, bar)

    def next_event(self, start: int, stop: int) -> int | None:
        """The first bar in [start, stop] where any order or bracket could fill (vectorised)."""
        if self._accepted:
            return start
        best: int | None = None
        for order in self.working:
            if _mode(order) == _MARKET:
                return start
            first = max(start, order.active_from)
            if first > stop:
                continue
            bars = self.feed.symbols[order.symbol]
            low, high = bars.low[first : stop + 1], bars.high[first : stop + 1]
            if _mode(order) == _LIMIT:
                mask = limit_reached(
                    order.side, _level(order.limit), low, high, self.limit_on_touch
                )
            else:
                mask = stop_reached(order.side, _level(order.stop), low, high)
            best = _earliest(best, first, first_true(mask))
        for bracket in self.brackets.values():
            first = max(start, bracket.active_from)
            if first > stop:
                continue
            exit_side = -1 if self.ledger.quantity(bracket.symbol) > 0 else 1
            bars = self.feed.symbols[bracket.symbol]
            low, high = bars.low[first : stop + 1], bars.high[first : stop + 1]
            hit: np.ndarray | None = None
            stops = self._stop_levels(bracket, first, stop)
            if stops is not None:
                hit = stop_reached(exit_side, stops, low, high)
            if bracket.take_profit is not None:
                took = limit_reached(exit_side, bracket.take_profit, low, high, self.limit_on_touch)
                hit = took if hit is None else hit | took
            if hit is not None:
                best = _earliest(best, first, first_true(hit))
        return best

    def _stop_levels(self, bracket: Bracket, first: int, last: int) -> np.ndarray | None:
        """The bracket's protective stop in force at each bar of [first, last]: the fixed
        stop-loss, raised by the trailing stop as the highs before each bar ratchet it."""
        fixed = -np.inf if bracket.stop_loss is None else bracket.stop_loss
        if bracket.trail_pct is None:
            return None if bracket.stop_loss is None else np.full(last - first + 1, fixed)
        highs = self.feed.symbols[bracket.symbol].high[bracket.trail_next : last]
        start = _level(bracket.trail_stop)
        path = np.concatenate(([start], trail_levels(start, bracket.trail_pct, highs)))
        offset = first - bracket.trail_next
        return np.maximum(fixed, path[offset : offset + last - first + 1])

    def _at_open(self, order: WorkingOrder, bar: int, open_: float, *, resting: bool) -> bool:
        """Fill or trigger at the open if the open allows it; True when the order is finished."""
        mode = _mode(order)
        if mode == _MARKET:
            return self._execute(order, bar, open_, _TAKER, slip=True, opening=True)
        if mode == _LIMIT:
            limit = _level(order.limit)
            touch = self.limit_on_touch or not resting
            if not limit_reached(order.side, limit, open_, open_, touch):
                return False
            # Resting limits were in the book (maker); a limit marketable on arrival takes.
            if resting:
                price = limit_price(order.side, limit, open_)
                return self._execute(order, bar, price, _MAKER, slip=False, opening=True)
            return self._execute(order, bar, open_, _TAKER, slip=True, cap=limit, opening=True)
        stop = _level(order.stop)
        if stop_reached(order.side, stop, open_, open_):
            return self._trigger(order, bar, stop_price(order.side, stop, open_), opening=True)
        return False

    def _trigger(self, order: WorkingOrder, bar: int, price: float, *, opening: bool) -> bool:
        """A stop reached at `price`: stops fill there; stop-limits fill if within the limit,
        otherwise they rest as a limit from the next bar."""
        order.armed = True
        if order.kind is _STOP_ORDER:
            return self._execute(order, bar, price, _TAKER, slip=True, opening=opening)
        limit = _level(order.limit)
        within = price <= limit if order.side > 0 else price >= limit
        if within:
            return self._execute(order, bar, price, _TAKER, slip=True, cap=limit, opening=opening)
        order.active_from = bar + 1
        return False

    def _bracket_at_open(self, bracket: Bracket, bar: int) -> None:
        open_ = float(self.feed.symbols[bracket.symbol].open[bar])
        exit_side = -1 if self.ledger.quantity(bracket.symbol) > 0 else 1
        stop, why = protective_stop(bracket.stop_loss, bracket.trail_stop)
        if stop is not None and stop_reached(exit_side, stop, open_, open_):
            self._bracket_exit(bracket, bar, open_, why)
        elif bracket.take_profit is not None and limit_reached(
            exit_side, bracket.take_profit, open_, open_, self.limit_on_touch
        ):
            self._bracket_exit(bracket, bar, open_, ExitReason.TAKE_PROFIT)

    def _bracket_intrabar(self, bracket: Bracket, bar: int) -> None:
        bars = self.feed.symbols[bracket.symbol]
        low, high = float(bars.low[bar]), float(bars.high[bar])
        exit_side = -1 if self.ledger.quantity(bracket.symbol) > 0 else 1
        stop, why = protective_stop(bracket.stop_loss, bracket.trail_stop)
        stop_hit = stop is not None and stop_reached(exit_side, stop, low, high)
        take_hit = bracket.take_profit is not None and limit_reached(
            exit_side, bracket.take_profit, low, high, self.limit_on_touch
        )
        if stop_hit and take_hit:
            self.ambiguous_bars += 1  # the bar's path is unknown: assume the stop came first
        if stop_hit:
            self._bracket_exit(bracket, bar, _level(stop), why)
        elif take_hit:
            self._bracket_exit(bracket, bar, _level(bracket.take_profit), ExitReason.TAKE_PROFIT)

    def _bracket_exit(self, bracket: Bracket, bar: int, price: float, reason: ExitReason) -> None:
        """Close the whole position; what one bar's volume cannot absorb continues at market."""
        del self.brackets[bracket.symbol]
        held = self.ledger.quantity(bracket.symbol)
        order = WorkingOrder(
            order_id=f"{reason.value}-{bracket.symbol}-{int(self.feed.open_time[bar])}",
            symbol=bracket.symbol,
            side=-1 if held > 0 else 1,
            kind=OrderType.MARKET,
            remaining=abs(held),
            limit=None,
            stop=None,
            stop_loss=None,
            take_profit=None,
            submitted_bar=bar,
            active_from=bar + 1,
            reason=reason,
            reduce_only=True,
        )
        taker = reason is not ExitReason.TAKE_PROFIT
        liquidity = _TAKER if taker else _MAKER
        if not self._execute(order, bar, price, liquidity, slip=taker, opening=False):
            self.working.append(order)

    def _execute(
        self,
        order: WorkingOrder,
        bar: int,
        base: float,
        liquidity: Liquidity,
        *,
        slip: bool,
        opening: bool,
        cap: float | None = None,
    ) -> bool:
        """Fill what this bar allows at `base` (plus slippage for takers, never past `cap`);
        True when the order is finished: fully filled or refused. `opening`: at the bar's open,
        so a bracket it sets already guards the rest of this bar."""
        symbol = order.symbol
        bars = self.feed.symbols[symbol]
        volume = float(bars.volume[bar])
        quantity = order.remaining
        ledger = self.ledger
        held_before = ledger.quantity(symbol)
        if order.reduce_only:
            reducible = abs(held_before) if held_before * order.side < 0 else 0.0
            if reducible <= 0:
                self._reject(
                    order.order_id, symbol, ReasonCode.NO_POSITION, "nothing to reduce", bar
                )
                return True
            quantity = min(quantity, reducible)
        # The usual costs, a fixed slippage and a fee schedule, are priced here, without their
        # Python calls (several a fill): volume never caps a fixed cost, which is `fixed_cost`,
        # and a schedule's fee is quantity x price x its rate, with nothing added on sales.
        slippage = self.symbol_slippage.get(symbol, self.slippage)
        fixed = slippage if type(slippage) is FixedBps else None
        if fixed is None:
            capped = slippage.cap(quantity, volume)
            if capped < quantity:
                step = self.rules[symbol].floor_qty(Decimal(repr(capped)))
                quantity = float(step)
        if quantity <= 0:
            return False
        price = base
        if slip:
            if fixed is not None:
                price = fixed_cost(order.side, base, fixed.bps)
            else:
                price = slippage.price(order.side, base, quantity, volume)
        if cap is not None:
            price = min(price, cap) if order.side > 0 else max(price, cap)
        fees = self.fees
        if type(fees) is FeeSchedule:
            fee, sale = quantity * price * (fees.maker if liquidity is _MAKER else fees.taker), 0.0
        else:
            fee = fees(quantity, price, liquidity)
            sale = sale_fees(fees, quantity, price) if order.side < 0 else 0.0
        if order.side < 0:
            fee += sale
        outran = False
        if slip and order.side > 0 and not order.reduce_only:
            affordable, fee = self._affordable(symbol, quantity, price, fee, liquidity)
            outran, quantity = affordable < quantity, affordable
            if quantity <= 0:
                self._reject(
                    order.order_id, symbol, ReasonCode.INSUFFICIENT_CASH, "no cash left", bar
                )
                return True
        refusal = ledger.refusal(symbol, order.side, quantity, price, fee, lambda: self._marks(bar))
        if refusal is not None:
            self._reject(order.order_id, symbol, refusal[0], refusal[1], bar)
            return True
        fill = Fill(
            order.order_id,
            symbol,
            order.side,
            quantity,
            price,
            fee,
            liquidity,
            bar,
            self.feed.open_time.item(bar),
            order.reason,
        )
        ledger.apply(fill)
        self.fills.append(fill)
        order.last_fill_bar = bar
        held = ledger.quantity(symbol)
        flat_now = order.reduce_only and not held
        done = flat_now or outran  # a buy the cash capped is finished, as its quote was spent
        order.remaining = 0.0 if done else snap(order.remaining - quantity)
        self._update_bracket(order, bar, held_before, held, opening, price)
        return order.remaining <= 0

    def _update_bracket(
        self,
        order: WorkingOrder,
        bar: int,
        held_before: float,
        held: float,
        opening: bool,
        price: float,
    ) -> None:
        """Flat or flipped positions lose their bracket; an entry carrying SL/TP or a trailing
        stop sets a new one, the trail starting `trail_pct` below the fill price."""
        symbol = order.symbol
        if not held or held * held_before < 0:
            self.brackets.pop(symbol, None)
        trail = order.trail_pct if order.side > 0 else None
        guarded = order.stop_loss is not None or order.take_profit is not None or trail is not None
        if held * order.side > 0 and guarded:
            active_from = bar if opening else bar + 1
            self.brackets[symbol] = Bracket(
                symbol,
                order.stop_loss,
                order.take_profit,
                created_bar=bar,
                active_from=active_from,
                trail_pct=trail,
                trail_stop=None if trail is None else trail_level(price, trail),
                trail_next=active_from,
            )

    def _affordable(
        self, symbol: str, quantity: float, price: float, fee: float, liquidity: Liquidity
    ) -> tuple[float, float]:
        """A taker buy sized at the decision's price that the fill price outran: it buys what
        the cash affords, as a quote-quantity market order does, never more than approved."""
        cash = self.ledger.cash
        if quantity * price + fee <= cash:
            return quantity, fee
        scaled = quantity * cash / (quantity * price + fee)
        quantity = float(self.rules[symbol].floor_qty(Decimal(repr(scaled))))
        return quantity, self.fees(quantity, price, liquidity)

    def _marks(self, bar: int) -> dict[str, float]:
        return {name: float(b.open[bar]) for name, b in self.feed.symbols.items()}

    def _reject(
        self, order_id: str, symbol: str, code: ReasonCode, message: str, bar: int
    ) -> Rejection:
        rejection = Rejection(order_id, symbol, code.value, message, bar)
        self.rejections.append(rejection)
        return rejection


def _earliest(best: int | None, offset: int, found: int | None) -> int | None:
    if found is None:
        return best
    return offset + found if best is None else min(best, offset + found)
