"""Figures on a stock run: momentum joins the scorecard's baselines (crypto reports keep the set
they had), every baseline pays the SEC fee and FINRA TAF on its sales as the strategy under
test does, and an intraday run annualises on 252 sessions of its bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from script_strategy import candles, rules

from backtest.annualise import annualised, choose_basis
from backtest.config import BacktestConfig
from backtest.data import to_bar_arrays
from backtest.engine import run_backtest
from backtest.scorecard import rule_runs, scorecard
from backtest.strategies.rsi_reversion import RsiReversion, RsiReversionParams
from execution.equity_fees import EquityFees
from execution.fees import FeeSchedule
from market.corporate import Action, CorporateActions
from market.instruments import equity_rules
from market.source import load_csv_candles
from risk.limits import RiskLimits
from runtime.hours import TradingHours

GOOG = (
    Path(__file__).parent
    / "fixtures"
    / "stocks"
    / "GOOG-1d-2004-08-19_2013-03-01_backtesting-py.csv"
)
DAY = 86_400_000
LIMITS = RiskLimits(max_daily_loss_pct=None, max_drawdown_pct=None, max_data_age_ms=5 * DAY)


def test_stock_baselines_include_momentum_and_pay_the_regulatory_fees_on_sales() -> None:
    frame = load_csv_candles(GOOG, "1d", lambda _line: None).iloc[:600]
    bars, _ = to_bar_arrays({"GOOG": frame})
    config = BacktestConfig(fees=FeeSchedule(maker=0, taker=0), interval="1d", periods_per_year=252)
    fees = EquityFees()
    runs = rule_runs(
        bars,
        {"GOOG": equity_rules("GOOG", float(frame["close"].iloc[-1]))},
        config,
        LIMITS,
        TradingHours(DAY),
        20,
        fee_fn=fees,
    )
    assert "momentum" in runs
    sold = 0
    for name, run in runs.items():
        for fill in run.fills:
            expected = fees.on_sale(fill.quantity, fill.price) if fill.side < 0 else 0.0
            assert fill.fee == pytest.approx(expected), name
            sold += fill.side < 0
    assert sold  # the rule strategies sold, so the fees were really charged


def test_crypto_baselines_stay_as_they_were() -> None:
    bars, _ = to_bar_arrays({"BTCUSDT": candles([(100, 101, 99, 100)] * 50)})
    runs = rule_runs(bars, {"BTCUSDT": rules()}, BacktestConfig(), RiskLimits(), None, 0)
    assert list(runs) == ["buy_and_hold", "sma_cross", "rsi_reversion", "donchian_breakout"]


def test_an_intraday_stock_curve_annualises_on_sessions_of_bars_not_24_hour_days() -> None:
    rng = np.random.default_rng(23)
    equity = 10_000 * np.cumprod(1 + rng.normal(0, 0.001, 60))
    times = 1_780_000_000_000 + 900_000 * np.arange(60, dtype=np.int64)
    stock, returns = choose_basis(equity, times, 900_000, 252, bars_per_session=26)
    crypto, _ = choose_basis(equity, times, 900_000, 365)
    assert (stock.frequency, stock.periods_per_year, stock.returns) == ("per bar", 6_552, 59)
    assert "252 sessions × 26 bars per session" in stock.method
    assert crypto.periods_per_year != stock.periods_per_year
    values, basis = annualised(equity, times, 900_000, 0.01, 252, bars_per_session=26)
    assert basis.periods_per_year == 6_552
    expected = returns.mean() / returns.std(ddof=1) * np.sqrt(6_552)
    assert values["Sharpe Ratio"] == pytest.approx(expected)


def test_a_stock_scorecard_runs_every_baseline_through_the_runs_split() -> None:
    """The split halves raw prices at bar 150: buy-and-hold, momentum and the random entries
    follow it (no crash read into their figures), as the strategy under test does."""
    frame = load_csv_candles(GOOG, "1d", lambda _line: None).iloc[:300].reset_index(drop=True)
    split_at = int(frame["open_time"].iloc[150])
    for column in ("open", "high", "low", "close"):
        frame.loc[150:, column] = (frame.loc[150:, column] / 2).round(2)
    bars, _ = to_bar_arrays({"GOOG": frame})
    rules_ = {"GOOG": equity_rules("GOOG", float(frame["close"].iloc[-1]))}
    config = BacktestConfig(fees=FeeSchedule(maker=0, taker=0), interval="1d", periods_per_year=252)
    actions = CorporateActions({"GOOG": {split_at: Action(ratio=2.0)}})
    result = run_backtest(bars, RsiReversion(RsiReversionParams()), rules_, config, limits=LIMITS,
                          fee_fn=EquityFees(), hours=TradingHours(DAY), actions=actions)  # fmt: skip
    card = scorecard(result, rules_, [], 0.0)
    assert {"buy_and_hold", "momentum", "random_entry"} <= set(card.baselines)
    close = frame["close"].to_numpy()
    start = result.strategy.warmup + 1  # buy-and-hold buys at the open after the warm-up
    held = (2 * close[-1]) / frame["open"].iloc[start] - 1  # the whole move, split undone
    assert card.baselines["buy_and_hold"].return_pct == pytest.approx(held * 100, rel=0.02)
