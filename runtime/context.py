"""What a strategy sees at one bar's close: the point-in-time context the runner builds at
every decision, and the signals it makes from it. Compiled with the hot path (core.native):
a backtest builds one per decision."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

import numpy as np

from execution.feed import SymbolBars
from risk.models import (
    MarketView,
    OrderType,
    PortfolioView,
    SignalAction,
    SignalSource,
    TradeSignal,
)
from risk.state import RiskState
from risk.trusted import trusted

Prepared = dict[str, np.ndarray]


class Lender(Protocol):
    """What the runner lends a context at one bar: views and state built only when asked, and
    the place an agent reports each model call."""

    def portfolio(self, index: int) -> PortfolioView: ...

    def market_view(self, symbol: str, index: int) -> MarketView: ...

    def risk_state(self) -> RiskState: ...

    def holdings(self) -> dict[str, float]: ...

    def peers(self, name: str, index: int) -> dict[str, float]: ...

    def llm_result(self, ok: bool, now_ms: int) -> None: ...


Seat = tuple[
    str,
    SignalSource,
    str,
    SymbolBars,
    Prepared,
    float,
    bool,
    float | None,
    float | None,
    float | None,
]
"""A symbol's context fields that no step changes, in this order: strategy, source, symbol,
bars, prepared, size_pct, allow_short, stop_loss_pct, take_profit_pct and trailing_stop_pct."""


class Context:
    """What a strategy may see at bar t's close: bars and prepared arrays up to t (read-only
    views), its position, the portfolio and the clock. Nothing after t is reachable. Built at
    every decision, from the symbol's seat (what no step changes) and the bar's own fields."""

    __slots__ = (
        "_bars",
        "_lender",
        "_prepared",
        "allow_short",
        "index",
        "position",
        "size_pct",
        "source",
        "stop_loss_pct",
        "strategy",
        "symbol",
        "take_profit_pct",
        "time_ms",
        "trailing_stop_pct",
    )

    def __init__(
        self, seat: Seat, index: int, time_ms: int, position: float, lender: Lender
    ) -> None:
        (
            self.strategy,
            self.source,
            self.symbol,
            self._bars,
            self._prepared,
            self.size_pct,
            self.allow_short,
            self.stop_loss_pct,
            self.take_profit_pct,
            self.trailing_stop_pct,
        ) = seat
        self.index = index
        self.time_ms = time_ms
        self.position = position
        self._lender = lender

    @property
    def llm_result(self) -> Callable[[bool, int], None]:
        """Where an agent reports each model call's success (ok, its time)."""
        return self._lender.llm_result

    @property
    def market_view(self) -> Callable[[str], MarketView]:
        """A symbol's view at this bar, as the gate sees it."""
        lender, index = self._lender, self.index
        return lambda symbol: lender.market_view(symbol, index)

    @property
    def risk_state(self) -> Callable[[], RiskState]:
        return self._lender.risk_state

    @property
    def close(self) -> float:
        return float(self._bars.close[self.index])

    def value(self, name: str) -> float:
        """A prepared array's value at this bar."""
        return float(self._prepared[name][self.index])

    def history(self, name: str) -> np.ndarray:
        """A prepared array ('open', 'close', ... or an indicator) up to and including this bar."""
        source = getattr(self._bars, name) if name in _BAR_FIELDS else self._prepared[name]
        view = source[: self.index + 1]
        view.flags.writeable = False
        return view

    def across(self, name: str) -> dict[str, float]:
        """A prepared array's value at this bar for every symbol of the run, so a strategy can
        rank symbols against each other (still nothing after this bar)."""
        return self._lender.peers(name, self.index)

    def holdings(self) -> dict[str, float]:
        """Filled quantities of every symbol held (orders still waiting do not count)."""
        return self._lender.holdings()

    def portfolio(self) -> PortfolioView:
        """Cash, equity and positions marked at this bar's close (built on demand: it costs)."""
        return self._lender.portfolio(self.index)

    def buy(self, *, size_pct: float | None = None, rationale: str = "") -> TradeSignal:
        """Open or add to a long (or cover a short), with the run's stop-loss, take-profit and
        trailing stop."""
        return self._signal(_BUY, "buy", size_pct, +1, rationale)

    def sell(self, *, size_pct: float | None = None, rationale: str = "") -> TradeSignal:
        """Open or add to a short (only approved when the run allows shorts)."""
        return self._signal(_SELL, "sell", size_pct, -1, rationale)

    def close_position(self, *, rationale: str = "") -> TradeSignal:
        return _made(
            {
                "decision_id": self._decision_id("close"),
                "source": self.source,
                "symbol": self.symbol,
                "action": _CLOSE,
                "created_ms": self.time_ms,
                "rationale": rationale,
            }
        )

    def switch_to(self, direction: int) -> list[TradeSignal]:
        """Move the position to long (+1), flat (0) or short (-1): close what points the other
        way, then enter. Shorts are only proposed when the run allows them."""
        held = self.position
        signals: list[TradeSignal] = []
        if held * direction < 0 or (direction == 0 and held):
            signals.append(self.close_position(rationale="leave the opposite position"))
        if direction > 0 and held <= 0:
            signals.append(self.buy())
        elif direction < 0 and held >= 0 and self.allow_short:
            signals.append(self.sell())
        return signals

    def _signal(
        self,
        action: SignalAction,
        what: str,
        size_pct: float | None,
        direction: int,
        rationale: str,
    ) -> TradeSignal:
        stop = take = None
        loss, profit = self.stop_loss_pct, self.take_profit_pct
        if loss is not None or profit is not None:  # only these read the close
            price = self.close
            if loss is not None:
                stop = price * (1 - direction * loss)
            if profit is not None:
                take = price * (1 + direction * profit)
        return _made(
            {
                "decision_id": self._decision_id(what),
                "source": self.source,
                "symbol": self.symbol,
                "action": action,
                "order_type": _MARKET,
                "size_pct": self.size_pct if size_pct is None else size_pct,
                "stop_loss": stop,
                "take_profit": take,
                "trailing_stop_pct": self.trailing_stop_pct if direction > 0 else None,
                "created_ms": self.time_ms,
                "rationale": rationale,
            }
        )

    def _decision_id(self, what: str) -> str:
        """Deterministic, so the same run gives byte-identical reports and order ids."""
        return f"{self.strategy}:{self.symbol}:{self.time_ms}:{what}"


