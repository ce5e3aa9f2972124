"""What the runner is handed: a venue that fills or sends orders, and a risk book that keeps the
risk state. Backtest, paper and live hand it different ones; the runner's code is the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from execution.ledger import Ledger
from execution.orders import Pending
from risk.gate import decide_facts
from risk.limits import RiskLimits
from risk.models import ApprovedOrder, TradeSignal, Verdict
from risk.state import RiskState
from risk.views import MarketFacts, PortfolioFacts


class Venue(Protocol):
    """The simulated venue (backtest and paper) or an exchange (testnet, live)."""

    ledger: Ledger

    def on_bar(self, index: int, *, fills: bool = True) -> object:
        """Apply what happened at the market's bar `index`: fills, settlements. `fills=False`
        outside market hours: orders wait for the next bar that may fill them. What it returns
        is the venue's own business (the simulator's placed orders, for paper); the runner
        ignores it."""

    def execute(self, order: ApprovedOrder) -> dict[str, Any]:
        """Take a sealed order; anything else raises."""

    def pending(self) -> list[Pending]:
        """Orders taken but not filled yet, which the gate counts."""

    def protective_exits(self, index: int) -> list[tuple[str, str]]:
        """(symbol, why) for positions whose stop or target bar `index` crossed, where the
        venue does not hold them itself."""


class RiskBook(Protocol):
    """Where the risk state lives: memory in a backtest, the store on paper and live."""

    limits: RiskLimits

    @property
    def state(self) -> RiskState: ...

    def judge(
        self, signal: TradeSignal, portfolio: PortfolioFacts, market: MarketFacts, now_ms: int
    ) -> Verdict: ...

    def update(self, change: Callable[[RiskState], RiskState]) -> RiskState: ...


class MemoryRisk:
    """A backtest's risk book: the same gate and transitions, kept in memory."""

    def __init__(self, limits: RiskLimits, state: RiskState | None = None) -> None:
        self.limits = limits
        self.state = state or RiskState()

    def judge(
        self, signal: TradeSignal, portfolio: PortfolioFacts, market: MarketFacts, now_ms: int
    ) -> Verdict:
        verdict, self.state = decide_facts(
            signal, portfolio, market, now_ms, self.limits, self.state
        )
        return verdict

    def update(self, change: Callable[[RiskState], RiskState]) -> RiskState:
        self.state = change(self.state)
        return self.state
