"""The one runner. `step(index)` is everything that happens at a bar's close, in one order for
every mode: the venue's fills for the bar, the risk bookkeeping, protective exits, the strategy's
decisions for the symbols that are due, the gate, and the venue. A backtest steps only the bars
where something can happen and folds the quiet ones in between; paper and live step every bar."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import numpy as np

from execution.feed import BarArrays, SymbolBars
from market.models import iso_ms
from risk.models import (
    Approved,
    Elsewhere,
    MarketView,
    PortfolioView,
    Reason,
    ReasonCode,
    SignalAction,
    TradeSignal,
    Verdict,
    Vetoed,
)
from risk.protections import Lock, TradingState
from risk.state import (
    RiskState,
    in_safe_mode,
    on_equity,
    on_equity_series,
    on_llm_failure,
    on_llm_success,
    on_trade_closed,
)
from risk.views import MarketFacts, PortfolioFacts
from runtime.context import Context, Prepared, Seat
from runtime.hours import ClosedPolicy, TradingHours
from runtime.market import Market
from runtime.portfolio import account_facts
from runtime.ports import RiskBook, Venue
from runtime.strategy import Strategy

log: Final = logging.getLogger(__name__)
DAY_MS: Final = 86_400_000


class GateCall(NamedTuple):
    """One signal through the gate: what it saw, what it said, what the venue answered. A
    named tuple: built once per signal, several times cheaper than a frozen dataclass."""

    signal: TradeSignal
    portfolio: PortfolioView | None  # None for a symbol the run does not trade
    market: MarketView | None
    verdict: Verdict
    execution: dict[str, Any] | None


Observer = Callable[[GateCall], None]


@dataclass(frozen=True)
class Sizing:
    """The defaults a classic strategy's signals carry (backtest flags, or agent-trade's)."""

    size_pct: float = 1.0
    allow_short: bool = False
    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    trailing_stop_pct: float | None = None


@dataclass
class Halted:
    """Decision bars one halt skipped: the strategy was not asked and nothing was gated (a
    halted loop pays for no model call), so reports say so here instead of in verdicts."""

    locks: tuple[Lock, ...]  # the locks that halted the account
    first_ms: int  # the first and last skipped bar's close
    last_ms: int
    bars: int = 1

    @property
    def codes(self) -> list[str]:
        return [lock.code.value for lock in self.locks]

    @property
    def message(self) -> str:
        return "; ".join(f"{lock.code.value}: {lock.message}" for lock in self.locks)

    def covers(self, at_ms: int) -> bool:
        return self.first_ms <= at_ms <= self.last_ms


@dataclass
class Tally:
    """Every signal the runner gated and what became of it, for reports and status; and the
    decision bars a halt skipped."""

    signals: list[TradeSignal] = field(default_factory=list)  # kept where a reader wants them
    by_action: Counter[SignalAction] = field(default_factory=Counter)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    approved: int = 0
    vetoes: Counter[str] = field(default_factory=Counter)
    adjustments: Counter[str] = field(default_factory=Counter)
    halted: list[Halted] = field(default_factory=list)

    def skipped(self, locks: tuple[Lock, ...], now: int) -> None:
        """A decision bar at `now` skipped by these halting locks: the same halt goes on, or
        a new one starts."""
        last = self.halted[-1] if self.halted else None
        if last is not None and last.locks == locks:
            last.last_ms = now
            last.bars += 1
            return
        self.halted.append(Halted(locks, now, now))


class Runner:
    """Owns the market view, the portfolio view and the route from signal to venue."""

    def __init__(
        self,
        *,
        strategy: Strategy,
        market: Market,
        venue: Venue,
        risk: RiskBook,
        prepared: Callable[[str], Prepared],
        sizing: Sizing | None = None,
        run_id: str = "",
        observer: Observer | None = None,
        decision_failed: Callable[[str, int, Exception], None] | None = None,
        hours: TradingHours | None = None,
        elsewhere: Callable[[], Elsewhere] | None = None,
        keep_signals: bool = True,
    ) -> None:
        self.strategy = strategy
        self.market = market
        self.venue = venue
        self.risk = risk
        self.prepared = prepared
        self.sizing = sizing or Sizing()
        self.run_id = run_id or strategy.name
        self.observer = observer
        self.decision_failed = decision_failed  # unattended: record and go on; else raise
        self.hours = hours  # None: always open (crypto)
        self.elsewhere = elsewhere  # the portfolio's other venues, for its exposure limits
        self.keep_signals = keep_signals  # False: the tally counts signals and verdicts only
        self.tally = Tally()
        self.trades_seen = len(venue.ledger.trades)
        self._tracked: tuple[float, int] | None = None
        self._wakes: dict[str, tuple[Prepared, np.ndarray]] = {}
        self._seats: dict[str, Seat] = {}
        self._llm_outcome: tuple[bool, int] | None = None
        strategy.bind(market.feed)

    def extend(self, feed: BarArrays) -> None:
        """Paper and live: the feed has more bars; the market and the strategy follow."""
        self.market.extend(feed)
        self.strategy.bind(feed)

    # -- the step ------------------------------------------------------------------------------

    def step(self, index: int, *, decide: bool = True, fold_close: bool = False) -> bool:
        """Bar `index` has closed. `decide=False` only where no order could ever fill (a
        backtest's last bar). `fold_close=True`: a backtest's bar where no strategy wakes and
        only orders can fill; unless a protective exit must go through the gate here, its
        close is left to the caller's `fold_equity` with the quiet closes after it (says
        True), exactly as the equity bookkeeping of this step would have taken it."""
        tradable = self.hours is None or self.tradable(index)
        venue = self.venue
        venue.on_bar(index, fills=tradable)
        exits = venue.protective_exits(index) if tradable else []
        if fold_close and not exits:
            self._book_trades()
            return True
        now: int = self.market.feed.close_time.item(index)  # item(): no numpy scalar made
        self._bookkeeping(index, now)
        for symbol, why in exits:
            self.submit(self._protective(symbol, why, now), index, now)
        if not decide:
            return False
        state = self.risk.state
        if state.locks and state.trading_state(now) is TradingState.HALTED:
            self._skip_halted(index, now, state)
            return False
        for symbol in self.market.feed.symbols:
            prepared = self.prepared(symbol)
            if self._wake(symbol, prepared).item(index):
                for signal in self._decide(symbol, index, prepared, now):
                    self.submit(signal, index, now)
                if self._llm_outcome is not None:
                    self._settle_llm()
        return False

    def _skip_halted(self, index: int, now: int, state: RiskState) -> None:
        """A halted bar where the strategy would have decided goes on the tally's record."""
        feed = self.market.feed
        if any(self._wake(s, self.prepared(s)).item(index) for s in feed.symbols):
            locks = tuple(x for x in state.active_locks(now) if x.level is TradingState.HALTED)
            self.tally.skipped(locks, now)

    def _wake(self, symbol: str, prepared: Prepared) -> np.ndarray:
        """The strategy's wake mask, computed once per prepared arrays (a backtest prepares
        once; paper and live prepare each bar)."""
        known = self._wakes.get(symbol)
        if known is None or known[0] is not prepared:
            known = (prepared, np.asarray(self.strategy.wake(prepared), dtype=bool))
            self._wakes[symbol] = known
        return known[1]

    def _decide(self, symbol: str, index: int, prepared: Prepared, now: int) -> list[TradeSignal]:
        try:
            return self.strategy.decide(self._context(symbol, index, prepared, now))
        except Exception as exc:
            if self.decision_failed is None:
                raise
            self.decision_failed(symbol, now, exc)
            return []

    def now(self, index: int) -> int:
        at: int = self.market.feed.close_time.item(index)
        return at

    def tradable(self, index: int) -> bool:
        """The one place a run asks its market hours: may bar `index` fill orders. Outside
        them orders wait, resting stops included, so a gap over a close fills at the open."""
        hours = self.hours
        return hours is None or hours.tradable_at(int(self.market.feed.open_time[index]))

    def market_state(self, index: int) -> str | None:
        """Open or closed and the next open, at bar `index`'s close (None: no hours)."""
        return None if self.hours is None else self.hours.state(self.now(index))

    def equity(self, index: int) -> float:
        return self.venue.ledger.equity(self.market.marks(index))

    def portfolio(self, index: int) -> PortfolioView:
        return self.facts(index).view()

    def facts(self, index: int) -> PortfolioFacts:
        """The account as the gate judges it at bar `index`'s close."""
        return account_facts(
            self.venue.ledger,
            self.market.marks(index),
            self.risk.state,
            self.venue.pending(),
            self.risk.limits.fee_rate,
            None if self.elsewhere is None else self.elsewhere(),
        )

    def submit(self, signal: TradeSignal, index: int, now: int | None = None) -> Verdict:
        """One signal through the gate at bar `index`'s close (`now`, if the caller has it);
        approved orders go to the venue."""
        tally = self.tally
        fields = signal.__dict__  # read once: a model's attribute read is slower than a dict's
        symbol = fields["symbol"]
        tally.by_action[fields["action"]] += 1
        if self.keep_signals:
            tally.signals.append(signal)
        portfolio: PortfolioFacts | None = None
        market: MarketFacts | None = None
        if self.hours is not None and self._vetoed_closed(signal, index):
            verdict: Verdict = Vetoed(
                reasons=[
                    Reason(
                        code=ReasonCode.MARKET_CLOSED,
                        message=f"decided while closed ({self.market_state(index)})",
                    )
                ]
            )
        elif symbol not in self.market.feed.symbols:
            verdict = Vetoed(
                reasons=[
                    Reason(
                        code=ReasonCode.UNKNOWN_SYMBOL,
                        message=f"{symbol} is not traded by this run",
                    )
                ]
            )
        else:
            portfolio = self.facts(index)
            market = self.market.facts(symbol, index)
            if now is None:
                now = self.now(index)
            verdict = self.risk.judge(signal, portfolio, market, now)
        if self.keep_signals:
            tally.verdicts[fields["decision_id"]] = verdict
        execution = None
        if isinstance(verdict, Approved):
            tally.approved += 1
            _count(tally.adjustments, verdict.adjustments)
            execution = self.venue.execute(verdict.order)
        else:
            _count(tally.vetoes, verdict.reasons)
        if self.observer is not None:
            self.observer(
                GateCall(
                    signal,
                    None if portfolio is None else portfolio.view(),
                    None if market is None else market.view(),
                    verdict,
                    execution,
                )
            )
        return verdict

    def _vetoed_closed(self, signal: TradeSignal, index: int) -> bool:
        """By config, an entry decided on a bar outside the hours vetoed instead of queued."""
        hours = self.hours
        return (
            hours is not None
            and hours.config.when_closed is ClosedPolicy.VETO
            and not signal.protective
            and not self.tradable(index)
        )

    # -- risk bookkeeping ----------------------------------------------------------------------

    def _book_trades(self) -> None:
        """The trades closed since the last step into the losing streak."""
        trades = self.venue.ledger.trades
        if len(trades) > self.trades_seen:
            for trade in trades[self.trades_seen :]:
                self._trade_closed(trade.pnl, trade.exit_time)
            self.trades_seen = len(trades)

    def _bookkeeping(self, index: int, now: int) -> None:
        self._book_trades()
        equity = self.venue.ledger.equity(self.market.marks(index))
        key = (equity, now // DAY_MS)
        if key != self._tracked:  # the same equity on the same day cannot change the state
            limits = self.risk.limits
            self.risk.update(lambda s: on_equity(s, equity, now, limits))
            self._tracked = key

    def _trade_closed(self, pnl: float, at: int) -> None:
        """A closed trade into the losing streak (a closure of its own: compiled, a lambda
        over the loop's trade cannot bind it, and a partial was a keyword call)."""
        self.risk.update(lambda s: on_trade_closed(s, pnl, at))

    def fold_equity(
        self, equity: np.ndarray, close_time: np.ndarray, flat: float | None = None
    ) -> None:
        """The closes of bars a backtest skipped, exactly as stepping each would have seen them
        (`flat`: the one value they all hold, where the caller knows it)."""
        if not len(equity):
            return
        limits = self.risk.limits
        self.risk.update(lambda s: on_equity_series(s, equity, close_time, limits, flat))
        last: int = close_time.item(-1)
        self._tracked = (float(equity[-1]), last // DAY_MS)

    def _protective(self, symbol: str, why: str, now: int) -> TradeSignal:
        """A stop or target the venue cannot hold itself: an exit through the gate."""
        return TradeSignal(
            decision_id=f"{self.run_id}:{symbol}:{now}:exit",
            source=self.strategy.source,
            symbol=symbol,
            action=SignalAction.CLOSE,
            rationale=why,
            created_ms=now,
            protective=True,
        )

    # -- the strategy's view -------------------------------------------------------------------

    def _context(self, symbol: str, index: int, prepared: Prepared, now: int) -> Context:
        """The strategy's view at bar `index`: the fields that stay from step to step are
        gathered once per symbol (and per prepared arrays and bars: paper and live renew
        them); the rest it asks of the runner, when the strategy asks (runtime.context.Lender).
        """
        bars = self.market.feed.symbols[symbol]
        seat = self._seats.get(symbol)
        if seat is None or seat[4] is not prepared or seat[3] is not bars:
            seat = self._seats[symbol] = self._seat(symbol, bars, prepared)
        return Context(seat, index, now, self.venue.ledger.quantity(symbol), self)

    def _seat(self, symbol: str, bars: SymbolBars, prepared: Prepared) -> Seat:
        """A symbol's context fields that no step changes."""
        sizing = self.sizing
        return (
            self.strategy.name,
            self.strategy.source,
            symbol,
            bars,
            prepared,
            sizing.size_pct,
            sizing.allow_short,
            sizing.stop_loss_pct,
            sizing.take_profit_pct,
            sizing.trailing_stop_pct,
        )

    # -- what a context may ask (runtime.context.Lender) ------------------------------------

    def market_view(self, symbol: str, index: int) -> MarketView:
        return self.market.view(symbol, index)

    def risk_state(self) -> RiskState:
        return self.risk.state

    def holdings(self) -> dict[str, float]:
        return dict(self.venue.ledger.held())

    def peers(self, name: str, index: int) -> dict[str, float]:
        return {s: float(self.prepared(s)[name][index]) for s in self.market.symbols}

    def llm_result(self, ok: bool, now_ms: int) -> None:
        """An agent's model call failed or worked; counted once the gate has judged what the
        call proposed, so the answer that ends safe mode is not itself let through."""
        self._llm_outcome = (ok, now_ms)

    def _settle_llm(self) -> None:
        """N failures in a row enter safe mode, M healthy calls in a row leave it; each change
        is logged with the account's state."""
        outcome, self._llm_outcome = self._llm_outcome, None
        if outcome is None:
            return
        ok, now_ms = outcome
        limits = self.risk.limits
        before = in_safe_mode(self.risk.state)
        after = in_safe_mode(
            self.risk.update(
                (lambda s: on_llm_success(s, limits))
                if ok
                else (lambda s: on_llm_failure(s, now_ms, limits))
            )
        )
        if after != before:
            log.warning(
                "%s safe mode at %s: %s",
                "entered" if after else "left",
                iso_ms(now_ms),
                "AI entries vetoed, exits allowed" if after else "healthy model calls again",
                extra={"run": self.run_id},
            )


def _count(counter: Counter[str], reasons: list[Reason]) -> None:
    """Each reason's code once into `counter` (what Counter.update would do, without building a
    generator per signal). A code's text is `str` of it, a StrEnum: `.value` is a Python
    property, several times slower, and a backtest counts a reason at most signals."""
    for reason in reasons:
        counter[str(reason.code)] += 1