_BAR_FIELDS: Final = frozenset(("open", "high", "low", "close", "volume"))
# Enum members read once: on Python 3.11 `SignalAction.BUY` goes through the enum class's
# __getattr__, several times a plain read, and a context makes a signal at every decision.
_BUY: Final = SignalAction.BUY
_SELL: Final = SignalAction.SELL
_CLOSE: Final = SignalAction.CLOSE
_MARKET: Final = OrderType.MARKET
_FLOAT: Final = (float, type(None))
_TEMPLATE: Final = dict.fromkeys(TradeSignal.model_fields) | {
    name: field.default
    for name, field in TradeSignal.model_fields.items()
    if not field.is_required()
}


def _made(values: dict[str, object]) -> TradeSignal:
    """`TradeSignal(**values)`, built without validation when every value is already of its
    field's exact type. The context makes its ids, enums, times and prices itself; the sizes
    and the rationale come from a strategy or the run's settings, so anything else than a
    float (or None) and a str there (an int size, a numpy float) is validated. Garbage such as
    a NaN size is still a float, so the gate still sees and vetoes it (INVALID_SIGNAL)."""
    size, trail = values.get("size_pct"), values.get("trailing_stop_pct")
    if type(size) in _FLOAT and type(trail) in _FLOAT and type(values["rationale"]) is str:
        return trusted(TradeSignal, _TEMPLATE | values)
    return TradeSignal.model_validate(values)
