"""The gate sees one market and one account in every mode: for random bars and random signals,
the views a backtest hands the gate equal those a paper loop hands it, call by call."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from script_strategy import Script, candles, order, rules

from agent.trading_loop import TradingLoop
from backtest.config import BacktestConfig
from backtest.data import to_bar_arrays
from backtest.engine import run_backtest
from execution.fees import FeeSchedule
from execution.paper import PaperExecutor
from execution.slippage import FixedBps
from market.binance_ws import bars_from_frame
from risk.limits import RiskLimits
from risk.models import SignalAction
from risk.records import load_verdicts
from runtime.runner import GateCall
from store import open_store

CONFIG = BacktestConfig(fees=FeeSchedule.from_bps(10), slippage=FixedBps(bps=2))
LIMITS = RiskLimits(max_drawdown_pct=0.03, max_daily_loss_pct=0.02)
ACTIONS = {
    "buy": lambda size: lambda ctx: order(ctx, size_pct=size),
    "close": lambda size: lambda ctx: order(ctx, SignalAction.CLOSE),
    "sell": lambda size: lambda ctx: order(ctx, SignalAction.SELL, size_pct=size),
}


def walk(seed: int, n: int) -> list[tuple[float, float, float, float]]:
    """A random walk around 100 with real-looking highs and lows."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    opened = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0, 0.0005, n))
    spread = np.abs(rng.normal(0, 0.003, n)) * close
    high = np.maximum(opened, close) + spread
    low = np.minimum(opened, close) - spread
    return [
        (round(o, 2), round(h, 2), round(lo, 2), round(c, 2))
        for o, h, lo, c in zip(opened, high, low, close, strict=True)
    ]


def paper_calls(frame, script: Script, folder: Path) -> list[tuple]:
    store = open_store(f"sqlite:///{folder / 'agent.db'}")
    loop = TradingLoop(
        account="view",
        symbols=["BTCUSDT"],
        store=store,
        strategy=script,
        strategy_label="script",
        rules={"BTCUSDT": rules()},
        history={"BTCUSDT": frame.iloc[:0]},
        cash=CONFIG.cash,
        kill_switch=folder / "KILL",
        limits=LIMITS.model_copy(update={"fee_rate": CONFIG.cost_reserve()}),
        venue=lambda cash, feed: PaperExecutor(
            {"BTCUSDT": rules()}, feed, cash=cash, fees=CONFIG.fees, slippage=CONFIG.slippage
        ),
    )
    for bar in bars_from_frame(frame, "BTCUSDT", "1m", "stream"):
        loop.step(bar.open_time, {"BTCUSDT": bar})
    calls = [
        (r.signal.decision_id, r.portfolio, r.market) for r in load_verdicts(store, loop.scope)
    ]
    # Every signal is in the store with its verdict; the loop only counts them, so an
    # unattended loop's memory does not grow with every decision it made.
    tally = loop.runner.tally
    assert sum(tally.by_action.values()) == len(calls)
    assert not tally.signals and not tally.verdicts
    store.close()
    return calls


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    plan=st.dictionaries(
        st.integers(0, 78),
        st.tuples(st.sampled_from(sorted(ACTIONS)), st.floats(0.05, 1.0)),
        min_size=1,
        max_size=25,
    ),
)
def test_backtest_and_paper_hand_the_gate_the_same_views(seed, plan) -> None:
    frame = candles(walk(seed, 80))
    script = Script({bar: [ACTIONS[action](size)] for bar, (action, size) in plan.items()})
    seen: list[GateCall] = []
    bars, _ = to_bar_arrays({"BTCUSDT": frame})
    run_backtest(bars, script, {"BTCUSDT": rules()}, CONFIG, limits=LIMITS, observer=seen.append)
    backtest = [(c.signal.decision_id, c.portfolio, c.market) for c in seen]
    with tempfile.TemporaryDirectory() as folder:
        paper = paper_calls(frame, script, Path(folder))
    # The backtest never decides on its last bar (nothing could fill); paper cannot know it is.
    last = int(frame["close_time"].iloc[-1])
    assert backtest == [call for call in paper if call[2].data_time_ms != last]
    assert backtest, "the plan made at least one gate call"
