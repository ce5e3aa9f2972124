"""The calendar scenarios on paper: a paper account stepped bar by bar through the one runner
(as agent-trade steps it) fills exactly where the event-skipping backtest fills."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import test_stock_marks as marks
from account_record import query
from script_strategy import NO_COSTS, Script, backtest, order
from test_stock_hours import FRIDAY_CLOSE, HALF_HOUR, NO_BREAKERS, ms, table

from execution.fees import FeeSchedule
from execution.paper import GrowingFeed, PaperExecutor
from execution.slippage import FixedBps
from market.corporate import Action, CorporateActions
from market.instruments import equity_rules
from market.models import Candle
from risk.models import SignalAction
from runtime.hours import HoursConfig, TradingHours
from runtime.market import Market
from runtime.ports import MemoryRisk
from runtime.runner import Runner

RULES = {"EA": equity_rules("EA", 100.0)}
WEEKEND_STOP = [
    ("2026-05-28 15:00", 100, 101, 99, 100),
    ("2026-05-28 15:30", 100, 101, 99, 100),
    ("2026-05-29 15:30", 99, 100, 98, 99),
    ("2026-06-01 08:00", 85, 86, 84, 85),
    ("2026-06-01 09:30", 90, 92, 89, 91),
]


def buy(ctx):
    return order(ctx, SignalAction.BUY, size_pct=0.5, stop_loss=95.0)


def paper(frame: pd.DataFrame, plan, hours: TradingHours) -> list[tuple]:
    venue = replay(frame, plan, hours)
    return [(f.bar, f.side, f.quantity, f.price) for f in venue.sim.fills]


def replay(
    frame: pd.DataFrame,
    plan,
    hours: TradingHours | None,
    rules=RULES,
    actions: CorporateActions | None = None,
) -> PaperExecutor:
    """Each bar appended to a growing feed and stepped, as the trading loop does."""
    venue = paper_venue(rules, actions)
    step_rows(venue, venue.feed, Script(plan), frame.to_dict("records"), hours)
    return venue


def paper_venue(rules=RULES, actions: CorporateActions | None = None) -> PaperExecutor:
    """A fresh paper account of 10,000 on an empty feed, with no costs."""
    (symbol,) = rules
    return PaperExecutor(rules, GrowingFeed([symbol]), cash=10_000.0,
                         fees=FeeSchedule(maker=0, taker=0), slippage=FixedBps(bps=0.0),
                         actions=actions)  # fmt: skip


def step_rows(
    venue: PaperExecutor,
    feed: GrowingFeed,
    strategy: Script,
    rows: list[dict],
    hours=None,
    limits=NO_BREAKERS,
) -> tuple[Runner, list[float]]:
    """Append each row to the feed and step it through a runner on `venue`, as the trading
    loop does; the runner and the equity after each step."""
    symbol, rules = feed.symbols[0], venue.rules
    runner = None
    equity = []
    for row in rows:
        candle = Candle(**{k: row[k] for k in ("open_time", "open", "high", "low", "close",
                                               "volume", "close_time")})  # fmt: skip
        index = feed.append(candle.open_time, candle.close_time, {symbol: candle})
        if runner is None:
            runner = Runner(
                strategy=strategy,
                market=Market(feed.view(), rules, hours=hours, actions=venue.sim.actions),
                venue=venue,
                risk=MemoryRisk(limits.model_copy(update={"fee_rate": 0.0})),
                prepared=lambda s: strategy.prepare(feed.view().symbols[s]),
                hours=hours,
            )
        runner.extend(feed.view())
        runner.step(index)
        equity.append(runner.equity(index))
    assert runner is not None
    return runner, equity


@pytest.mark.parametrize("rows", [FRIDAY_CLOSE, WEEKEND_STOP], ids=["friday", "weekend-stop"])
@pytest.mark.parametrize("extended", [False, True])
def test_paper_and_backtest_fill_the_same_bars_in_market_hours(rows, extended) -> None:
    frame = table(rows, HALF_HOUR)
    plan = {("EA", 1): [buy]}
    hours = TradingHours(HALF_HOUR, HoursConfig(extended_hours=extended))
    tested = backtest({"EA": frame}, plan, NO_COSTS, symbol_rules=RULES, limits=NO_BREAKERS,
                      hours=hours)  # fmt: skip
    expected = [(f.bar, f.side, f.quantity, f.price) for f in tested.fills]
    assert expected
    assert paper(frame, plan, hours) == expected


@pytest.mark.parametrize(
    ("rows", "plan", "limit", "action"),
    [
        (marks.BAD_PRINT, marks.PLAN, {"max_daily_loss_pct": 0.1}, None),
        (marks.BAD_PRINT, marks.PLAN, {"max_drawdown_pct": 0.1}, None),
        (marks.EX_DATE, {("EA", 0): [marks.buy]}, {}, Action(ratio=2.0)),
        (marks.EX_DATE, {("EA", 0): [marks.buy]}, {}, Action(dividend=1.0)),
    ],
    ids=["daily-loss", "drawdown", "split", "dividend"],
)
def test_paper_marks_the_account_as_the_backtest(rows, plan, limit, action) -> None:
    """A stray pre-market print and an ex-date in extended-hours data: the paper account is
    valued, and its breakers trip, at the same marks as the backtest's."""
    actions = None if action is None else CorporateActions({"EA": {ms("2026-06-02 04:00"): action}})
    limits = NO_BREAKERS.model_copy(update=limit)
    tested = marks.run(rows, plan, limits=limits, actions=actions)
    venue = paper_venue(actions=actions)
    frame = table(rows, HALF_HOUR).to_dict("records")
    runner, equity = step_rows(venue, venue.feed, Script(plan), frame, TradingHours(HALF_HOUR),
                               limits)  # fmt: skip
    assert equity == pytest.approx(tested.equity.tolist(), rel=1e-12)
    assert runner.tally.halted == tested.halted
    assert runner.tally.vetoes == tested.vetoes


