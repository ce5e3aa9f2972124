"""Momentum across symbols: tiny bar tables with known rates of change say which symbol is held
after each rebalance (UTC days for crypto, XNYS sessions for stocks), and real files run it
end to end through the gate on both asset classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from script_strategy import NO_COSTS, rules

from backtest.data import to_bar_arrays
from backtest.engine import run_backtest
from backtest.strategies.momentum import Momentum, MomentumParams
from backtest.strategies.periods import period_masks
from market.instruments import equity_rules
from risk.limits import RiskLimits
from runtime.hours import TradingHours

DAY = 86_400_000
HALF_HOUR = 1_800_000
MONDAY = 1_761_523_200_000  # 2025-10-27 00:00 UTC
NO_BREAKERS = RiskLimits(max_daily_loss_pct=None, max_drawdown_pct=None, max_data_age_ms=5 * DAY)
GOOG = (
    Path(__file__).parent
    / "fixtures"
    / "stocks"
    / "GOOG-1d-2004-08-19_2013-03-01_backtesting-py.csv"
)
EA = GOOG.parent / "EA-15m-2026-05-26_2026-06-03_yfinance.csv"


def frame(times: np.ndarray, closes: list[float], step: int) -> pd.DataFrame:
    """Bars that open at the previous close, so every fill price is a known close."""
    close = np.array(closes, dtype=float)
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame(
        {
            "open_time": times,
            "open": open_,
            "high": np.maximum(open_, close) + 0.5,
            "low": np.minimum(open_, close) - 0.5,
            "close": close,
            "volume": 1_000_000.0,
            "close_time": times + step - 1,
        }
    )


def held_after(result) -> list[tuple[int, str, str]]:
    """Each fill as (bar, symbol, buy/sell)."""
    return [(f.bar, f.symbol, "buy" if f.side > 0 else "sell") for f in result.fills]


# Closes per UTC day; ROC over one day: day 1 A leads, day 2 B, day 3 B again, day 4 C, day 5 C.
DAILY = {
    "AAAUSDT": [100, 110, 111, 111, 111, 111, 111],
    "BBBUSDT": [100, 105, 120, 126, 126, 126, 126],
    "CCCUSDT": [100, 100, 100, 100, 150, 160, 170],
}


def daily(closes: dict[str, list[float]], top_k: int):
    """Momentum over one UTC day on crypto daily bars from Monday on."""
    times = MONDAY + DAY * np.arange(len(next(iter(closes.values()))), dtype=np.int64)
    bars, _ = to_bar_arrays({s: frame(times, c, DAY) for s, c in closes.items()})
    strategy = Momentum(MomentumParams(lookback=1, top_k=top_k))
    return run_backtest(bars, strategy, {s: rules(s) for s in closes}, NO_COSTS, limits=NO_BREAKERS)


def test_crypto_holds_the_top_symbol_and_swaps_once_the_sale_has_filled() -> None:
    result = daily(DAILY, 1)
    # Bought at the open after the day it led; sold at the open after it lost the lead, and
    # the new leader bought one day later, once that sale freed the cash.
    assert held_after(result) == [
        (2, "AAAUSDT", "buy"),
        (3, "AAAUSDT", "sell"),
        (4, "BBBUSDT", "buy"),
        (5, "BBBUSDT", "sell"),
        (6, "CCCUSDT", "buy"),
    ]


def test_top_two_holds_both_leaders_at_half_size_each() -> None:
    closes = {
        "AAAUSDT": [100, 110, 121, 133],
        "BBBUSDT": [100, 90, 81, 73],
        "CCCUSDT": [100, 105, 110, 116],
    }
    result = daily(closes, 2)
    assert held_after(result) == [(2, "AAAUSDT", "buy"), (2, "CCCUSDT", "buy")]
    notional = [f.quantity * f.price for f in result.fills]
    assert notional == pytest.approx([5_000, 5_000], rel=1e-3)


def ny(text: str) -> int:
    return int(pd.Timestamp(text, tz="America/New_York").value // 1_000_000)


def test_stock_periods_are_sessions_pre_market_and_early_closes_included() -> None:
    # The day after Thanksgiving 2025 closes at 13:00; Monday's pre-market bar starts nothing.
    times = np.array(
        [
            ny(t)
            for t in (
                "2025-11-28 12:00",
                "2025-11-28 12:30",
                "2025-12-01 08:00",
                "2025-12-01 09:30",
                "2025-12-01 15:30",
            )
        ],
        dtype=np.int64,
    )
    ends, starts = period_masks(times, times + HALF_HOUR - 1, sessions=True)
    assert ends.tolist() == [False, True, False, False, True]
    assert starts.tolist() == [True, False, False, True, False]


def test_a_yfinance_hourly_sessions_last_bar_ends_its_period() -> None:
    """yfinance's hourly bars start at 09:30, ..., 15:30 (12:30 on an early close): the last
    runs past the close and is the one that ends the session."""
    hour = 2 * HALF_HOUR
    stamps = ("2025-11-28 11:30", "2025-11-28 12:30", "2025-12-01 14:30", "2025-12-01 15:30")
    times = np.array([ny(t) for t in stamps], dtype=np.int64)
    ends, starts = period_masks(times, times + hour - 1, sessions=True)
    assert ends.tolist() == [False, True, False, True]
    assert starts.tolist() == [True, False, True, False]


def test_stocks_rebalance_at_the_close_and_fill_at_the_next_sessions_open() -> None:
    days = ("2025-12-01", "2025-12-02", "2025-12-03")
    stamps = [f"{d} {t}" for d in days for t in ("09:00", "09:30", "15:30")]
    times = np.array([ny(t) for t in stamps], dtype=np.int64)
    closes = {
        "AAA": [100, 100, 100, 100, 100, 100, 100, 100, 110],
        "BBB": [100, 100, 100, 100, 100, 105, 105, 105, 105],
    }
    bars, _ = to_bar_arrays({s: frame(times, c, HALF_HOUR) for s, c in closes.items()})
    result = run_backtest(
        bars,
        Momentum(MomentumParams(lookback=1, top_k=1)),
        {s: equity_rules(s, 100.0) for s in closes},
        NO_COSTS,
        limits=NO_BREAKERS,
        hours=TradingHours(HALF_HOUR),
    )
    # Session 2's close ranks BBB (+5%) first: bought at session 3's 09:30 open, not in its
    # pre-market; session 3's close ranks AAA, but no bar after it is left to fill.
    assert held_after(result) == [(7, "BBB", "buy")]
    assert result.fills[0].quantity == int(result.fills[0].quantity)


@pytest.mark.slow
def test_goog_daily_and_the_crypto_sample_run_momentum_from_the_cli(cli, tmp_path: Path) -> None:
    out = tmp_path / "goog.json"
    args = ("--strategy", "momentum", "--lookback", "20")
    result = cli(
        "agent-backtest", *args, "--data", str(GOOG), "--symbol", "GOOG", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["annualisation"]["periods_per_year"] == 252
    assert report["trades"]  # one symbol is always its own top: bought after 20 sessions
    assert report["trades"][0]["entry_time"].startswith("2004-09-")
    out = tmp_path / "crypto.json"
    result = cli(
        "agent-backtest",
        "--strategy",
        "momentum",
        "--lookback",
        "1",
        "--symbol",
        "BTCUSDT,ETHUSDT",
        "--days",
        "3",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    fills = json.loads(out.read_text())["fills"]
    assert fills and all(pd.Timestamp(f["time"]).strftime("%H:%M") == "00:00" for f in fills)


def test_a_bad_momentum_parameter_exits_2_naming_it(cli) -> None:
    result = cli("agent-backtest", "--strategy", "momentum", "--top-k", "0", "--days", "1")
    assert result.returncode == 2
    assert "top_k" in result.stderr and "Traceback" not in result.stderr


def test_intraday_stock_buy_and_hold_starts_at_the_first_rebalance_not_bar_n(
    cli, tmp_path: Path
) -> None:
    """On the EA 15-minute file (pre- and post-market rows included), a two-session lookback
    first ranks at the close of the third session: Buy & Hold starts at that bar, not at bar 2."""
    out = tmp_path / "ea.json"
    args = ("--strategy", "momentum", "--lookback", "2", "--symbol", "EA", "--data", str(EA))
    result = cli("agent-backtest", *args, "--json", str(out))
    assert result.returncode == 0, result.stderr
    rows = pd.read_csv(EA)
    local = pd.to_datetime(rows["Datetime"], utc=True).dt.tz_convert("America/New_York")
    third_close = int(np.flatnonzero(local.dt.strftime("%H:%M") == "15:45")[2])
    assert third_close > 100  # two sessions of bars, not two bars
    close = rows["Close"].to_numpy()
    expected = (close[-1] - close[third_close]) / close[third_close] * 100
    report = json.loads(out.read_text())
    assert report["metrics"]["Buy & Hold Return [%]"] == pytest.approx(expected)


@pytest.mark.slow
def test_momentum_trades_a_yfinance_hourly_file_that_holds_regular_hours_only(
    cli, tmp_path: Path
) -> None:
    """yfinance's hourly bars start at 09:30, ..., 15:30: every one is in regular hours and the
    15:30 bar ends the session, so momentum ranks there and buys (it found no session's end)."""
    days = ("2025-12-01", "2025-12-02", "2025-12-03", "2025-12-04", "2025-12-05")
    stamps = pd.DatetimeIndex(
        [f"{d} {h}:30" for d in days for h in range(9, 16)], tz="America/New_York"
    )
    close = 100 + np.arange(len(stamps), dtype=float)
    data = tmp_path / "xyz-1h.csv"
    pd.DataFrame(
        {
            "Datetime": [t.isoformat(sep=" ") for t in stamps],
            "Open": close,
            "High": close + 1,
            "Low": close - 1,
            "Close": close,
            "Volume": 1000,
        }
    ).to_csv(data, index=False)
    out = tmp_path / "xyz.json"
    args = ("--strategy", "momentum", "--lookback", "1", "--symbol", "XYZ", "--data", str(data))
    result = cli("agent-backtest", *args, "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "35 bars in regular hours, 0 pre/post-market" in result.stderr
    fills = json.loads(out.read_text())["fills"]
    assert fills, "the session's last bar is where momentum ranks"
    first = pd.Timestamp(fills[0]["time"]).tz_convert("America/New_York")
    assert first.strftime("%Y-%m-%d %H:%M") == "2025-12-03 09:30"
