"""The backtest driver of the one runner (runtime.runner). Indicators and wake-up bars are
precomputed; the runner steps only bars where a strategy may act or an order may fill, and the
quiet bars between are folded: the equity curve in vectorised spans, the risk breakers exactly
as stepping each close would trip them. Paper and live step every bar through the same runner.

Timing (docs/fills.md): a strategy decides at bar t's close; its signals go through the risk
gate there, on the close and ATR of bar t, and approved orders are placed at bar t+1's open.
Nothing can fill before t+1."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from backtest.config import BacktestConfig
from core.collector import collector_relaxed
from execution.feed import BarArrays
from execution.fees import FeeFn
from execution.ledger import Ledger, TradeRecord
from execution.orders import Fill, Rejection
from execution.simulator import SimulatedExecutor
from market.corporate import CorporateActions
from market.models import SymbolRules
from risk.limits import RiskLimits
from risk.models import SignalAction, TradeSignal, Verdict
from runtime.hours import TradingHours
from runtime.market import Market
from runtime.ports import MemoryRisk
from runtime.runner import GateCall, Halted, Observer, Runner, Sizing
from runtime.strategy import Prepared, Strategy
from runtime.warmup import joined


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
    hours: TradingHours | None = None  # an equity run's market hours; None: always open
    decisions: list[TradeSignal] = field(default_factory=list)  # if the run kept them
    signals_by_action: Counter[SignalAction] = field(default_factory=Counter)
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # by decision id
    gate_calls: list[GateCall] = field(default_factory=list)  # for the veto ledger, if kept
    approved: int = 0
    vetoes: Counter[str] = field(default_factory=Counter)
    adjustments: Counter[str] = field(default_factory=Counter)
    halted: list[Halted] = field(default_factory=list)  # decision bars a halt skipped
    ambiguous_bars: int = 0
    open_orders: int = 0
    fees: float = 0.0
    turnover: float = 0.0
    venue: SimulatedExecutor | None = None  # the final account, open orders and brackets
    actions: CorporateActions | None = None  # splits and dividends applied to raw prices
    warmup: BarArrays | None = None  # the bars before `bars` the indicators started from
    marks: Mapping[str, np.ndarray] = field(default_factory=dict)  # Market.mark_series

    @property
    def warmup_left(self) -> int:
        """The strategy's warm-up still inside the window, after the bars before it."""
        return max(self.strategy.warmup - (0 if self.warmup is None else len(self.warmup)), 0)

    def first_tradable(self) -> int:
        """The first bar from the end of the warm-up on that the run could trade in (a stock's
        pre- and post-market bars fill nothing): where Buy & Hold buys. len(bars) if none."""
        start = self.warmup_left
        if self.hours is None or start >= len(self.bars):
            return start
        open_ms = self.bars.open_time[start:]
        return start + int(np.argmax(np.r_[self.hours.tradable(open_ms), True]))


def run_backtest(
    bars: BarArrays,
    strategy: Strategy,
    rules: Mapping[str, SymbolRules],
    config: BacktestConfig | None = None,
    *,
    limits: RiskLimits | None = None,
    fee_fn: FeeFn | None = None,
    observer: Observer | None = None,
    hours: TradingHours | None = None,
    actions: CorporateActions | None = None,
    keep_signals: bool = True,
    warmup: BarArrays | None = None,
) -> BacktestResult:
    """Replay `bars` through `strategy`, the risk gate and the simulated executor. `fee_fn`
    replaces `config.fees` (the gate still reserves `config.fees.taker` when sizing);
    `observer` sees every gate call with the views the gate was handed; `hours` are an
    equity's market hours (orders fill only inside them); `actions` the splits and dividends
    of raw prices (execution.corporate). `keep_signals=False` leaves `decisions`, `verdicts`
    and `gate_calls` empty (`signals_by_action` and the verdicts' counts stay): a report that
    reads only counts spares holding every signal, verdict, order and view (~2 KB each),
    which the collector would also rescan. `warmup`: the bars just before `bars` (the same
    symbols), which the strategy's indicators and the gate's ATR start from, as the paper
    loop's start from its history; only `bars` are traded and reported."""
    config = config or BacktestConfig()
    limits = (limits or RiskLimits()).with_cost_reserve(config.cost_reserve())
    run = _Run(
        bars,
        strategy,
        rules,
        config,
        limits,
        fee_fn,
        observer,
        hours,
        actions,
        keep_signals,
        warmup,
    )
    with collector_relaxed():  # few cycles among the run's objects (core.collector)
        return run.run()


