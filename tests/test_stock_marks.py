"""What a stock position is marked at: the last close the run could trade at, carried through
pre- and post-market bars, so a stray extended-hours print moves neither the report's equity
nor the daily-loss and drawdown breakers; a split or dividend between the two moves the
carried price as it moves the position, so equity does not jump at an ex-date."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from script_strategy import NO_COSTS, backtest, order
from test_stock_hours import HALF_HOUR, NO_BREAKERS, ms, table

from backtest.report import report_figures
from market.corporate import Action, CorporateActions
from market.instruments import equity_rules
from risk.models import SignalAction
from runtime.hours import HoursConfig, TradingHours

RULES = {"EA": equity_rules("EA", 100.0)}
EA = Path(__file__).parent / "fixtures" / "stocks" / "EA-15m-2026-05-26_2026-06-03_yfinance.csv"


def buy(ctx):
    return order(ctx, SignalAction.BUY, size_pct=0.9)


def add(ctx):
    return order(ctx, SignalAction.BUY, size_pct=0.05, tag="add")


# Bought at Thursday's last regular bar; a pre-market print 20% down on Friday (UTC day and
# session alike), which opens where Thursday closed, then really falls 20% in regular hours.
BAD_PRINT = [
    ("2026-05-28 15:00", 100, 100, 100, 100),  # 0: decides to buy
    ("2026-05-28 15:30", 100, 100, 100, 100),  # 1: fills at 100
    ("2026-05-29 04:00", 100, 100, 100, 100),  # 2: pre-market, Friday's first UTC bar
    ("2026-05-29 04:30", 100, 100, 80, 80),  # 3: a pre-market print
    ("2026-05-29 09:30", 100, 100, 100, 100),  # 4: adds (refused if 3 tripped a breaker)
    ("2026-05-29 10:00", 100, 100, 80, 80),  # 5: a real drop
    ("2026-05-29 10:30", 80, 80, 80, 80),  # 6: adds: refused
    ("2026-05-29 11:00", 80, 80, 80, 80),  # the last close decides nothing
]
PLAN = {("EA", 0): [buy], ("EA", 4): [add], ("EA", 6): [add]}


def run(rows, plan, *, limits=NO_BREAKERS, actions=None, extended=False):
    return backtest(
        {"EA": table(rows, HALF_HOUR)},
        plan,
        NO_COSTS,
        symbol_rules=RULES,
        limits=limits,
        hours=TradingHours(HALF_HOUR, HoursConfig(extended_hours=extended)),
        actions=actions,
    )


def refused(result, bar: int) -> list[str]:
    """Why the decision at `bar` placed no order: the halt that skipped it, or its vetoes."""
    at = int(result.bars.close_time[bar])
    for halt in result.halted:
        if halt.covers(at):
            return halt.codes
    verdict = result.verdicts[f"script:EA:{bar}:buyadd"]
    return [str(r.code) for r in getattr(verdict, "reasons", [])]


def test_a_pre_market_print_is_no_mark_the_last_regular_close_is() -> None:
    result = run(BAD_PRINT, {("EA", 0): [buy]})
    (fill,) = result.fills
    cash = 10_000.0 - fill.quantity * 100
    marked = cash + fill.quantity * np.array([100, 100, 100, 100, 100, 80, 80, 80])
    assert result.equity[1:] == pytest.approx(marked[1:])


@pytest.mark.parametrize(
    ("limit", "code"),
    [({"max_daily_loss_pct": 0.1}, "DAILY_LOSS"), ({"max_drawdown_pct": 0.1}, "MAX_DRAWDOWN")],
)
def test_a_bad_print_trips_no_breaker_a_regular_hours_drop_does(limit, code) -> None:
    result = run(BAD_PRINT, PLAN, limits=NO_BREAKERS.model_copy(update=limit))
    assert refused(result, 4) == []
    assert refused(result, 6) == [code]


def test_with_extended_hours_the_post_market_close_is_a_mark() -> None:
    """Opted into extended hours, the run could have sold at that print: it counts."""
    limits = NO_BREAKERS.model_copy(update={"max_drawdown_pct": 0.1})
    result = run(BAD_PRINT, PLAN, limits=limits, extended=True)
    assert refused(result, 4) == ["MAX_DRAWDOWN"]


# Bought Monday; Tuesday is the ex-date, its first bar a pre-market one on the new scale.
EX_DATE = [
    ("2026-06-01 15:00", 100, 100, 100, 100),  # 0: decides to buy
    ("2026-06-01 15:30", 100, 100, 100, 100),  # 1: fills at 100
    ("2026-06-01 16:00", 100, 104, 100, 104),  # 2: post-market
    ("2026-06-02 04:00", 52, 52, 45, 45),  # 3: the ex-date's first bar, pre-market
    ("2026-06-02 09:30", 50, 51, 50, 51),  # 4: the ex-date's open
]


@pytest.mark.parametrize(
    ("action", "opened"),
    [(Action(ratio=2.0), 51 * 2), (Action(dividend=1.0), 51 + 1.0)],
    ids=["split", "dividend"],
)
def test_equity_does_not_jump_at_an_ex_date_in_extended_hours_data(action, opened) -> None:
    actions = CorporateActions({"EA": {ms("2026-06-02 04:00"): action}})
    result = run(EX_DATE, {("EA", 0): [buy]}, actions=actions)
    (fill,) = result.fills
    held = fill.quantity * 100
    before = 10_000.0 - held
    assert result.equity[1:4] == pytest.approx([10_000.0] * 3)  # no jump, no stray print
    assert result.equity[4] == pytest.approx(before + fill.quantity * opened)


def _equity(report: dict) -> pd.Series:
    curve = report["equity"]
    times = pd.to_datetime(curve["time"], unit="ms", utc=True).tz_convert("America/New_York")
    return pd.Series(curve["equity"], index=times)


@pytest.mark.slow
def test_the_ea_reports_drawdown_is_no_pre_market_print(cli, tmp_path) -> None:
    """The EA file's 2026-05-27 04:00 row closed at 169.88 on no volume (the regular close was
    ~201): it was the run's 15.5% max drawdown, while no trade lost more than 0.2%."""
    out = tmp_path / "ea.json"
    args = ("--strategy", "rsi_reversion", "--period", "2", "--data", str(EA), "--symbol", "EA")
    result = cli("agent-backtest", *args, "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    metrics = report["metrics"]
    worst = min(t["return_pct"] for t in report["trades"])
    assert -1 < worst < 0
    assert -2 < metrics["Max. Drawdown [%]"] < 0
    assert metrics["Volatility (Ann.) [%]"] < 10
    equity = _equity(report)
    assert equity.idxmin() != pd.Timestamp("2026-05-27 04:00", tz="America/New_York")
    assert equity.min() > 0.98 * 10_000


# A pre-market print before the first regular bar and a post-market one after the last.
STRAY_PRINTS = [
    ("2026-05-29 04:00", 80, 80, 80, 80),  # 0: pre-market, on no volume
    ("2026-05-29 09:30", 100, 100, 100, 100),  # 1: the first bar the run could trade in
    ("2026-05-29 10:00", 100, 101, 100, 101),  # 2: the last regular close
    ("2026-05-29 16:30", 120, 120, 120, 120),  # 3: post-market
]


def test_buy_and_hold_buys_and_is_valued_where_the_run_could_trade() -> None:
    """Buy & Hold read 50% from the 80 pre-market print to the 120 post-market one; bought at
    the first regular close and valued at the last, it is 1%."""
    result = run(STRAY_PRINTS, {})
    metrics = report_figures(result)[0]
    assert metrics["Buy & Hold Return [%]"] == pytest.approx(1.0)


def test_buy_and_hold_is_n_a_when_no_bar_after_the_warm_up_could_trade() -> None:
    result = run(STRAY_PRINTS[:1] + STRAY_PRINTS[3:], {})
    metrics, basis = report_figures(result)
    assert np.isnan(metrics["Buy & Hold Return [%]"])
    assert "no bar in market hours" in basis.not_available["Buy & Hold Return [%]"]


@pytest.mark.slow
def test_the_ea_buy_and_hold_starts_at_the_regular_open_not_the_pre_market_print(
    cli, tmp_path
) -> None:
    """A window from 04:00 New York time bought at that bar's 169.88 close (on no volume):
    Buy & Hold +18.13%, while in regular hours EA went 201.05 -> 200.68."""
    out = tmp_path / "ea.json"
    result = cli("agent-backtest", "--strategy", "rsi_reversion", "--period", "2",
                 "--data", str(EA), "--symbol", "EA", "--start", "2026-05-27T08:00",
                 "--end", "2026-05-27T20:00", "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    held = json.loads(out.read_text())["metrics"]["Buy & Hold Return [%]"]
    assert held == pytest.approx((200.679992675781 - 201.050003051758) / 201.050003051758 * 100)
    assert re.search(r"Buy & Hold Return \[%\] +│ +-0\.184 │", result.stdout), result.stdout
