"""The engine, ledger, gate wiring, report, look-ahead check, sweeps and saved runs."""

from __future__ import annotations

import gc
import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from forkserver import PROJECT
from pytest import approx
from script_strategy import NO_COSTS, backtest, candles, order, rules

from backtest.config import BacktestConfig
from backtest.data import to_bar_arrays
from backtest.engine import run_backtest
from backtest.html import page
from backtest.lookahead import check_lookahead
from backtest.metrics import drawdown, drawdown_periods, exposure
from backtest.report import build_report
from backtest.runs import load_runs, save_run
from backtest.strategies import CROSS_SECTIONAL, STRATEGIES
from backtest.sweep import (
    SweepData,
    evaluate,
    evaluate_row,
    parse_grid,
    plan,
    rank,
    resolve_metric,
    run_processes,
    run_ray,
)
from core.errors import UserError
from execution.fees import FeeSchedule, Liquidity
from execution.ledger import Ledger
from execution.orders import ExitReason, Fill
from execution.simulator import SimulatedExecutor
from execution.slippage import FixedBps
from market.sample import load_sample, sample_rules
from risk.approval import UnapprovedOrderError
from risk.gate import assess
from risk.limits import RiskLimits
from risk.models import (
    Approved,
    MarketView,
    PortfolioView,
    SignalAction,
    SignalSource,
    TradeSignal,
)
from risk.state import RiskState
from runtime.market import Market
from runtime.strategy import Context, Prepared, Strategy

FLAT = (100.0, 100.5, 99.5, 100.0)


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    return load_sample("BTCUSDT")


@pytest.fixture(scope="module")
def btc_eth():
    bars, dropped = to_bar_arrays({s: load_sample(s) for s in ("BTCUSDT", "ETHUSDT")})
    assert dropped == 0
    return bars


def _run(frame: pd.DataFrame, name: str, params: dict, config: BacktestConfig = NO_COSTS):
    bars, _ = to_bar_arrays({"BTCUSDT": frame})
    cls = STRATEGIES[name]
    return run_backtest(bars, cls(cls.Params(**params)), sample_rules(), config)


ENTRY_EXIT = {
    "sma_cross": (("cross_up",), ("cross_down",)),
    "rsi_reversion": (("oversold",), ("overbought",)),
    "donchian_breakout": (("breakout_up",), ("breakout_down", "exit_long")),
}


@pytest.mark.parametrize("name", sorted(set(STRATEGIES) - CROSS_SECTIONAL))
def test_classic_strategies_trade_exactly_on_their_signal_bars(btc, name: str) -> None:
    """Zero costs and the default risk settings: the gate sizes, but every entry and exit is
    the bar after the strategy's own signal, and nothing else trades."""
    result = _run(btc, name, {})
    prepared = result.prepared["BTCUSDT"]
    entry_names, exit_names = ENTRY_EXIT[name]
    enter = np.logical_or.reduce([prepared[n] for n in entry_names])
    leave = np.logical_or.reduce([prepared[n] for n in exit_names])
    expected, holding = [], False
    for t in range(len(enter) - 1):
        if enter[t] and not holding:
            expected.append(("entry", t + 1))
            holding = True
        elif leave[t] and holding:
            expected.append(("exit", t + 1))
            holding = False
    actual = []
    for trade in result.trades:
        actual.append(("entry", trade.entry_bar))
        if trade.exit_reason is not ExitReason.END_OF_DATA:
            actual.append(("exit", trade.exit_bar))
    assert actual == expected
    assert len(expected) > 10
    assert not result.vetoes and not result.rejections


