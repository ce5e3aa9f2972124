"""The gate as a live account uses it: one risk state per scope, loaded from and saved to the
store around every verdict, and every verdict recorded with its inputs."""

from __future__ import annotations

from collections.abc import Callable

from risk.gate import decide
from risk.limits import RiskLimits
from risk.models import MarketView, PortfolioView, TradeSignal, Verdict
from risk.records import VerdictRecord, load_state, record_verdicts, save_state
from risk.state import RiskState, on_llm_failure, on_llm_success
from store.db import Store


class RiskDesk:
    """Chat, paper and live share this; a backtest keeps its state in memory instead."""

    def __init__(
        self,
        store: Store,
        scope: str,
        limits: RiskLimits,
        portfolio: Callable[[], PortfolioView],
        market: Callable[[str], MarketView],
        now_ms: Callable[[], int],
    ) -> None:
        self.store = store
        self.scope = scope
        self.limits = limits
        self._portfolio = portfolio
        self._market = market
        self._now = now_ms
        self.state: RiskState = load_state(store, scope)

    def review(self, signal: TradeSignal) -> Verdict:
        """The chat's call: the views come from the callbacks the desk was built with."""
        return self.judge(signal, self._portfolio(), self._market(signal.symbol), self._now())

    def judge(
        self, signal: TradeSignal, portfolio: PortfolioView, market: MarketView, now_ms: int
    ) -> Verdict:
        """The runner's call: the views are the runner's own, as in a backtest."""
        before = self.state
        verdict, self.state = decide(signal, portfolio, market, now_ms, self.limits, before)
        record = VerdictRecord(
            scope=self.scope,
            now_ms=now_ms,
            signal=signal,
            portfolio=portfolio,
            market=market,
            limits=self.limits,
            verdict=verdict,
            state_before=before,
            state_after=self.state,
        )
        record_verdicts(self.store, [record])
        save_state(self.store, self.state, now_ms, self.scope)
        return verdict

    def llm_result(self, ok: bool) -> None:
        """Consecutive failures enter safe mode; a success leaves it. Persisted at once."""
        now = self._now()
        updated = on_llm_success(self.state) if ok else on_llm_failure(self.state, now, self.limits)
        if updated is not self.state:
            self.state = updated
            save_state(self.store, self.state, now, self.scope)

    def update(self, change: Callable[[RiskState], RiskState]) -> RiskState:
        """Apply an explicit transition (kill switch, reset) and persist it."""
        self.state = change(self.state)
        save_state(self.store, self.state, self._now(), self.scope)
        return self.state
