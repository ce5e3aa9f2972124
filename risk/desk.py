"""The gate as a live account uses it: one risk state per scope, loaded from the store, and
every verdict recorded with its inputs. The chat saves each change at once; the trading loop
buffers them and writes them in its bar's transaction, so a kill -9 before the commit leaves no
trace of a bar that never happened (order times, streaks, locks) and the replay decides alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from risk.gate import assess_facts, decide_facts
from risk.limits import RiskLimits
from risk.models import MarketView, PortfolioView, TradeSignal, Verdict
from risk.records import VerdictRecord, load_state, write_state, write_verdicts
from risk.state import RiskState, on_llm_failure, on_llm_success
from risk.views import MarketFacts, PortfolioFacts, market_facts, portfolio_facts
from store.db import Store

if TYPE_CHECKING:
    from sqlalchemy import Connection


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
        *,
        buffered: bool = False,
    ) -> None:
        self.store = store
        self.buffered = buffered
        self._verdicts: list[VerdictRecord] = []
        self._changed_ms: int | None = None  # when the unsaved state last changed
        self.scope = scope
        self.limits = limits
        self._portfolio = portfolio
        self._market = market
        self._now = now_ms
        self.state: RiskState = load_state(store, scope)

    def review(self, signal: TradeSignal) -> Verdict:
        """The chat's call: the views come from the callbacks the desk was built with."""
        return self.judge(
            signal,
            portfolio_facts(self._portfolio()),
            market_facts(self._market(signal.symbol)),
            self._now(),
        )

    def preview(self, signal: TradeSignal) -> Verdict:
        """The verdict on a proposal a person has yet to approve: recorded, but the state does
        not move, so a proposal that is turned down never counts towards the rate limits. The
        person's yes is judged again with `review`, as of then."""
        now = self._now()
        portfolio, market = (
            portfolio_facts(self._portfolio()),
            market_facts(self._market(signal.symbol)),
        )
        verdict = assess_facts(signal, portfolio, market, now, self.limits, self.state)
        self._record(signal, portfolio, market, now, verdict, self.state)
        return verdict

    def judge(
        self, signal: TradeSignal, portfolio: PortfolioFacts, market: MarketFacts, now_ms: int
    ) -> Verdict:
        """The runner's call: the facts are the runner's own, as in a backtest; the record
        keeps them as the boundary's views."""
        before = self.state
        verdict, self.state = decide_facts(signal, portfolio, market, now_ms, self.limits, before)
        self._record(signal, portfolio, market, now_ms, verdict, before)
        return verdict

    def _record(
        self,
        signal: TradeSignal,
        portfolio: PortfolioFacts,
        market: MarketFacts,
        now_ms: int,
        verdict: Verdict,
        before: RiskState,
    ) -> None:
        record = VerdictRecord(
            scope=self.scope,
            now_ms=now_ms,
            signal=signal,
            portfolio=portfolio.view(),
            market=market.view(),
            limits=self.limits,
            verdict=verdict,
            state_before=before,
            state_after=self.state,
        )
        self._verdicts.append(record)
        self._save(now_ms)

    def llm_result(self, ok: bool) -> None:
        """Consecutive failures enter safe mode; healthy calls in a row leave it. Persisted."""
        now = self._now()
        updated = (
            on_llm_success(self.state, self.limits)
            if ok
            else on_llm_failure(self.state, now, self.limits)
        )
        if updated is not self.state:
            self.state = updated
            self._save(now)

    def update(self, change: Callable[[RiskState], RiskState]) -> RiskState:
        """Apply an explicit transition (kill switch, reset, bookkeeping) and persist it."""
        self.state = change(self.state)
        self._save(self._now())
        return self.state

    def write(self, conn: Connection) -> None:
        """The buffered changes, inside the caller's transaction; `committed` forgets them."""
        write_verdicts(conn, self._verdicts)
        if self._changed_ms is not None:
            write_state(conn, self.state, self._changed_ms, self.scope)

    def committed(self) -> None:
        self._verdicts = []
        self._changed_ms = None

    def _save(self, now_ms: int) -> None:
        self._changed_ms = now_ms
        if not self.buffered:
            with self.store.engine.begin() as conn:
                self.write(conn)
            self.committed()