EA = Path(__file__).parent / "fixtures" / "stocks" / "EA-15m-2026-05-26_2026-06-03_yfinance.csv"
RSI = ("--strategy", "rsi_reversion", "--period", "2", "--oversold", "40", "--overbought", "60")


def _fills(rows: list[dict]) -> list[tuple]:
    """The replayed stream carries Binance's 8-place decimals, so prices compare to 1e-6."""
    return [
        (r["time_ms"], r["side"], r["quantity"], round(r["price"], 6), round(r["fee"], 9))
        for r in rows
    ]


@pytest.mark.slow
def test_agent_trade_paper_trades_the_ea_replay_as_the_backtest_fills_it(cli, tmp_path) -> None:
    common = (*RSI, "--symbol", "EA", "--data", str(EA), "--slippage-bps", "2")
    out = tmp_path / "bt.json"
    tested = cli("agent-backtest", *common, "--json", str(out))
    assert tested.returncode == 0, tested.stderr
    report = json.loads(out.read_text())
    run = cli("agent-trade", "--feed", "replay", "--speed", "max", "--account", "ea", *common)
    assert run.returncode == 0, run.stderr
    assert "176 bars in regular hours, 143 pre/post-market" in run.stderr
    fills = json.loads(cli("agent-trade", "fills", "--account", "ea", "--json").stdout)
    assert len(fills) > 10
    assert _fills(fills) == _fills(report["fills"])
    times = pd.to_datetime([f["time_ms"] for f in fills], unit="ms", utc=True)
    local = times.tz_convert("America/New_York")
    minutes = local.hour * 60 + local.minute
    assert ((minutes >= 570) & (minutes < 960)).all()
    assert any(f["side"] == "sell" and f["fee"] > 0 for f in fills)  # SEC fee and TAF


@pytest.mark.slow
def test_agent_trade_values_the_ea_replay_as_the_backtest_does(cli, offline_env, tmp_path) -> None:
    """Held over the EA file's 2026-05-27 04:00 print (close 169.88 on no volume, the regular
    close ~201): the paper account's stored equity, like the backtest's, stays at the last
    regular close, and its status values what it holds at the end as the report does."""
    common = ("--strategy", "rsi_reversion", "--period", "2", "--symbol", "EA", "--data", str(EA),
              "--slippage-bps", "2")  # fmt: skip
    out = tmp_path / "bt.json"
    tested = cli("agent-backtest", *common, "--json", str(out))
    assert tested.returncode == 0, tested.stderr
    curve = json.loads(out.read_text())["equity"]["equity"]
    run = cli("agent-trade", "--feed", "replay", "--speed", "max", "--account", "ea", *common)
    assert run.returncode == 0, run.stderr
    stored = query(Path(offline_env["AGENT_DATA_DIR"]) / "agent.db",
                   "SELECT equity FROM equity_points ORDER BY time_ms")  # fmt: skip
    equity = [e for (e,) in stored]
    assert equity == pytest.approx(curve, rel=1e-9)
    assert min(equity) > 0.98 * 10_000
    status = json.loads(cli("agent-trade", "status", "--account", "ea", "--json").stdout)
    assert status["equity"] == pytest.approx(curve[-1], abs=0.01)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--feed", "binance", "--symbol", "GOOG"), "GOOG is a US stock; the binance venue"),
        (("--symbol", "EA"), "no EA bars stored under alpaca: import a file"),
        (("--symbol", "BTCUSDT", "--extended-hours"), "--extended-hours applies to US stocks"),
    ],
)
def test_agent_trade_refuses_stocks_where_they_cannot_trade(cli, args, message) -> None:
    result = cli("agent-trade", "--strategy", "sma_cross", *args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.slow
def test_a_stock_replay_misses_only_a_session_the_file_lacks(cli, tmp_path) -> None:
    """A stock's nights, weekends and holidays (MLK day here) are no missing bars: each one was
    a warning, and the account's last error, at every weekend of a daily replay."""
    from test_corporate_actions import _yahoo

    data = tmp_path / "xyz.csv"
    _yahoo(data, 100 + 5 * np.sin(np.arange(30) / 3), np.zeros(30))
    rows = data.read_text().splitlines()
    assert rows.pop(12).startswith("2024-01-18")  # a Thursday: the one session lost
    data.write_text("\n".join(rows) + "\n")
    args = ("--strategy", "sma_cross", "--fast", "3", "--slow", "8", "--symbol", "XYZ")
    run = cli("agent-trade", "--feed", "replay", "--speed", "max", "--account", "xyz",
              *args, "--data", str(data))  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert re.findall(r"\d+ closed bar\(s\) missing", run.stderr) == ["1 closed bar(s) missing"]
    status = json.loads(cli("agent-trade", "status", "--account", "xyz", "--json").stdout)
    assert status["feed"] == {"missing_bars": 1}
    assert status["last_error"].startswith("XYZ: 1 bar(s) missing")
