"""Splits and dividends on raw prices. The fill model trades the prices as printed, so at an
ex-date's open the account must follow the company: positions and open orders are split (a
fraction of a share that cannot be held is paid as cash), dividends are credited to cash. The
indicators read a causally adjusted history instead, so a split is not a crash signal."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from execution.feed import SymbolBars
from execution.ledger import Ledger
from execution.orders import Bracket, WorkingOrder, snap
from market.models import SymbolRules


@dataclass(frozen=True, slots=True)
class Action:
    """What happens at one ex-date's open: `ratio` new shares per old (2.0 for a 2:1 split,
    0.1 for a 1:10 reverse split), `dividend` in cash per share held before that open."""

    ratio: float = 1.0
    dividend: float = 0.0


class CorporateActions:
    """Each symbol's actions keyed by the open time (epoch ms) of its ex-date's first bar."""

    def __init__(self, by_symbol: Mapping[str, Mapping[int, Action]]) -> None:
        self._by = {s: dict(a) for s, a in by_symbol.items() if a}
        self._times = np.unique(np.array([t for a in self._by.values() for t in a], np.int64))

    def __bool__(self) -> bool:
        return bool(self._by)

    def at(self, open_time: int) -> list[tuple[str, Action]]:
        return [(s, a[open_time]) for s, a in self._by.items() if open_time in a]

    def first_between(self, open_time: np.ndarray, start: int, stop: int) -> int | None:
        """The first bar in [start, stop] that carries an action (the engine must step it)."""
        if stop < start or not len(self._times):
            return None
        found = np.searchsorted(self._times, open_time[start])
        if found == len(self._times) or self._times[found] > open_time[stop]:
            return None
        return start + int(np.searchsorted(open_time[start : stop + 1], self._times[found]))

    def adjusted(self, symbol: str, open_time: np.ndarray, bars: SymbolBars) -> SymbolBars:
        """Prices from each ex-date on scaled back onto the scale of the first bar (volume the
        other way), using only actions at or before each bar: no later split leaks into an
        indicator, and a backtest and a paper replay see the same history."""
        actions = self._by.get(symbol)
        if not actions:
            return bars
        price = np.ones(len(open_time))
        shares = np.ones(len(open_time))
        for i in np.flatnonzero(np.isin(open_time, list(actions))).tolist():
            action = actions[int(open_time[i])]
            step = action.ratio
            if i and action.dividend:
                close = float(bars.close[i - 1])
                step *= close / (close - action.dividend * action.ratio)
            price[i] *= step
            shares[i] *= action.ratio
        price, shares = np.cumprod(price), np.cumprod(shares)
        return SymbolBars(
            bars.open * price,
            bars.high * price,
            bars.low * price,
            bars.close * price,
            bars.volume / shares,
        )


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
