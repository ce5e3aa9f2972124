"""Splits and dividends on raw prices. The fill model trades the prices as printed, so at an
ex-date's open the account must follow the company: positions and open orders are split (a
fraction of a share that cannot be held is paid as cash), dividends are credited to cash, and a
cash dividend of a cent or more lowers the resting orders the price drop would otherwise trip
(FINRA Rule 5330: buy limits, sell stops and sell stop limits, rounded down to the tick; sell
limits and buy stops stay). The indicators read a causally adjusted history instead, so a
split is not a crash signal."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from execution.ledger import Ledger
from execution.orders import Bracket, Fill, WorkingOrder, snap
from market.corporate import Action
from market.models import SymbolRules
from risk.models import OrderType

MIN_DIVIDEND = 0.01  # FINRA Rule 5330: a cash dividend under a cent adjusts no order


def apply_action(
    symbol: str,
    action: Action,
    price: float,
    ledger: Ledger,
    working: Iterable[WorkingOrder],
    brackets: Mapping[str, Bracket],
    rules: SymbolRules,
) -> None:
    """An ex-date's open for one symbol: the dividend on the shares held before it and on the
    orders it would trip, then the split of the position, its open orders and its bracket.
    `price` is the post-split price a leftover fraction is paid at (the last close divided by
    the ratio)."""
    step = float(rules.step_size)
    apply_to_ledger(ledger, symbol, action, price, step)
    mine = [order for order in working if order.symbol == symbol]
    bracket = brackets.get(symbol)
    if action.dividend >= MIN_DIVIDEND:
        for order in mine:
            ex_dividend(order, action.dividend, rules)
        if bracket is not None:  # its stop-loss rests as a sell stop
            bracket.stop_loss = _less(bracket.stop_loss, action.dividend, rules)
    if action.ratio == 1.0:
        return
    for order in mine:
        order.remaining = _shares(order.remaining * action.ratio, step)
        order.limit = _price(order.limit, action.ratio, rules)
        order.stop = _price(order.stop, action.ratio, rules)
        order.stop_loss = _price(order.stop_loss, action.ratio, rules)
        order.take_profit = _price(order.take_profit, action.ratio, rules)
    if bracket is not None:
        bracket.stop_loss = _price(bracket.stop_loss, action.ratio, rules)
        bracket.take_profit = _price(bracket.take_profit, action.ratio, rules)
        bracket.trail_stop = _price(bracket.trail_stop, action.ratio, rules)


def ex_dividend(order: WorkingOrder, dividend: float, rules: SymbolRules) -> None:
    """FINRA Rule 5330 on one resting order: a buy limit, or a sell stop (limit) not yet
    triggered, drops by the dividend, so the ex-date's lower open does not fill it."""
    if order.side > 0 and order.kind is OrderType.LIMIT:
        order.limit = _less(order.limit, dividend, rules)
    elif (
        order.side < 0 and order.kind in (OrderType.STOP, OrderType.STOP_LIMIT) and not order.armed
    ):
        order.stop = _less(order.stop, dividend, rules)
        order.limit = _less(order.limit, dividend, rules)


def apply_to_ledger(ledger: Ledger, symbol: str, action: Action, price: float, step: float) -> None:
    """The cash and shares side of an action: the dividend, then the split."""
    if action.dividend:
        ledger.credit(symbol, action.dividend)
    if action.ratio != 1.0:
        ledger.split(symbol, action.ratio, price, step)


@dataclass(frozen=True, slots=True)
class AppliedAction:
    """An action as an account took it, and how many of the account's fills came before it: a
    paper account stores it, so a restart replays it between the same fills, once."""

    symbol: str
    open_time: int
    ratio: float
    dividend: float
    price: float  # what a leftover fraction of a share was paid at
    step: float  # the share step the leftover was measured in
    fills_before: int


def rebuild_ledger(ledger: Ledger, fills: Sequence[Fill], applied: Sequence[AppliedAction]) -> None:
    """An account from its fills in order, each applied action between the same fills."""
    waiting = sorted(applied, key=lambda a: a.fills_before)  # stable: stored order kept
    taken = 0
    for done, fill in enumerate([*fills, None]):
        while taken < len(waiting) and waiting[taken].fills_before <= done:
            a = waiting[taken]
            apply_to_ledger(ledger, a.symbol, Action(a.ratio, a.dividend), a.price, a.step)
            taken += 1
        if fill is not None:
            ledger.apply(fill)


def split_placed(order: WorkingOrder, ratio: float, rules: SymbolRules) -> WorkingOrder:
    """An order decided before a split and placed after it, on the new share count and prices."""
    return replace(
        order,
        remaining=_shares(order.remaining * ratio, float(rules.step_size)),
        limit=_price(order.limit, ratio, rules),
        stop=_price(order.stop, ratio, rules),
        stop_loss=_price(order.stop_loss, ratio, rules),
        take_profit=_price(order.take_profit, ratio, rules),
    )


def _shares(quantity: float, step: float) -> float:
    """Whole steps only (whole shares unless the asset is fractionable), rounded down."""
    return snap(math.floor(snap(quantity / step)) * step)


def _less(level: float | None, amount: float, rules: SymbolRules) -> float | None:
    """A price lowered by `amount`, rounded down to the tick (Rule 5330's rounding)."""
    if level is None:
        return None
    tick = float(rules.tick_size)
    return round(math.floor(round((level - amount) / tick, 6)) * tick, 10)


def _price(level: float | None, ratio: float, rules: SymbolRules) -> float | None:
    """A limit or stop on the new share, back on the tick grid (as brokers restate them)."""
    if level is None:
        return None
    tick = float(rules.tick_size)
    return round(round(level / ratio / tick) * tick, 10)
