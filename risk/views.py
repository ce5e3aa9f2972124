"""The facts the gate judges a signal on, as plain classes the install compiles (core.native):
the account and the market at the decision. The runner builds them for every signal, and the
gate reads each many times; as pydantic models, building and reading them cost about twelve
times as much. PortfolioView and MarketView stay the typed boundary (records, tools, the
verdict corpus, strategies): each converts both ways, field for field."""

from __future__ import annotations

from collections.abc import Callable

from market.models import SymbolRules
from risk.models import Elsewhere, MarketView, PortfolioView, PositionView
from risk.trusted import trusted


class PositionFacts:
    def __init__(self, quantity: float, avg_price: float) -> None:
        self.quantity = quantity  # signed: > 0 long, < 0 short
        self.avg_price = avg_price


class PortfolioFacts:
    """PortfolioView's fields."""

    def __init__(
        self,
        cash: float,
        equity: float,
        peak_equity: float,
        day_start_equity: float,
        positions: dict[str, PositionFacts],
        elsewhere: Elsewhere | None,
    ) -> None:
        self.cash = cash
        self.equity = equity
        self.peak_equity = peak_equity
        self.day_start_equity = day_start_equity
        self.positions = positions
        self.elsewhere = elsewhere

    def view(self) -> PortfolioView:
        """The same facts as the boundary's model: its values are already of their types."""
        return trusted(
            PortfolioView,
            {
                "cash": self.cash,
                "equity": self.equity,
                "peak_equity": self.peak_equity,
                "day_start_equity": self.day_start_equity,
                "positions": {
                    s: trusted(PositionView, {"quantity": p.quantity, "avg_price": p.avg_price})
                    for s, p in self.positions.items()
                },
                "elsewhere": self.elsewhere,
            },
        )


class MarketFacts:
    """MarketView's fields. The ATR is asked of `atr_of` when first read: a market's ATR series
    is a pass over all its bars, and most runs' rules never read it (a classic strategy's
    source has no ATR stop)."""

    def __init__(
        self,
        symbol: str,
        last_price: float,
        data_time_ms: int,
        atr_of: Callable[[], float | None],
        best_bid: float | None,
        best_ask: float | None,
        rules: SymbolRules,
    ) -> None:
        self.symbol = symbol
        self.last_price = last_price
        self.data_time_ms = data_time_ms
        self._atr_of = atr_of
        self._atr_read = False
        self._atr: float | None = None
        self.best_bid = best_bid
        self.best_ask = best_ask
        self.rules = rules

    @property
    def atr(self) -> float | None:
        if not self._atr_read:
            self._atr = self._atr_of()
            self._atr_read = True
        return self._atr

    def view(self) -> MarketView:
        return trusted(
            MarketView,
            {
                "symbol": self.symbol,
                "last_price": self.last_price,
                "data_time_ms": self.data_time_ms,
                "atr": self.atr,
                "best_bid": self.best_bid,
                "best_ask": self.best_ask,
                "rules": self.rules,
            },
        )


def portfolio_facts(view: PortfolioView) -> PortfolioFacts:
    """A validated view's facts (its fields are already of their types)."""
    return PortfolioFacts(
        view.cash,
        view.equity,
        view.peak_equity,
        view.day_start_equity,
        {s: PositionFacts(p.quantity, p.avg_price) for s, p in view.positions.items()},
        view.elsewhere,
    )


def market_facts(view: MarketView) -> MarketFacts:
    atr = view.atr
    return MarketFacts(
        view.symbol,
        view.last_price,
        view.data_time_ms,
        lambda: atr,
        view.best_bid,
        view.best_ask,
        view.rules,
    )