def test_a_warm_up_starts_indicators_and_the_gates_atr_as_an_uninterrupted_run(btc) -> None:
    """The paper loop reads its indicators and the gate's ATR over the day before its first
    bar: a backtest handed that day as its warm-up reads the same values at every bar of its
    window (RSI and Wilder's ATR remember their whole input), and trades only the window."""
    whole, _ = to_bar_arrays({"BTCUSDT": btc.iloc[:3_000]})
    warmup, _ = to_bar_arrays({"BTCUSDT": btc.iloc[:1_440]})
    bars, _ = to_bar_arrays({"BTCUSDT": btc.iloc[1_440:3_000].reset_index(drop=True)})
    cls = STRATEGIES["rsi_reversion"]
    limits = RiskLimits(strategy={"atr_stop_multiple": 2.0})  # the gate places ATR stops
    gated: list[tuple[int, float | None]] = []
    warmed = run_backtest(
        bars,
        cls(cls.Params()),
        sample_rules(),
        NO_COSTS,
        limits=limits,
        observer=lambda call: gated.append((call.signal.created_ms, call.market.atr)),
        warmup=warmup,
    )
    cold = run_backtest(bars, cls(cls.Params()), sample_rules(), NO_COSTS, limits=limits)
    uninterrupted = run_backtest(whole, cls(cls.Params()), sample_rules(), NO_COSTS)
    rsi = uninterrupted.prepared["BTCUSDT"]["rsi"][1_440:]
    np.testing.assert_array_equal(warmed.prepared["BTCUSDT"]["rsi"], rsi)
    assert np.isnan(cold.prepared["BTCUSDT"]["rsi"][:14]).all() and np.isfinite(rsi).all()
    loop = Market(whole, sample_rules())
    at = {int(t): i for i, t in enumerate(whole.close_time.tolist())}
    assert gated and all(atr == loop.atr("BTCUSDT", at[ms]) for ms, atr in gated)
    first = [Market(bars, sample_rules(), warmup=warmup).atr("BTCUSDT", i) for i in range(20)]
    assert first == [loop.atr("BTCUSDT", 1_440 + i) for i in range(20)]
    assert Market(bars, sample_rules()).atr("BTCUSDT", 5) is None  # cold: ATR is not known yet
    assert len(warmed.equity) == len(bars) and warmed.fills != cold.fills
    assert min(f.time_ms for f in warmed.fills) > int(bars.open_time[0])


def test_a_run_that_keeps_no_signals_reports_the_same(btc) -> None:
    """A classic `agent-backtest` keeps no signals, verdicts or gate calls (its report counts
    them): the report is unchanged."""
    bars, _ = to_bar_arrays({"BTCUSDT": btc})
    strategy = STRATEGIES["sma_cross"](STRATEGIES["sma_cross"].Params())
    kept = run_backtest(bars, strategy, sample_rules(), NO_COSTS)
    spared = run_backtest(bars, strategy, sample_rules(), NO_COSTS, keep_signals=False)
    assert len(kept.gate_calls) == len(kept.decisions) > 10 and spared.gate_calls == []
    assert len(kept.verdicts) == len(kept.decisions) and spared.verdicts == {}
    assert spared.decisions == [] and spared.signals_by_action == kept.signals_by_action
    assert (spared.approved, spared.vetoes) == (kept.approved, kept.vetoes)
    assert build_report(spared).to_json() == build_report(kept).to_json()


