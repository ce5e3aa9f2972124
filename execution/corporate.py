"""Splits and dividends on raw prices. The fill model trades the prices as printed, so at an
ex-date's open the account must follow the company: positions and open orders are split (a
fraction of a share that cannot be held is paid as cash), dividends are credited to cash. The
indicators read a causally adjusted history instead, so a split is not a crash signal."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace

from execution.ledger import Ledger
from execution.orders import Bracket, WorkingOrder, snap
from market.corporate import Action
from market.models import SymbolRules


def apply_action(
    symbol: str,
    action: Action,
    price: float,
    ledger: Ledger,
    working: Iterable[WorkingOrder],
    brackets: Mapping[str, Bracket],
    rules: SymbolRules,
) -> None:
    """An ex-date's open for one symbol: the dividend on the shares held before it, then the
    split of the position, its open orders and its bracket. `price` is the post-split price a
    leftover fraction is paid at (the last close divided by the ratio)."""
    if action.dividend:
        ledger.credit(symbol, action.dividend)
    if action.ratio == 1.0:
        return
    step = float(rules.step_size)
    ledger.split(symbol, action.ratio, price, step)
    for order in working:
        if order.symbol == symbol:
            order.remaining = _shares(order.remaining * action.ratio, step)
            order.limit = _price(order.limit, action.ratio, rules)
            order.stop = _price(order.stop, action.ratio, rules)
            order.stop_loss = _price(order.stop_loss, action.ratio, rules)
            order.take_profit = _price(order.take_profit, action.ratio, rules)
    bracket = brackets.get(symbol)
    if bracket is not None:
        bracket.stop_loss = _price(bracket.stop_loss, action.ratio, rules)
        bracket.take_profit = _price(bracket.take_profit, action.ratio, rules)
        bracket.trail_stop = _price(bracket.trail_stop, action.ratio, rules)


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


def _price(level: float | None, ratio: float, rules: SymbolRules) -> float | None:
    """A limit or stop on the new share, back on the tick grid (as brokers restate them)."""
    if level is None:
        return None
    tick = float(rules.tick_size)
    return round(round(level / ratio / tick) * tick, 10)