def _recorder(calls: list[GateCall], observer: Observer | None) -> Observer:
    """Every gate call into the result, then to the caller's observer. Not a bound method of
    the run: that cycle (run -> runner -> run) kept every result for the collector to free."""
    if observer is None:
        return calls.append

    def record(call: GateCall) -> None:
        calls.append(call)
        observer(call)

    return record


class _Run:
    def __init__(
        self,
        bars: BarArrays,
        strategy: Strategy,
        rules: Mapping[str, SymbolRules],
        config: BacktestConfig,
        limits: RiskLimits,
        fee_fn: FeeFn | None,
        observer: Observer | None,
        hours: TradingHours | None = None,
        actions: CorporateActions | None = None,
        keep_signals: bool = True,
        warmup: BarArrays | None = None,
    ) -> None:
        self.bars = bars
        self.warmup = warmup
        self.actions = actions or CorporateActions({})
        self.has_actions = bool(self.actions)
        self.strategy = strategy
        self.config = config
        self.ledger = Ledger(config.cash, allow_short=config.allow_short)
        self.executor = SimulatedExecutor(
            bars,
            self.ledger,
            rules,
            fees=fee_fn or config.fees,
            slippage=config.slippage,
            limit_on_touch=config.limit_on_touch,
            actions=self.actions,
        )
        self.prepared: dict[str, Prepared] = {}
        self.gate_calls: list[GateCall] = []
        self.runner = Runner(
            strategy=strategy,
            market=Market(
                bars,
                {s: rules[s] for s in bars.symbols},
                hours=hours,
                actions=self.actions,
                warmup=warmup,
            ),
            venue=self.executor,
            risk=MemoryRisk(limits),
            prepared=self.prepared.__getitem__,
            sizing=Sizing(
                size_pct=config.size_pct,
                allow_short=config.allow_short,
                stop_loss_pct=config.stop_loss_pct,
                take_profit_pct=config.take_profit_pct,
                trailing_stop_pct=config.trailing_stop_pct,
            ),
            observer=_recorder(self.gate_calls, observer) if keep_signals else observer,
            keep_signals=keep_signals,
            hours=hours,
        )
        self.marks = self.runner.market.mark_series()  # what every close values positions at
        self.equity = np.empty(len(bars))
        self.cursor = 0  # the first bar not stepped yet
        self.unfolded = 0  # the first bar whose close the risk state has not taken yet
        self.written = 0  # the first bar whose equity is not written yet
        self.result = BacktestResult(
            bars=bars,
            config=config,
            limits=limits,
            strategy=strategy,
            equity=self.equity,
            trades=[],
            fills=self.executor.fills,
            rejections=self.executor.rejections,
            prepared=self.prepared,
            fee_function=None if fee_fn is None else getattr(fee_fn, "__name__", repr(fee_fn)),
            hours=hours,
            gate_calls=self.gate_calls,
            warmup=warmup,
        )

    def run(self) -> BacktestResult:
        bars, last = self.bars, len(self.bars) - 1
        self.prepared.update(self._prepare())
        any_wake = np.zeros(len(bars), dtype=bool)
        for prepared in self.prepared.values():
            any_wake |= np.asarray(self.strategy.wake(prepared), dtype=bool)
        any_wake[last] = False  # a decision on the last close could never fill
        for t in np.flatnonzero(any_wake).tolist():
            self._advance(t)
        self._advance(last, decide=False)
        if self.written <= last:
            self._write_equity(self.written, last + 1)
        return self._finish()

    def _prepare(self) -> dict[str, Prepared]:
        """Every symbol's arrays, over the warm-up and the bars when there is a warm-up (the
        strategy bound to both meanwhile), each array then cut to the bars."""
        adjusted, strategy, warmup = self.actions.adjusted, self.strategy, self.warmup
        if warmup is None:
            bars = self.bars
            return {
                s: strategy.prepare(adjusted(s, bars.open_time, b)) for s, b in bars.symbols.items()
            }
        bars, skip = joined(warmup, self.bars), len(warmup)
        strategy.bind(bars)
        prepared = {
            s: {
                name: values[skip:]
                for name, values in strategy.prepare(adjusted(s, bars.open_time, b)).items()
            }
            for s, b in bars.symbols.items()
        }
        strategy.bind(self.bars)
        return prepared

    def _advance(self, upto: int, *, decide: bool = True) -> None:
        """Step every bar up to `upto` where an order may fill, then `upto` itself; the bars in
        between are folded. A stepped bar's equity is written with the quiet bars after it,
        in one span: nothing changes the holdings from its close until the next step. Where
        only orders fill, the close itself is folded with that span too (Runner.step); and
        where nothing can fill at `upto`, its close is known before its step and folded first,
        so the step finds the risk state already there."""
        runner, close_time = self.runner, self.bars.close_time
        while True:
            event = self._next_event(self.cursor, upto)
            target = upto if event is None else event
            edge = upto + 1 if event is None else target  # the closes known before the step
            flat = None
            if self.written < edge:
                flat = self._write_equity(self.written, edge)
            if self.unfolded < edge:
                runner.fold_equity(
                    self.equity[self.unfolded : edge], close_time[self.unfolded : edge], flat
                )
            deferred = runner.step(target, decide=decide or target < upto, fold_close=target < upto)
            self.cursor = target + 1
            self.unfolded = max(edge, target if deferred else target + 1)
            if target == upto:
                return

    def _next_event(self, start: int, stop: int) -> int | None:
        """The first bar in [start, stop] where an order may fill or a split or dividend
        applies (None: the holdings stay as they are through `stop`'s close)."""
        event = None if self.executor.idle else self.executor.next_event(start, stop)
        if self.has_actions:
            action = self.actions.first_between(self.bars.open_time, start, stop)
            if action is not None:
                event = action if event is None else min(event, action)
        return event

    def _write_equity(self, start: int, stop: int) -> float | None:
        """Equity at each close in [start, stop): the positions at their marks (the runner's,
        Market.mark_series), then the cash added, as `Ledger.equity` sums them (the same
        floats, so folded closes and stepped ones agree bit for bit). Says the cash when
        nothing is held, as every close of the span then is (the fold's min and max need no
        pass over it)."""
        cash = self.ledger.cash
        marks = self.marks
        held = self.ledger.held()
        if stop - start == 1:
            value = 0.0
            for s, q in held:
                value += q * float(marks[s][start])
            self.equity[start] = cash + value
        else:
            span = self.equity[start:stop]
            if not held:
                span.fill(cash)
            else:
                for n, (s, q) in enumerate(held):  # `out` by position: no keyword to parse
                    if n:
                        span += q * marks[s][start:stop]
                    else:
                        np.multiply(marks[s][start:stop], q, span)
                np.add(span, cash, span)
        self.written = stop
        return None if held else cash

    def _finish(self) -> BacktestResult:
        last = len(self.bars) - 1
        marks = self.runner.market.marks(last)
        ledger, executor, result, tally = self.ledger, self.executor, self.result, self.runner.tally
        result.trades = ledger.trades + ledger.marked_trades(
            marks, last, int(self.bars.open_time[last])
        )
        result.decisions = tally.signals
        result.signals_by_action = tally.by_action
        result.verdicts = tally.verdicts
        result.approved = tally.approved
        result.vetoes = tally.vetoes
        result.adjustments = tally.adjustments
        result.halted = tally.halted
        result.ambiguous_bars = executor.ambiguous_bars
        result.open_orders = len(executor.working) + len(executor.accepted)
        result.fees = ledger.fees
        result.turnover = ledger.turnover
        result.venue = executor
        result.actions = self.actions
        result.marks = self.marks
        return result
