"""The backtest loop. Indicators and wake-up bars are precomputed; Python runs only where a
strategy may act or an order may fill, and the equity curve is written in vectorised spans.

Timing (docs/fills.md): a strategy decides at bar t's close; its signals go through the risk
gate at bar t+1's open (the submission instant, so the gate sees that open as the last price)
and approved orders reach the simulated executor there. Nothing can fill before t+1."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from backtest.config import BacktestConfig
from backtest.strategy import Context, Prepared, Strategy
from execution.feed import BarArrays
from execution.fees import FeeFn
from execution.ledger import Ledger, TradeRecord
from execution.orders import Fill, Rejection
from execution.simulator import SimulatedExecutor
from market.models import SymbolRules
from risk.gate import decide
from risk.limits import RiskLimits
from risk.models import (
    Approved,
    MarketView,
    PortfolioView,
    PositionView,
    TradeSignal,
    Verdict,
)
from risk.state import RiskState, on_equity, on_llm_failure, on_llm_success, on_trade_closed

DAY_MS = 86_400_000


@dataclass
class BacktestResult:
    """Everything a report needs; arrays are float64 and one entry per bar."""

    bars: BarArrays
    config: BacktestConfig
    limits: RiskLimits
    strategy: Strategy
    equity: np.ndarray
    trades: list[TradeRecord]
    fills: list[Fill]
    rejections: list[Rejection]
    prepared: dict[str, Prepared]
    fee_function: str | None = None
    decisions: list[TradeSignal] = field(default_factory=list)
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # by decision id
    approved: int = 0
    vetoes: Counter[str] = field(default_factory=Counter)
    adjustments: Counter[str] = field(default_factory=Counter)
    ambiguous_bars: int = 0
    open_orders: int = 0
    fees: float = 0.0
    turnover: float = 0.0


def run_backtest(
    bars: BarArrays,
    strategy: Strategy,
    rules: Mapping[str, SymbolRules],
    config: BacktestConfig | None = None,
    *,
    limits: RiskLimits | None = None,
    fee_fn: FeeFn | None = None,
) -> BacktestResult:
    """Replay `bars` through `strategy`, the risk gate and the simulated executor. `fee_fn`
    replaces `config.fees` (the gate still reserves `config.fees.taker` when sizing)."""
    config = config or BacktestConfig()
    limits = (limits or RiskLimits()).model_copy(update={"fee_rate": config.cost_reserve()})
    return _Run(bars, strategy, rules, config, limits, fee_fn).run()


class _Run:
    def __init__(
        self,
        bars: BarArrays,
        strategy: Strategy,
        rules: Mapping[str, SymbolRules],
        config: BacktestConfig,
        limits: RiskLimits,
        fee_fn: FeeFn | None,
    ) -> None:
        self.bars = bars
        self.strategy = strategy
        self.rules = rules
        self.config = config
        self.limits = limits
        self.ledger = Ledger(config.cash, allow_short=config.allow_short)
        self.executor = SimulatedExecutor(
            bars,
            self.ledger,
            rules,
            fees=fee_fn or config.fees,
            slippage=config.slippage,
            limit_on_touch=config.limit_on_touch,
        )
        self.state = RiskState()
        self.tracked: tuple[float, int] | None = None
        self.equity = np.empty(len(bars))
        self.cursor = 0  # the first bar whose equity is not written yet
        self.processed = -1  # the last bar whose fills are done
        self.peak = config.cash
        self.peak_until = 0
        self.day = (-1, 0)
        self.pending: list[TradeSignal] = []
        self.trades_seen = 0
        self.result = BacktestResult(
            bars=bars,
            config=config,
            limits=limits,
            strategy=strategy,
            equity=self.equity,
            trades=[],
            fills=self.executor.fills,
            rejections=self.executor.rejections,
            prepared={},
            fee_function=None if fee_fn is None else getattr(fee_fn, "__name__", repr(fee_fn)),
        )

    def run(self) -> BacktestResult:
        bars, last = self.bars, len(self.bars) - 1
        prepared = {s: self.strategy.prepare(b) for s, b in bars.symbols.items()}
        wakes = {s: np.asarray(self.strategy.wake(p), dtype=bool) for s, p in prepared.items()}
        any_wake = np.zeros(len(bars), dtype=bool)
        for mask in wakes.values():
            any_wake |= mask
        any_wake[last] = False  # a decision on the last close could never fill
        for t in np.flatnonzero(any_wake).tolist():
            self._advance(t)
            for symbol, mask in wakes.items():
                if mask[t]:
                    self.pending.extend(self.strategy.decide(self._context(symbol, t, prepared)))
        self._advance(last)
        return self._finish(prepared)

    def _advance(self, upto: int) -> None:
        """Bring every bar up to `upto` (inclusive) to its close: fills, then equity. A bar's
        equity is written with the span after it, once its fills are done (`processed`)."""
        executor = self.executor
        while self.cursor <= upto:
            bar = self.cursor
            if self.pending and self.processed < bar:
                self._process(bar, self.pending)
                self.pending = []
            first = max(bar, self.processed + 1)
            event = None
            if not executor.idle and first <= upto:
                event = executor.next_event(first, upto)
            if event is None:
                self._write_equity(bar, upto + 1)
                return
            self._write_equity(bar, event)
            self._process(event, [])

    def _process(self, bar: int, signals: list[TradeSignal]) -> None:
        executor = self.executor
        if not executor.idle:
            executor.open_phase(bar)
        if signals:
            self._submit(bar, signals)
        if not executor.idle:
            executor.intrabar_phase(bar)
        trades = self.ledger.trades
        for trade in trades[self.trades_seen :]:
            self.state = on_trade_closed(self.state, trade.pnl, trade.exit_time)
        self.trades_seen = len(trades)
        self.processed = bar

    def _submit(self, bar: int, signals: list[TradeSignal]) -> None:
        """Each signal through the gate at this bar's open, in order, each seeing the fills of
        the ones before it (a close frees the cash the next entry is sized with)."""
        result, ledger = self.result, self.ledger
        now = int(self.bars.open_time[bar])
        seen = int(self.bars.close_time[bar - 1])
        marks = {s: float(b.open[bar]) for s, b in self.bars.symbols.items()}
        self._track_equity(ledger.equity(marks), now)
        for signal in signals:
            result.decisions.append(signal)
            market = MarketView(
                symbol=signal.symbol,
                last_price=marks[signal.symbol],
                data_time_ms=seen,
                rules=self.rules[signal.symbol],
            )
            verdict, self.state = decide(
                signal, self._portfolio(bar, marks), market, now, self.limits, self.state
            )
            result.verdicts[signal.decision_id] = verdict
            if not isinstance(verdict, Approved):
                result.vetoes.update(reason.code.value for reason in verdict.reasons)
                continue
            result.approved += 1
            if verdict.adjustments:
                result.adjustments.update(reason.code.value for reason in verdict.adjustments)
            self.executor.submit(verdict.order, bar)

    def _track_equity(self, equity: float, now: int) -> None:
        """Feed the risk state's breakers (daily loss, drawdown). The same equity on the same UTC
        day cannot change the state, so that call is skipped: flat accounts decide often."""
        key = (equity, now // DAY_MS)
        if key != self.tracked:
            self.state = on_equity(self.state, equity, now, self.limits)
            self.tracked = key

    def _portfolio(self, bar: int, marks: dict[str, float]) -> PortfolioView:
        """The account as the gate may know it: marked at `marks`, with the peak and the UTC
        day's starting equity taken from closes already written (never from later bars)."""
        ledger = self.ledger
        equity = ledger.equity(marks)
        return PortfolioView(
            cash=ledger.cash,
            equity=equity,
            peak_equity=max(self._peak(), equity),
            day_start_equity=self._day_start_equity(bar),
            positions={
                s: PositionView(quantity=q, avg_price=ledger.avg_price(s)) for s, q in ledger.held()
            },
        )

    def _peak(self) -> float:
        """The highest close-marked equity so far; folded in lazily, once per decision."""
        if self.peak_until < self.cursor:
            self.peak = max(self.peak, float(self.equity[self.peak_until : self.cursor].max()))
            self.peak_until = self.cursor
        return self.peak

    def _day_start_equity(self, bar: int) -> float:
        """Equity at the last close before this bar's UTC day began (the starting cash on day 1)."""
        times = self.bars.open_time
        day = int(times[bar]) // DAY_MS
        if day != self.day[0]:
            self.day = (day, int(np.searchsorted(times, day * DAY_MS)))
        first = self.day[1]
        return float(self.equity[first - 1]) if first > 0 else self.config.cash

    def _write_equity(self, start: int, stop: int) -> None:
        """Holdings are constant over [start, stop): equity is cash plus positions at the close."""
        if stop <= start:
            return
        cash = self.ledger.cash
        held = [(q, self.bars.symbols[s].close) for s, q in self.ledger.held()]
        if stop - start == 1:
            value = cash
            for q, close in held:
                value += q * float(close[start])
            self.equity[start] = value
        else:
            span = self.equity[start:stop]
            span.fill(cash)
            for q, close in held:
                span += q * close[start:stop]
        self.cursor = stop

    def _context(self, symbol: str, t: int, prepared: dict[str, Prepared]) -> Context:
        bars = self.bars

        def portfolio() -> PortfolioView:
            return self._portfolio(t, {s: float(b.close[t]) for s, b in bars.symbols.items()})

        return Context(
            strategy=self.strategy.name,
            source=self.strategy.source,
            symbol=symbol,
            index=t,
            time_ms=int(bars.close_time[t]),
            bars=bars.symbols[symbol],
            prepared=prepared[symbol],
            position=self.ledger.quantity(symbol),
            portfolio=portfolio,
            size_pct=self.config.size_pct,
            allow_short=self.config.allow_short,
            stop_loss_pct=self.config.stop_loss_pct,
            take_profit_pct=self.config.take_profit_pct,
            llm_result=self._llm_result,
        )

    def _llm_result(self, ok: bool, now_ms: int) -> None:
        """An agent's call failed or worked: N failures in a row enter safe mode, as live."""
        if ok:
            self.state = on_llm_success(self.state)
        else:
            self.state = on_llm_failure(self.state, now_ms, self.limits)

    def _finish(self, prepared: dict[str, Prepared]) -> BacktestResult:
        last = len(self.bars) - 1
        marks = {s: float(b.close[last]) for s, b in self.bars.symbols.items()}
        ledger, executor, result = self.ledger, self.executor, self.result
        result.trades = ledger.trades + ledger.marked_trades(
            marks, last, int(self.bars.open_time[last])
        )
        result.prepared = prepared
        result.ambiguous_bars = executor.ambiguous_bars
        result.open_orders = len(executor.working)
        result.fees = ledger.fees
        result.turnover = ledger.turnover
        return result
