"""What tools may see at one decision: bars closed at or before the decision time, the account as
known then, and the risk settings. Built per decision, so a backtest tool cannot peek ahead."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from backtest.config import BacktestConfig
from market.indicators import IndicatorConfig, compute_indicators
from market.models import EXCHANGE, SymbolRules
from risk.limits import RiskLimits
from risk.models import MarketView, PortfolioView, SignalSource
from risk.state import RiskState

if TYPE_CHECKING:
    from arbitrage.spread import VenueBook
    from market.books import BookSource


class MarketData:
    """Full candle frames per symbol with their indicators computed once (they are causal), of
    which a decision sees only the rows whose bar closed by its time. Plain symbols are the
    run's `exchange`, the ones it trades; a venue-qualified key (`bybit:BTCUSDT`) is another
    venue's bars, for the tools to read, never traded."""

    def __init__(
        self,
        frames: Mapping[str, pd.DataFrame],
        interval: str,
        indicator_config: IndicatorConfig | None = None,
        *,
        exchange: str = EXCHANGE,
    ) -> None:
        self.frames = {s: f.reset_index(drop=True) for s, f in frames.items()}
        self.exchange = exchange
        self.interval = interval
        self.indicator_config = indicator_config or IndicatorConfig()
        self._indicators: dict[str, pd.DataFrame] = {}
        self._close_times = {
            s: f["close_time"].to_numpy(dtype=np.int64) for s, f in self.frames.items()
        }

    @property
    def symbols(self) -> list[str]:
        """The run's own symbols: the ones it decides on and trades."""
        return [s for s in self.frames if ":" not in s]

    def visible_rows(self, symbol: str, now_ms: int) -> int:
        """How many leading rows had closed by `now_ms`."""
        return int(np.searchsorted(self._close_times[symbol], now_ms, side="right"))

    def candles(self, symbol: str, now_ms: int) -> pd.DataFrame:
        return self.frames[symbol].iloc[: self.visible_rows(symbol, now_ms)]

    def indicators(self, symbol: str, now_ms: int) -> pd.DataFrame:
        if symbol not in self._indicators:
            self._indicators[symbol] = compute_indicators(
                self.frames[symbol], self.indicator_config
            )
        return self._indicators[symbol].iloc[: self.visible_rows(symbol, now_ms)]


class OpenOrder(BaseModel):
    client_order_id: str
    symbol: str
    side: str
    order_type: str
    quantity: str
    status: str


class AccountBook(BaseModel):
    """What a paper or exchange account knows beyond the gate's view: its PnL and its orders."""

    account: str
    initial_cash_usdt: float
    realised_pnl_usdt: float
    unrealised_pnl_usdt: float
    fees_usdt: float
    fills: int
    open_orders: list[OpenOrder]


def flat_portfolio(cash: float) -> Callable[[], PortfolioView]:
    """The account a stateless decision assumes: all cash, nothing held."""
    view = PortfolioView(cash=cash, equity=cash, peak_equity=cash, day_start_equity=cash)
    return lambda: view


@dataclass
class ToolEnv:
    """The world of one decision. `portfolio` and `risk_state` are read at call time; `cancel`
    is absent where no venue holds working orders (a backtest decision), `book` where no depth
    stream runs (a backtest, a chat); `view` is the runner's market view, so `assess_risk`
    previews exactly what the runner's gate will see; `backtest` is `run_backtest`'s account
    and fill model (the chat's: agent-backtest's, from the settings' backtest.*)."""

    market: MarketData
    now_ms: int
    rules: Mapping[str, SymbolRules]
    portfolio: Callable[[], PortfolioView]
    limits: RiskLimits = field(default_factory=RiskLimits)
    risk_state: Callable[[], RiskState] = RiskState
    source: SignalSource = SignalSource.AI
    decision_id: str = ""
    stateful: bool = True
    cancel: Callable[[str], str] | None = None
    view: Callable[[str], MarketView] | None = None  # the runner's market view, where one runs
    book: BookSource | None = None
    account: Callable[[], AccountBook] | None = None  # a persisted account's PnL and orders
    loops: Callable[[str | None], dict[str, Any]] | None = None  # a stored loop's status
    venue_books: Callable[[str], list[VenueBook]] | None = None  # one book per venue, with fees
    market_state: Callable[[int], str] | None = None  # US stocks: the exchange's hours at a time
    backtest: BacktestConfig = field(default_factory=BacktestConfig)

    @cached_property
    def symbols(self) -> list[str]:
        """Every series with a bar closed by now, another venue's (`bybit:BTCUSDT`) included."""
        return [s for s in self.market.frames if self.market.visible_rows(s, self.now_ms) > 0]