@pytest.mark.slow
@pytest.mark.parametrize("keep_signals", [True, False])
def test_a_dropped_result_is_freed_at_once_not_left_to_the_collector(
    btc, keep_signals: bool
) -> None:
    """A UI, server or sweep runs backtest after backtest: each result (every signal, verdict,
    fill and trade) goes when dropped, with no reference cycle for the collector to find. What
    the collector finds is kept and read, so garbage from another thread (a loopback server of
    an earlier test) cannot pass for ours."""
    bars, _ = to_bar_arrays({"BTCUSDT": btc})
    strategy = STRATEGIES["sma_cross"](STRATEGIES["sma_cross"].Params())
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        result = run_backtest(bars, strategy, sample_rules(), NO_COSTS, keep_signals=keep_signals)
        assert sum(result.signals_by_action.values()) > 10 and len(result.fills) > 10
        del result
        gc.collect()
        ours = [o for o in gc.garbage if _made_by_the_project(o)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert ours == []


def _made_by_the_project(obj: object) -> bool:
    names = (type(obj).__module__, getattr(obj, "__module__", None) or "")
    return isinstance(obj, np.ndarray) or any(n.split(".")[0] in PROJECT for n in names)


def test_size_is_a_fixed_percent_of_equity_or_all_of_it(btc) -> None:
    quarter = _run(btc, "sma_cross", {}, NO_COSTS.model_copy(update={"size_pct": 0.25}))
    equity_before = quarter.equity[[t.entry_bar - 1 for t in quarter.trades]]
    notional = np.array([t.entry_price * t.size for t in quarter.trades])
    assert notional / equity_before == approx(0.25, rel=2e-3)  # stepSize rounding, price move

    everything = _run(btc, "sma_cross", {}, BacktestConfig())  # 0.1% fees reserved
    first = everything.trades[0]
    spent = first.entry_price * first.size * 1.001
    assert spent <= 10_000 and spent == approx(10_000, rel=1e-3)


def test_a_strategy_asking_for_100x_equity_is_clamped_and_counted() -> None:
    rows = [FLAT, FLAT, (101, 102, 100, 101), FLAT]
    result = backtest(candles(rows), {0: [lambda ctx: order(ctx, quantity=100 * 10_000 / 100)]})
    (trade,) = result.trades
    assert trade.entry_price * trade.size <= 10_000
    assert trade.entry_price * trade.size == approx(10_000, rel=1e-3)
    assert sum(result.adjustments.values()) >= 1
    report = build_report(result)
    assert report.orders.adjusted == dict(sorted(result.adjustments.items()))
    assert not result.rejections


def _approved(symbol_rules=None, quantity: float = 1.0):
    rules_ = symbol_rules or rules()
    signal = TradeSignal(
        decision_id="test:1",
        source=SignalSource.STRATEGY,
        symbol="BTCUSDT",
        action=SignalAction.BUY,
        quantity=quantity,
        created_ms=0,
    )
    portfolio = PortfolioView(
        cash=10_000, equity=10_000, peak_equity=10_000, day_start_equity=10_000
    )
    market = MarketView(symbol="BTCUSDT", last_price=100.0, data_time_ms=0, rules=rules_)
    verdict = assess(signal, portfolio, market, 1, RiskLimits(), RiskState())
    assert isinstance(verdict, Approved), verdict
    return verdict.order


def _executor(symbol_rules=None) -> SimulatedExecutor:
    bars, _ = to_bar_arrays({"BTCUSDT": candles([FLAT, FLAT, FLAT])})
    return SimulatedExecutor(
        bars, Ledger(10_000), {"BTCUSDT": symbol_rules or rules()}, fees=FeeSchedule()
    )


def test_the_executor_refuses_anything_the_gate_did_not_seal() -> None:
    executor = _executor()
    approved = _approved()
    with pytest.raises(UnapprovedOrderError):
        executor.accept(approved.model_copy(update={"quantity": Decimal(50)}))
    with pytest.raises(UnapprovedOrderError):
        executor.accept(approved.model_dump())
    assert not executor.accepted and executor.idle
    executor.accept(approved)
    executor.on_bar(1)
    assert executor.ledger.quantity("BTCUSDT") == 1.0


def test_the_venue_rejects_and_counts_an_order_breaking_its_filters() -> None:
    """The gate saw filters that have since changed: the venue refuses, never resizes."""
    executor = _executor(rules(min_notional="1000"))
    executor.accept(_approved(quantity=2.0))
    executor.on_bar(1)
    [rejection] = executor.rejections
    assert rejection.code == "MIN_NOTIONAL"
    assert executor.ledger.quantity("BTCUSDT") == 0 and not executor.fills
    assert executor.ledger.cash == 10_000


def _fill(side: int, qty: float, price: float, bar: int, fee: float = 0.0) -> Fill:
    return Fill(f"o{bar}", "X", side, qty, price, fee, Liquidity.TAKER, bar, bar, ExitReason.SIGNAL)


def test_ledger_fifo_realised_unrealised_and_fees() -> None:
    ledger = Ledger(10_000)
    ledger.apply(_fill(1, 1.0, 100, 0, fee=0.1))
    ledger.apply(_fill(1, 1.0, 110, 1, fee=0.11))
    ledger.apply(_fill(-1, 1.5, 120, 2, fee=0.18))
    first, second = ledger.trades
    assert (first.entry_price, first.size, first.exit_price) == (100, 1.0, 120)
    assert (second.entry_price, second.size) == (110, 0.5)
    assert first.pnl == approx(20 - 0.1 - 0.12)
    assert second.pnl == approx(5 - 0.055 - 0.06)
    assert ledger.quantity("X") == 0.5 and ledger.avg_price("X") == 110
    assert ledger.realised == approx(25) and ledger.fees == approx(0.39)
    marks = {"X": 130.0}
    assert ledger.unrealised(marks) == approx(10)
    assert ledger.equity(marks) == approx(10_000 + 25 + 10 - 0.39)


def test_ledger_refuses_what_spot_cannot_do_and_allows_bounded_shorts() -> None:
    long_only = Ledger(1_000)
    assert long_only.refusal("X", 1, 11, 100, 0, dict)[0] == "INSUFFICIENT_CASH"
    assert long_only.refusal("X", -1, 1, 100, 0, dict)[0] == "SHORT_NOT_ALLOWED"
    assert long_only.refusal("X", 1, 10, 100, 0, dict) is None

    shorts = Ledger(1_000, allow_short=True)
    assert shorts.refusal("X", -1, 10, 100, 0, lambda: {"X": 100.0}) is None
    assert shorts.refusal("X", -1, 11, 100, 0, lambda: {"X": 100.0})[0] == "INSUFFICIENT_CASH"
    shorts.apply(_fill(-1, 5, 100, 0))
    assert shorts.quantity("X") == -5 and shorts.cash == 1_500
    assert shorts.equity({"X": 90.0}) == approx(1_050)
    shorts.apply(_fill(1, 5, 90, 1))
    (trade,) = shorts.trades
    assert (trade.side, trade.pnl) == ("short", approx(50))


def test_equity_curve_equals_a_bar_by_bar_recomputation(btc_eth) -> None:
    """The engine writes equity in vectorised spans; replaying every fill bar by bar agrees."""
    config = BacktestConfig(
        size_pct=0.5, stop_loss_pct=0.003, take_profit_pct=0.004, slippage=FixedBps(bps=2)
    )
    strategy = STRATEGIES["sma_cross"](STRATEGIES["sma_cross"].Params(fast=10, slow=30))
    result = run_backtest(btc_eth, strategy, sample_rules(), config)
    assert {t.exit_reason for t in result.trades} >= {"signal", "stop_loss", "take_profit"}
    n = len(btc_eth)
    cash = np.full(n, 10_000.0)
    held = {s: np.zeros(n) for s in btc_eth.symbols}
    for fill in result.fills:
        cash[fill.bar :] -= fill.side * fill.quantity * fill.price + fill.fee
        held[fill.symbol][fill.bar :] += fill.side * fill.quantity
    naive = cash + sum(held[s] * b.close for s, b in btc_eth.symbols.items())
    np.testing.assert_allclose(result.equity, naive, rtol=1e-9)
    final = result.equity[-1]
    realised = sum(t.pnl for t in result.trades)
    assert final == approx(10_000 + realised, rel=1e-9)  # open lots are marked, fees included


def test_the_written_equity_is_the_ledgers_own_sum_at_every_judged_close(btc_eth) -> None:
    """The engine writes the equity of closes it folds; the gate is handed the ledger's sum at
    the closes it steps. With two symbols held, the two must be the same floats (the cash
    added last, as the ledger adds it), or a folded close and a stepped one could mark a
    different peak."""
    judged: list[tuple[int, float]] = []
    config = BacktestConfig(size_pct=0.5)
    strategy = STRATEGIES["sma_cross"](STRATEGIES["sma_cross"].Params(fast=10, slow=30))

    def seen(call) -> None:
        if call.portfolio is not None and len(call.portfolio.positions) == 2:
            bar = int(np.searchsorted(btc_eth.close_time, call.signal.created_ms))
            judged.append((bar, call.portfolio.equity))

    result = run_backtest(btc_eth, strategy, sample_rules(), config, observer=seen)
    assert len(judged) > 20  # both symbols held at many decisions
    assert [result.equity[bar] for bar, _ in judged] == [equity for _, equity in judged]


def test_last_bar_decisions_are_never_made() -> None:
    result = backtest(candles([FLAT, FLAT, FLAT]), {2: [lambda ctx: order(ctx, quantity=1)]})
    assert not result.decisions and not result.fills


def test_reports_are_deterministic_and_json_safe(btc) -> None:
    first = build_report(_run(btc, "rsi_reversion", {}))
    second = build_report(_run(btc, "rsi_reversion", {}))
    assert first.to_json() == second.to_json()
    quiet = build_report(backtest(candles([FLAT, FLAT, FLAT]), {}))
    text = quiet.to_json()
    assert "NaN" not in text and "Infinity" not in text
    metrics = json.loads(text)["metrics"]
    assert metrics["# Trades"] == 0 and metrics["Win Rate [%]"] is None
    assert metrics["Return [%]"] == 0


def test_vetoes_are_counted_by_reason_code(btc) -> None:
    """Spot: the gate refuses new shorts; the report says how many and why."""
    result = _run(btc, "sma_cross", {}, NO_COSTS.model_copy(update={"allow_short": True}))
    report = build_report(result)
    assert report.orders.vetoed == {"SHORT_NOT_ALLOWED": result.vetoes["SHORT_NOT_ALLOWED"]}
    assert report.orders.vetoed["SHORT_NOT_ALLOWED"] > 10


def test_html_page_is_self_contained(btc) -> None:
    result = _run(btc, "sma_cross", {})
    html = page(build_report(result), result)
    assert html.startswith("<!DOCTYPE html>") and "Plotly" in html
    assert '<script src="http' not in html
    for part in ("Equity [$]", "Drawdown [%]", "BTCUSDT entries", "Sharpe Ratio"):
        assert part in html


class _Peeking(Strategy):
    """Buys when tomorrow's close is higher: the classic look-ahead bug."""

    name = "peeking"
    Params = STRATEGIES["sma_cross"].Params

    @property
    def warmup(self) -> int:
        return 1

    def prepare(self, bars) -> Prepared:
        future = pd.Series(bars.close).shift(-1).to_numpy()
        return {"up_next": future > bars.close}

    def wake(self, prepared: Prepared) -> np.ndarray:
        return prepared["up_next"]

    def decide(self, ctx: Context) -> list[TradeSignal]:
        return [ctx.buy()] if ctx.position == 0 else [ctx.close_position()]


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_lookahead_check_passes_every_classic_strategy(btc, name: str) -> None:
    bars, _ = to_bar_arrays({"BTCUSDT": btc.iloc[:1_500]})
    strategy = STRATEGIES[name](STRATEGIES[name].Params())
    assert check_lookahead(strategy, bars, sample_rules(), NO_COSTS, cuts=6) == []


def test_lookahead_check_catches_a_peek(btc) -> None:
    bars, _ = to_bar_arrays({"BTCUSDT": btc.iloc[:1_500]})
    problems = check_lookahead(_Peeking(_Peeking.Params()), bars, sample_rules(), NO_COSTS, cuts=6)
    assert problems and "'up_next'" in problems[0] and "reads later bars" in problems[0]


def test_sweep_grid_plan_and_ranking() -> None:
    grid = parse_grid("sma_cross", ["fast=10:30:10", "slow=20,40"])
    assert grid == {"fast": [10, 20, 30], "slow": [20, 40]}
    tasks, skipped = plan("sma_cross", {}, grid, NO_COSTS, RiskLimits())
    assert skipped == 2 and len(tasks) == 4  # fast >= slow is refused, not run
    assert resolve_metric("max_drawdown") == "Max. Drawdown [%]"
    assert resolve_metric("Sharpe Ratio") == "Sharpe Ratio"
    with pytest.raises(UserError, match="unknown metric"):
        resolve_metric("Duration")
    with pytest.raises(UserError, match="invalid --sweep"):
        parse_grid("sma_cross", ["fast=a:b:c"])


def test_a_process_pool_sweep_equals_running_each_point_alone(btc) -> None:
    bars, _ = to_bar_arrays({"BTCUSDT": btc.iloc[:1_500]})
    data = SweepData(bars, sample_rules())
    grid = {"fast": [5, 10], "slow": [20, 30]}
    tasks, _ = plan("sma_cross", {}, grid, NO_COSTS, RiskLimits())
    pooled = run_processes(tasks, data, workers=2)
    alone = [evaluate(t, data) for t in tasks]
    assert [row.metrics for row in pooled] == [run.metrics for run in alone]
    assert pooled == [evaluate_row(t, data) for t in tasks]  # the trades and hashes too
    assert [row.sha256() for row in pooled] == [run.sha256() for run in alone]
    ranked = rank(pooled, "Return [%]")
    returns = [row.metrics["Return [%]"] for row in ranked]
    assert returns == sorted(returns, reverse=True)


def test_a_sweep_point_is_saved_as_its_full_run_would_be(store, btc) -> None:
    """Workers send the trades back as JSON text; the store holds the same row either way."""
    bars, _ = to_bar_arrays({"BTCUSDT": btc.iloc[:1_500]})
    data = SweepData(bars, sample_rules())
    (task,), _ = plan("sma_cross", {}, {"fast": [5]}, NO_COSTS, RiskLimits())
    save_run(store, evaluate(task, data), created_ms=1)
    save_run(store, evaluate_row(task, data), created_ms=1)
    full, row = load_runs(store, "sma_cross")
    assert json.loads(row.trades_json) and row.model_dump(exclude={"id"}) == full.model_dump(
        exclude={"id"}
    )


@pytest.mark.slow
def test_ray_runs_the_same_task_function(btc, tmp_path, monkeypatch) -> None:
    pytest.importorskip("ray")
    monkeypatch.setenv("HOME", str(tmp_path))  # Ray writes its session token under HOME
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    bars, _ = to_bar_arrays({"BTCUSDT": btc.iloc[:800]})
    data = SweepData(bars, sample_rules())
    tasks, _ = plan("sma_cross", {}, {"fast": [5, 10]}, NO_COSTS, RiskLimits())
    rows = run_ray(tasks, data, workers=2)
    assert rows == [evaluate_row(t, data) for t in tasks]


def test_every_run_can_be_saved_and_read_back(store, btc) -> None:
    report = build_report(_run(btc, "sma_cross", {}))
    run_id = save_run(store, report, created_ms=1)
    (row,) = load_runs(store, "sma_cross")
    assert row.id == run_id and row.symbols == "BTCUSDT" and row.interval == "1m"
    assert row.start_ms == int(load_sample("BTCUSDT")["open_time"].iloc[0])
    assert json.loads(row.metrics_json) == report.metrics
    assert len(json.loads(row.trades_json)) == len(report.trades)


def test_symbols_are_aligned_on_shared_bar_times() -> None:
    full = candles([FLAT] * 5)
    gapped = full.drop(index=2).reset_index(drop=True)
    bars, dropped = to_bar_arrays({"BTCUSDT": full, "ETHUSDT": gapped})
    assert len(bars) == 4 and dropped == 1
    assert list(bars.open_time) == list(gapped["open_time"])


def test_drawdown_metrics_on_a_known_curve() -> None:
    equity = np.array([100, 110, 99, 110, 121, 108.9, 100])
    times = np.arange(len(equity), dtype=np.int64) * 60_000
    dd = drawdown(equity)
    assert dd.max() == approx(0.1735537, rel=1e-6)
    durations, depths = drawdown_periods(dd, times)
    assert list(durations) == [120_000, 120_000] and depths == approx([0.1, 0.1735537], rel=1e-6)
    assert exposure(np.array([1, 4]), np.array([2, 4]), 6).tolist() == [
        False,
        True,
        True,
        False,
        True,
        False,
    ]


def test_the_context_shows_only_the_past_read_only() -> None:
    seen = {}

    def look(ctx: Context) -> TradeSignal:
        seen["closes"] = ctx.history("close")
        seen["portfolio"] = ctx.portfolio()
        seen["close"] = ctx.close
        return order(ctx, quantity=1)

    rows = [FLAT, (101, 102, 100, 101), (102, 103, 101, 102), (103, 104, 102, 103)]
    result = backtest(candles(rows), {2: [look]})
    assert seen["closes"].tolist() == [100, 101, 102] and seen["close"] == 102
    assert not seen["closes"].flags.writeable
    assert seen["portfolio"].cash == 10_000 and seen["portfolio"].positions == {}
    assert result.fills[0].bar == 3 and result.fills[0].price == 103


def test_context_signals_are_the_validated_ones_and_garbage_is_still_vetoed() -> None:
    """Context signals skip pydantic validation when every value is already of its type: a NaN
    size is still a float, so the gate must still see it and say INVALID_SIGNAL; an int size
    or a numpy float is validated into the same signal a hand-built TradeSignal would be."""
    bars = candles([FLAT] * 6)
    result = backtest(
        bars,
        {
            1: [lambda ctx: ctx.buy(size_pct=float("nan"))],
            2: [lambda ctx: ctx.buy(size_pct=1)],
            3: [lambda ctx: ctx.close_position(rationale="done")],
            4: [lambda ctx: ctx.buy(size_pct=np.float64(0.5), rationale="half")],
        },
    )
    nan_buy, int_buy, close, half = result.decisions
    assert [r.code.value for r in result.verdicts[nan_buy.decision_id].reasons] == [
        "INVALID_SIGNAL"
    ]
    assert int_buy == TradeSignal(**{**int_buy.__dict__, "size_pct": 1})
    assert type(int_buy.size_pct) is float and type(half.size_pct) is float
    assert close == TradeSignal.model_validate(close.__dict__)
    assert close.action is SignalAction.CLOSE and close.rationale == "done"
    assert [t.entry_bar for t in result.trades] == [3, 5]
