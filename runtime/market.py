"""The runner's one view of the market: bars on one timeline, ATR from those bars, and the book's
top where a book is known. The gate's MarketView is built here and nowhere else, so a signal is
judged on the same facts in a backtest, on paper and live."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np

from execution.feed import BarArrays
from market.corporate import CorporateActions
from market.indicators import IndicatorConfig, wilder_atr
from market.models import SymbolRules
from risk.models import MarketView
from risk.views import MarketFacts
from runtime.hours import TradingHours
from runtime.warmup import joined_symbol


class BookTop(Protocol):
    """The best prices of a synced order book (market.books.BookQuote is one)."""

    @property
    def best_bid(self) -> float: ...
    @property
    def best_ask(self) -> float: ...


BookSource = Callable[[str], BookTop | None]


class Market:
    """Bars up to now for every symbol. A backtest hands it the whole history once (every view
    still reads only index t and before), and the bars before it as `warmup`, which ATR starts
    from as the paper loop's does from its history (index 0 stays the run's first bar); paper
    and live hand it a longer feed each bar. `hours` (an equity's; None: always open) and
    `actions` decide what positions are marked at (`mark_series`)."""

    def __init__(
        self,
        feed: BarArrays,
        rules: Mapping[str, SymbolRules],
        *,
        atr_window: int = IndicatorConfig().atr,
        book: BookSource | None = None,
        hours: TradingHours | None = None,
        actions: CorporateActions | None = None,
        warmup: BarArrays | None = None,
    ) -> None:
        unknown = sorted(set(feed.symbols) - set(rules))
        if unknown:
            raise ValueError(f"no exchange rules for {', '.join(unknown)}")
        self.rules = dict(rules)
        self.atr_window = atr_window
        self.book = book
        self.hours = hours
        self.actions = actions or CorporateActions({})
        self.feed = feed
        self.warmup = warmup
        self._atr: dict[str, np.ndarray] = {}
        self._series: dict[str, np.ndarray] | None = None
        self._marks: tuple[int, Mapping[str, float]] = (-1, {})

    def extend(self, feed: BarArrays) -> None:
        """The same timeline with more bars: ATR and marks are prefix-stable, so they are
        recomputed lazily."""
        self.feed = feed
        self._atr = {}
        self._series = None
        self._marks = (-1, {})

    @property
    def symbols(self) -> list[str]:
        return list(self.feed.symbols)

    def marks(self, index: int) -> Mapping[str, float]:
        """Every symbol's mark at bar `index`'s close: what equity and the gate are marked at.
        A step asks several times for the same bar, so the last bar's marks are kept
        (read-only)."""
        kept = self._marks
        if kept[0] != index:
            kept = self._marks = (
                index,
                {s: float(v[index]) for s, v in self.mark_series().items()},
            )
        return kept[1]

    def mark_series(self) -> Mapping[str, np.ndarray]:
        """Per symbol, the price a position is valued at at each close, once per feed: the
        close itself where the market is always open (crypto); with market hours, the last
        close the run could trade at, carried through the bars it cannot
        (CorporateActions.marks), so a pre- or post-market print moves no equity."""
        series = self._series
        if series is None:
            feed, hours = self.feed, self.hours
            if hours is None:
                series = {s: b.close for s, b in feed.symbols.items()}
            else:
                tradable = hours.tradable(feed.open_time)
                series = {
                    s: self.actions.marks(s, feed.open_time, b.close, tradable)
                    for s, b in feed.symbols.items()
                }
            self._series = series
        return series

    def atr(self, symbol: str, index: int) -> float | None:
        """Wilder's ATR at bar `index` from the bars this market holds (None in the warm-up)."""
        series = self._atr.get(symbol)
        if series is None:
            bars = self.feed.symbols[symbol]
            skip = 0
            if self.warmup is not None:
                bars = joined_symbol(self.warmup.symbols[symbol], bars)
                skip = len(self.warmup)
            series = wilder_atr(bars.high, bars.low, bars.close, self.atr_window).to_numpy()[skip:]
            self._atr[symbol] = series
        value = float(series[index])
        return value if math.isfinite(value) else None

    def facts(self, symbol: str, index: int) -> MarketFacts:
        """What the gate may know of `symbol` at bar `index`'s close."""
        top = self.book(symbol) if self.book is not None else None
        return MarketFacts(
            symbol,
            float(self.feed.symbols[symbol].close[index]),
            self.feed.close_time.item(index),
            lambda: self.atr(symbol, index),
            None if top is None else float(top.best_bid),
            None if top is None else float(top.best_ask),
            self.rules[symbol],
        )

    def view(self, symbol: str, index: int) -> MarketView:
        """The same facts as the boundary's model (a strategy's, a tool's, a record's)."""
        return self.facts(symbol, index).view()
