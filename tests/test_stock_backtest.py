"""US stock backtests end to end: the GOOG daily file against backtesting.py as a peer (it ships
the same file as its test data), the EA 15-minute file in regular and extended hours, and the
stock-or-crypto mistakes that exit 2 with one line."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ta.momentum import RSIIndicator

from backtest.config import BacktestConfig
from backtest.data import to_bar_arrays
from backtest.engine import BacktestResult, run_backtest
from backtest.strategies.rsi_reversion import RsiReversion, RsiReversionParams
from execution.fees import FeeSchedule
from market.calendar import xnys
from market.instruments import equity_rules
from market.source import load_csv_candles
from risk.limits import RiskLimits
from runtime.hours import TradingHours

backtesting = pytest.importorskip("backtesting")
from backtesting import Backtest, Strategy  # noqa: E402

STOCKS = Path(__file__).parent / "fixtures" / "stocks"
GOOG = STOCKS / "GOOG-1d-2004-08-19_2013-03-01_backtesting-py.csv"
EA = STOCKS / "EA-15m-2026-05-26_2026-06-03_yfinance.csv"
DAY = 86_400_000
NEW_YORK = "America/New_York"


class LongOnlyRsi(Strategy):
    """rsi_reversion in backtesting.py's terms: buy oversold when flat, close overbought."""

    def init(self) -> None:
        def rsi(close: np.ndarray) -> np.ndarray:
            values = RSIIndicator(pd.Series(close), 14).rsi().to_numpy(copy=True)
            values[:14] = np.nan
            return values

        self.rsi = self.I(rsi, self.data.Close)

    def next(self) -> None:
        if self.rsi[-1] < 30 and not self.position:
            self.buy()
        elif self.rsi[-1] > 70 and self.position:
            self.position.close()


@pytest.fixture(scope="module")
def theirs() -> pd.DataFrame:
    data = pd.read_csv(GOOG, index_col=0, parse_dates=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = Backtest(data, LongOnlyRsi, cash=10_000, commission=0).run()
    return stats["_trades"]


@pytest.fixture(scope="module")
def ours() -> BacktestResult:
    frame = load_csv_candles(GOOG, "1d", lambda _line: None)
    bars, _ = to_bar_arrays({"GOOG": frame})
    limits = RiskLimits(max_daily_loss_pct=None, max_drawdown_pct=None, max_data_age_ms=5 * DAY)
    config = BacktestConfig(fees=FeeSchedule(maker=0, taker=0), interval="1d", periods_per_year=252)
    return run_backtest(
        bars,
        RsiReversion(RsiReversionParams()),
        {"GOOG": equity_rules("GOOG", float(frame["close"].iloc[-1]))},
        config,
        limits=limits,
        hours=TradingHours(DAY),
    )


def _closed(result: BacktestResult) -> list:
    return [t for t in result.trades if t.exit_reason != "end_of_data"]


def test_goog_rsi_trades_are_backtesting_pys_to_the_cent(ours, theirs) -> None:
    """Same entry and exit days, prices and per-trade return; the share counts differ only in
    how each side sizes 'all equity' in whole shares."""
    trades = _closed(ours)
    assert len(trades) == len(theirs) == 9
    for mine, row in zip(trades, theirs.itertuples(), strict=True):
        assert pd.Timestamp(mine.entry_time, unit="ms") == row.EntryTime
        assert pd.Timestamp(mine.exit_time, unit="ms") == row.ExitTime
        assert (mine.entry_price, mine.exit_price) == (row.EntryPrice, row.ExitPrice)
        assert mine.exit_price / mine.entry_price - 1 == pytest.approx(row.ReturnPct, rel=1e-12)
        assert mine.size == int(mine.size)  # whole shares


def _run(cli, tmp_path: Path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "r.json"
    result = cli("agent-backtest", "--strategy", "rsi_reversion", *args, "--json", str(out))
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text()), result.stderr


@pytest.mark.slow
def test_goog_daily_cli_annualises_on_252_sessions_and_fills_on_sessions(
    cli, tmp_path: Path, theirs: pd.DataFrame
) -> None:
    report, stderr = _run(cli, tmp_path, "--data", str(GOOG), "--symbol", "GOOG")
    assert report["annualisation"]["periods_per_year"] == 252
    assert report["annualisation"]["frequency"] == "daily"
    assert report["config"]["interval"] == "1d"  # read from the file
    assert report["config"]["market_hours"]["fills"] == "regular hours"
    assert report["config"]["prices"] == "raw"
    assert "2,148 bars in regular hours, 0 pre/post-market" in stderr
    days = pd.to_datetime([f["time"] for f in report["fills"]]).tz_localize(None).normalize()
    sessions = pd.to_datetime(xnys().labels, unit="ms")
    assert len(days) and days.isin(sessions).all()
    # The default drawdown breaker stops entries after the third trade; those three are the
    # peer's first three.
    trades = report["trades"]
    assert [(t["entry_price"], t["exit_price"]) for t in trades] == [
        (r.EntryPrice, r.ExitPrice) for r in theirs.head(len(trades)).itertuples()
    ]


def _fill_times(report: dict) -> pd.DatetimeIndex:
    return pd.to_datetime([f["time"] for f in report["fills"]]).tz_convert(NEW_YORK)


@pytest.mark.slow
def test_ea_15m_fills_only_in_regular_hours_unless_extended_hours(cli, tmp_path: Path) -> None:
    args = ("--period", "2", "--oversold", "40", "--overbought", "60", "--data", str(EA))
    regular, stderr = _run(cli, tmp_path, *args, "--symbol", "EA")
    assert "176 bars in regular hours, 143 pre/post-market, 0 outside" in stderr
    times = _fill_times(regular)
    minutes = times.hour * 60 + times.minute
    assert len(times) and ((minutes >= 9 * 60 + 30) & (minutes < 16 * 60)).all()
    # The odd 04:00-04:45 prints (170 -> 204) fill nothing: the first fill is the 09:30 open.
    assert times[0] == pd.Timestamp("2026-05-26 09:30", tz=NEW_YORK)
    # 319 bars on 7 New York trading days: a year is 252 such days, not 365 × 24 hours.
    basis = regular["annualisation"]
    assert basis["frequency"] == "per bar"
    assert basis["periods_per_year"] == pytest.approx(252 * 45.57)
    assert "252 sessions × 45.57 bars per session" in basis["method"]

    extended, _ = _run(cli, tmp_path, *args, "--symbol", "EA", "--extended-hours")
    times = _fill_times(extended)
    minutes = times.hour * 60 + times.minute
    assert ((minutes < 9 * 60 + 30) | (minutes >= 16 * 60)).any()
    assert extended["config"]["market_hours"]["fills"] == "extended hours"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--symbol", "GOOG,BTCUSDT"), "mixes US stocks and crypto pairs"),
        (("--symbol", "BTCUSDT", "--extended-hours"), "--extended-hours applies to US stocks"),
        (("--symbol", "GOOG"), "US stocks need --data FILE"),
        (("--symbol", "GOOG", "--data", str(GOOG), "--fee-bps", "5"), "--fee-bps is a crypto fee"),
        (("--symbol", "GO-OG"), "invalid symbol 'GO-OG'"),
    ],
)
def test_stock_and_crypto_mistakes_exit_2_with_one_line(cli, args, message) -> None:
    result = cli("agent-backtest", "--strategy", "sma_cross", *args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
