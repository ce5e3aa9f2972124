"""Golden cross-check against backtesting.py (a test-only dependency) on its shipped GOOG data.

SmaCross 10/30 with matching semantics on both sides: next-open fills, no commission, all equity
per trade, fractional sizes (its FractionalBacktest). Long-only: the risk gate never opens a
short on spot, so backtesting.py's own test strategy is run with `position.close()` instead of
`sell()`; everything else is its test as shipped.
"""

from __future__ import annotations

import warnings
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pytest import approx
from same_as_backtesting_py import assert_same

from backtest.config import BacktestConfig
from backtest.data import to_bar_arrays
from backtest.engine import BacktestResult, run_backtest
from backtest.metrics import buy_and_hold, equity_metrics, exposure, trade_metrics
from backtest.report import report_figures
from backtest.strategies.sma_cross import SmaCross, SmaCrossParams
from execution.fees import FeeSchedule
from market.models import SymbolRules
from risk.limits import RiskLimits

backtesting = pytest.importorskip("backtesting")
from backtesting import Strategy  # noqa: E402
from backtesting.lib import FractionalBacktest, crossover  # noqa: E402
from backtesting.test import GOOG, SMA  # noqa: E402

DAY_MS = 86_400_000
CASH = 10_000.0


class LongOnlySmaCross(Strategy):
    fast = 10
    slow = 30

    def init(self) -> None:
        self.sma1 = self.I(SMA, self.data.Close, self.fast)
        self.sma2 = self.I(SMA, self.data.Close, self.slow)

    def next(self) -> None:
        if crossover(self.sma1, self.sma2):
            self.buy()
        elif crossover(self.sma2, self.sma1):
            self.position.close()


@pytest.fixture(scope="module")
def theirs() -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FractionalBacktest(GOOG, LongOnlySmaCross, cash=CASH, commission=0).run()


@pytest.fixture(scope="module")
def ours() -> BacktestResult:
    open_time = GOOG.index.as_unit("ms").asi8
    frame = pd.DataFrame(
        {
            "open_time": open_time,
            "open": GOOG["Open"].to_numpy(),
            "high": GOOG["High"].to_numpy(),
            "low": GOOG["Low"].to_numpy(),
            "close": GOOG["Close"].to_numpy(),
            "volume": GOOG["Volume"].to_numpy(dtype=float),
            "close_time": open_time + DAY_MS - 1,
        }
    )
    bars, _ = to_bar_arrays({"GOOG": frame})
    satoshi = Decimal("0.00000001")  # FractionalBacktest's default unit
    rules = {
        "GOOG": SymbolRules(
            symbol="GOOG",
            base_asset="GOOG",
            quote_asset="USD",
            tick_size=Decimal("0.01"),
            step_size=satoshi,
            min_qty=satoshi,
            max_qty=Decimal(10**9),
            min_notional=Decimal(0),
        )
    }
    # Daily stock bars skip weekends and holidays, so "stale data" must allow a long weekend;
    # backtesting.py has no circuit breakers, so neither does this run.
    limits = RiskLimits(max_daily_loss_pct=None, max_drawdown_pct=None, max_data_age_ms=5 * DAY_MS)
    config = BacktestConfig(cash=CASH, fees=FeeSchedule(maker=0, taker=0), interval="1d")
    strategy = SmaCross(SmaCrossParams(fast=10, slow=30))
    return run_backtest(bars, strategy, rules, config, limits=limits)


def _closed(result: BacktestResult) -> list:
    return [t for t in result.trades if t.exit_reason != "end_of_data"]


def test_same_trades_and_final_equity(ours: BacktestResult, theirs: pd.Series) -> None:
    trades = theirs["_trades"]
    closed = _closed(ours)
    assert len(closed) == theirs["# Trades"] == 32
    assert [t.entry_bar for t in closed] == trades["EntryBar"].tolist()
    assert [t.exit_bar for t in closed] == trades["ExitBar"].tolist()
    assert [t.entry_price for t in closed] == approx(trades["EntryPrice"].tolist(), rel=1e-12)
    assert [t.exit_price for t in closed] == approx(trades["ExitPrice"].tolist(), rel=1e-12)
    # It sizes a buy at the fill (the next open); the gate sizes at the decision (this close),
    # the only price a live order can be sized with: the same trades, slightly other sizes.
    assert ours.equity[-1] == approx(theirs["Equity Final [$]"], rel=0.005)
    assert not ours.vetoes and not ours.rejections


def test_golden_numbers(ours: BacktestResult) -> None:
    """Pinned so any change to fills, sizing or the ledger shows up here first."""
    assert len(ours.trades) == 33  # 32 closed + 1 still open on the last bar
    assert ours.trades[-1].exit_reason == "end_of_data"
    assert ours.equity[-1] == approx(58_187.499130204, rel=1e-9)
    first = ours.trades[0]
    assert (first.entry_bar, first.exit_bar) == (86, 113)
    assert (ours.approved, len(ours.decisions)) == (65, 65)


def test_metrics_match_backtesting_py(ours: BacktestResult, theirs: pd.Series) -> None:
    """Our pure metric functions on backtesting.py's own equity curve and trades equal its
    figures (GOOG trades on weekdays, so its annualisation uses 252 periods; ours takes that as
    a parameter)."""
    trades = theirs["_trades"]
    equity = theirs["_equity_curve"]["Equity"].to_numpy(dtype=np.float64)
    entry = trades["EntryTime"].dt.as_unit("ms").astype("int64")
    exit_ = trades["ExitTime"].dt.as_unit("ms").astype("int64")
    ours_metrics = {
        **equity_metrics(equity, ours.bars.open_time, DAY_MS, periods_per_year=252)[0],
        **trade_metrics(
            trades["PnL"].to_numpy(),
            trades["ReturnPct"].to_numpy(),
            (exit_ - entry).to_numpy(dtype=np.float64),
            DAY_MS,
        ),
        "Buy & Hold Return [%]": buy_and_hold([ours.bars.symbols["GOOG"].close], 29),
    }
    assert_same(ours_metrics, theirs, ours_metrics)
    entries = np.array([t.entry_bar for t in ours.trades])
    exits = np.array([t.exit_bar for t in ours.trades])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        finalized = FractionalBacktest(
            GOOG, LongOnlySmaCross, cash=CASH, commission=0, finalize_trades=True
        ).run()
    assert exposure(entries, exits, len(ours.bars)).mean() * 100 == approx(
        finalized["Exposure Time [%]"], rel=1e-12
    )


def test_the_reports_trade_statistics_leave_out_the_open_trade_as_backtesting_py_does(
    ours: BacktestResult, theirs: pd.Series
) -> None:
    """Its stats count the 32 closed trades, not the one still open on the last bar (no exit
    fill: finalize_trades=False, its default). Returns do not depend on the size, so every
    figure made of them is its figure; the open trade stays in the exposure."""
    metrics = report_figures(ours)[0]
    by_returns = ("# Trades", "Win Rate [%]", "Best Trade [%]", "Worst Trade [%]",
                  "Avg. Trade [%]", "Max. Trade Duration", "Avg. Trade Duration",
                  "Profit Factor", "Expectancy [%]")  # fmt: skip
    assert_same(metrics, theirs, by_returns)
    assert metrics["Exposure Time [%]"] > theirs["Exposure Time [%]"]


def test_the_package_never_imports_backtesting_py() -> None:
    root = Path(__file__).parents[1]
    for package in ("agent", "backtest", "execution", "market", "risk", "store", "core"):
        for source in (root / package).rglob("*.py"):
            text = source.read_text()
            assert "import backtesting" not in text and "from backtesting" not in text, source
