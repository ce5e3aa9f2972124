"""Splits and dividends on raw prices, as tiny daily bar tables: the account follows the company
at the ex-date's open (positions, open orders, brackets, cash), indicators read a history in
which the split is no crash, and a paper replay ends in the same account as the backtest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from script_strategy import NO_COSTS, backtest, order
from test_stock_hours import NO_BREAKERS
from test_stock_paper_parity import replay

from backtest.report import report_figures
from market.calendar import xnys
from market.corporate import Action, CorporateActions
from market.instruments import equity_rules
from risk.models import OrderType, SignalAction

DAY = 86_400_000
MONDAY = 1_780_272_000_000  # 2026-06-01 00:00 UTC
RULES = {"XYZ": equity_rules("XYZ", 100.0)}
EA = Path(__file__).parent / "fixtures" / "stocks" / "EA-15m-2026-05-26_2026-06-03_yfinance.csv"
ROWS = [  # open, high, low, close; the split halves prices from bar 3
    (100, 101, 99, 100),
    (100, 101, 99, 100),
    (100, 102, 99, 100),
    (50, 51, 49.5, 50),  # ex-date of the split
    (50, 51, 49.5, 50),  # ex-date of a $0.40 dividend
    (50, 51, 49.5, 50),
]


def table(ratio: float = 2.0) -> pd.DataFrame:
    """ROWS with the prices from the ex-date on divided by `ratio` instead of 2."""
    return daily_bars(ROWS[:3] + [tuple(round(p * 2 / ratio, 2) for p in row) for row in ROWS[3:]])


def daily_bars(rows: list[tuple]) -> pd.DataFrame:
    """(open, high, low, close) rows as daily bars from Monday."""
    times = MONDAY + DAY * np.arange(len(rows), dtype=np.int64)
    o, h, lo, c = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    return pd.DataFrame(
        {"open_time": times, "open": o, "high": h, "low": lo, "close": c,
         "volume": 1_000.0, "close_time": times + DAY - 1}
    )  # fmt: skip


def actions(ratio: float) -> CorporateActions:
    return CorporateActions(
        {"XYZ": {MONDAY + 3 * DAY: Action(ratio=ratio), MONDAY + 4 * DAY: Action(dividend=0.4)}}
    )


def entry(ctx):
    return order(ctx, quantity=15, stop_loss=90.0, take_profit=130.0)


def resting(ctx):
    return order(ctx, SignalAction.BUY, quantity=5, order_type=OrderType.LIMIT, limit=95.02,
                 tag="limit")  # fmt: skip


def late(ctx):
    """Decided on the split's eve, placed at the ex-date's open."""
    return order(ctx, SignalAction.BUY, quantity=3, order_type=OrderType.LIMIT, limit=97.0,
                 tag="late")  # fmt: skip


PLAN = {("XYZ", 0): [entry], ("XYZ", 1): [resting], ("XYZ", 2): [late]}


def account(ledger, working, brackets) -> dict:
    return {
        "cash": round(ledger.cash, 6),
        "shares": ledger.quantity("XYZ"),
        "avg": round(ledger.avg_price("XYZ"), 6),
        "orders": sorted((o.remaining, o.limit) for o in working),
        "bracket": [(b.stop_loss, b.take_profit) for b in brackets.values()],
    }


def test_a_2_for_1_split_doubles_shares_and_halves_orders_and_a_dividend_is_cash() -> None:
    plain = backtest({"XYZ": table()}, PLAN, NO_COSTS, symbol_rules=RULES, limits=NO_BREAKERS)
    split = backtest({"XYZ": table()}, PLAN, NO_COSTS, symbol_rules=RULES, limits=NO_BREAKERS,
                     actions=actions(2.0))  # fmt: skip
    # Unaware of the split, the account reads it as a crash: the stop at 90 sells everything at the
    # ex-date open (the limit buy at 95.02 filled there first).
    assert (3, -1, 20.0, 50.0) in [(f.bar, f.side, f.quantity, f.price) for f in plain.fills]
    # Aware of it: 15 @ 100 became 30 @ 50, no fill at the split, the orders followed.
    assert [(f.bar, f.side, f.quantity, f.price) for f in split.fills] == [(1, 1, 15.0, 100.0)]
    # The buy limits and the bracket's stop, halved at the split, drop by the $0.40 dividend
    # at its ex-date (FINRA Rule 5330); the take-profit, a sell limit, stays.
    executor_state = account(_ledger(split), _working(split), _brackets(split))
    assert executor_state == {
        "cash": 10_000 - 15 * 100 + 30 * 0.4,
        "shares": 30.0,
        "avg": 50.0,
        "orders": [(6.0, 48.1), (10.0, 47.11)],
        "bracket": [(44.6, 65.0)],
    }
    # Equity is continuous across the split; the dividend is the only change after it.
    assert split.equity[2] == pytest.approx(split.equity[3]) == pytest.approx(10_000.0)
    assert split.equity[4] - split.equity[3] == pytest.approx(30 * 0.4)
    # The indicator's history has no gap at the split.
    assert np.ptp(split.prepared["XYZ"]["close"][:4]) == 0.0


def test_a_leftover_fraction_of_a_share_is_paid_as_cash() -> None:
    """A 3:2 split of 15 whole shares gives 22 and half a share paid at the last close ÷ 1.5."""
    result = backtest({"XYZ": table(1.5)}, {("XYZ", 0): [entry]}, NO_COSTS, symbol_rules=RULES,
                      limits=NO_BREAKERS, actions=actions(1.5))  # fmt: skip
    ledger = _ledger(result)
    assert ledger.quantity("XYZ") == 22.0
    assert ledger.cash == pytest.approx(10_000 - 1_500 + 0.5 * 100 / 1.5 + 22 * 0.4)


def test_paper_replay_ends_in_the_backtests_account() -> None:
    tested = backtest({"XYZ": table()}, PLAN, NO_COSTS, symbol_rules=RULES, limits=NO_BREAKERS,
                      actions=actions(2.0))  # fmt: skip
    venue = replay(table(), PLAN, None, RULES, actions(2.0))
    fills = [(f.bar, f.side, f.quantity, f.price) for f in venue.sim.fills]
    assert fills == [(f.bar, f.side, f.quantity, f.price) for f in tested.fills]
    paper = account(venue.ledger, venue.sim.working, venue.sim.brackets)
    assert paper == account(_ledger(tested), _working(tested), _brackets(tested))


# A $1.00 dividend goes ex at bar 3: the open falls from 100 to 99 by the dividend alone.
EX_DIVIDEND = [(100, 100.5, 99.8, 100), (100, 100.5, 99.8, 100), (100, 100.5, 99.8, 100),
               (99, 99.3, 98.9, 99), (99, 99.3, 98.9, 99)]  # fmt: skip
DIVIDEND = CorporateActions({"XYZ": {MONDAY + 3 * DAY: Action(dividend=1.0)}})


def dividend_table() -> pd.DataFrame:
    return daily_bars(EX_DIVIDEND)


def rests(action: SignalAction, kind: OrderType, quantity: float, tag: str, **price: float):
    """A decision that places one resting order."""
    return lambda ctx: order(ctx, action, quantity=quantity, order_type=kind, tag=tag, **price)


# On 10 shares held: a buy limit 0.45 under the close, a sell stop 0.75 under it and a sell
# limit 0.75 over it, all resting when the dividend goes ex.
DIVIDEND_PLAN = {
    ("XYZ", 0): [lambda ctx: order(ctx, quantity=10)],
    ("XYZ", 1): [
        rests(SignalAction.BUY, OrderType.LIMIT, 5, "buy-limit", limit=99.55),
        rests(SignalAction.SELL, OrderType.STOP, 10, "sell-stop", stop=99.25),
        rests(SignalAction.SELL, OrderType.LIMIT, 10, "sell-limit", limit=100.75),
    ],
}


@pytest.mark.parametrize("paper", [False, True])
def test_a_dividend_lowers_resting_buy_limits_and_sell_stops_so_the_ex_date_trips_neither(
    paper,
) -> None:
    """Unadjusted, the ex-date's open at 99 would fill the buy limit at 99.55 and trip the sell
    stop at 99.25, on a drop that is the dividend paid; adjusted (Rule 5330, rounded down to the
    tick) they rest at 98.55 and 98.25 and nothing fills. The sell limit keeps its price. A
    paper replay (the same runner) ends with the same orders."""
    if paper:
        venue = replay(dividend_table(), DIVIDEND_PLAN, None, RULES, DIVIDEND)
        fills, ledger, working = venue.sim.fills, venue.ledger, venue.sim.working
    else:
        tested = backtest({"XYZ": dividend_table()}, DIVIDEND_PLAN, NO_COSTS, symbol_rules=RULES,
                          limits=NO_BREAKERS, actions=DIVIDEND)  # fmt: skip
        fills, ledger, working = tested.fills, _ledger(tested), _working(tested)
    assert [(f.bar, f.side, f.quantity) for f in fills] == [(1, 1, 10.0)]
    assert sorted((o.side, o.kind.value, o.limit, o.stop) for o in working) == [
        (-1, "limit", 100.75, None),
        (-1, "stop", None, 98.25),
        (1, "limit", 98.55, None),
    ]
    assert ledger.cash == pytest.approx(10_000 - 10 * 100 + 10 * 1.0)


def test_a_dividend_under_a_cent_moves_no_order() -> None:
    small = CorporateActions({"XYZ": {MONDAY + 3 * DAY: Action(dividend=0.005)}})
    tested = backtest({"XYZ": dividend_table()}, DIVIDEND_PLAN, NO_COSTS, symbol_rules=RULES,
                      limits=NO_BREAKERS, actions=small)  # fmt: skip
    assert (3, 1, 5.0, 99.0) in [(f.bar, f.side, f.quantity, f.price) for f in tested.fills]


def _ledger(result):
    return result.venue.ledger


def _working(result):
    return result.venue.working


def _brackets(result):
    return result.venue.brackets


def _yahoo(path, closes: np.ndarray, splits: np.ndarray) -> None:
    """A Yahoo daily export (Date, OHLC, Adj Close, Volume, Dividends, Stock Splits)."""
    labels = xnys().labels
    days = pd.to_datetime(labels[labels >= ms_utc("2024-01-02")][: len(closes)], unit="ms")
    opens = np.r_[closes[0], closes[:-1]]
    opens = np.where(splits > 0, opens / np.where(splits > 0, splits, 1), opens)
    pd.DataFrame(
        {
            "Date": days.strftime("%Y-%m-%d"),
            "Open": opens.round(2),
            "High": (np.maximum(opens, closes) + 0.5).round(2),
            "Low": (np.minimum(opens, closes) - 0.5).round(2),
            "Close": closes.round(2),
            "Adj Close": closes.round(2),
            "Volume": 1_000_000,
            "Dividends": 0.0,
            "Stock Splits": splits,
        }
    ).to_csv(path, index=False)


def ms_utc(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 1_000_000)


@pytest.mark.slow
def test_cli_backtest_on_raw_prices_with_a_split_trades_as_on_continuous_prices(
    cli, tmp_path
) -> None:
    """rsi_reversion on a file whose prices halve at a 2:1 split decides exactly as on the same
    moves without the split, and its report names the split it applied."""
    n, at = 80, 40
    continuous = 100 + 8 * np.sin(np.arange(n) / 2.5)
    raw = np.where(np.arange(n) >= at, continuous / 2, continuous)
    splits = np.zeros(n)
    splits[at] = 2.0
    _yahoo(tmp_path / "raw.csv", raw, splits)
    _yahoo(tmp_path / "flat.csv", continuous, np.zeros(n))
    reports = {}
    for name in ("raw", "flat"):
        out = tmp_path / f"{name}.json"
        result = cli("agent-backtest", "--strategy", "rsi_reversion", "--period", "3",
                     "--data", str(tmp_path / f"{name}.csv"), "--symbol", "XYZ",
                     "--json", str(out))  # fmt: skip
        assert result.returncode == 0, result.stderr
        reports[name] = (json.loads(out.read_text()), result.stderr)
    (raw_report, raw_err), (flat_report, _) = reports["raw"], reports["flat"]
    assert "1 split(s) and 0 dividend(s) from the file applied" in raw_err
    assert raw_report["config"]["corporate_actions"]["splits"] == 1
    assert "corporate_actions" not in flat_report["config"]
    raw_fills = [(f["time"], f["side"]) for f in raw_report["fills"]]
    assert len(raw_fills) >= 4
    assert raw_fills == [(f["time"], f["side"]) for f in flat_report["fills"]]


@pytest.mark.slow
def test_buy_and_hold_follows_a_split_and_credits_a_dividend_as_cash(cli, tmp_path) -> None:
    """A 4:1 split read as a 75% fall made Buy & Hold -72%: one share bought at the first bar
    the strategy can trade becomes four at the split and takes $1 on each at the dividend."""
    n, split_at, dividend_at = 40, 20, 30
    continuous = 100.0 + np.arange(n)
    raw = np.where(np.arange(n) >= split_at, continuous / 4, continuous)
    splits = np.zeros(n)
    splits[split_at] = 4.0
    data = tmp_path / "raw.csv"
    _yahoo(data, raw, splits)
    frame = pd.read_csv(data)
    frame.loc[dividend_at, "Dividends"] = 1.0
    frame.to_csv(data, index=False)
    out = tmp_path / "raw.json"
    result = cli("agent-backtest", "--strategy", "sma_cross", "--fast", "2", "--slow", "3",
                 "--data", str(data), "--symbol", "XYZ", "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    first = 2  # sma_cross --slow 3 trades from its third bar
    worth = continuous[-1] + 4 * 1.0  # four shares at the last close and $4 of dividends
    held = json.loads(out.read_text())["metrics"]["Buy & Hold Return [%]"]
    assert held == pytest.approx((worth - continuous[first]) / continuous[first] * 100, rel=1e-6)


def sell_all(ctx):
    return order(ctx, SignalAction.SELL, quantity=10, tag="sell")


@pytest.mark.parametrize("paper", [False, True])
@pytest.mark.parametrize("sold", [True, False], ids=["closed", "open at the end"])
def test_a_dividend_received_while_a_trade_is_open_is_in_its_pnl(paper, sold) -> None:
    """10 shares bought at 100 and sold at the ex-date's 99 open lost $10 on price and took the
    $10 dividend: the trade made $0, as the cash did, not -$10 with $10 booked nowhere. A paper
    replay books the same trade."""
    plan = {("XYZ", 0): [lambda ctx: order(ctx, quantity=10)]}
    if sold:
        plan[("XYZ", 3)] = [sell_all]
    if paper:
        venue = replay(dividend_table(), plan, None, RULES, DIVIDEND)
        trades = venue.ledger.trades + venue.ledger.marked_trades({"XYZ": 99.0}, 4, 0)
    else:
        tested = backtest({"XYZ": dividend_table()}, plan, NO_COSTS, symbol_rules=RULES,
                          limits=NO_BREAKERS, actions=DIVIDEND)  # fmt: skip
        trades = tested.trades
        assert sum(t.pnl for t in trades) == pytest.approx(tested.equity[-1] - tested.equity[0])
        metrics = report_figures(tested)[0]
        assert metrics["Dividends [$]"] == pytest.approx(10.0)
    (trade,) = trades
    assert (trade.exit_price, trade.dividends) == (99.0, pytest.approx(10.0))
    assert trade.pnl == pytest.approx(0.0) and trade.return_pct == pytest.approx(0.0)


@pytest.mark.slow
def test_the_ea_reports_trades_add_up_to_its_equity_with_the_dividend(cli, tmp_path) -> None:
    """The trade held over the $0.19 ex-date took $9.31 on 49 shares: it was booked -4.95 and
    the trades summed to $44.33 while equity rose $53.64."""
    out = tmp_path / "ea.json"
    result = cli("agent-backtest", "--strategy", "rsi_reversion", "--period", "2",
                 "--data", str(EA), "--symbol", "EA", "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    equity = report["equity"]["equity"]
    assert sum(t["pnl"] for t in report["trades"]) == pytest.approx(equity[-1] - equity[0])
    (held,) = [t for t in report["trades"] if t["dividends"]]
    assert held["dividends"] == pytest.approx(49 * 0.19)
    assert held["pnl"] == pytest.approx(-4.945059814446162 + 49 * 0.19)
    assert report["metrics"]["Dividends [$]"] == pytest.approx(9.31)
    assert re.search(r"Dividends \[\$\] +│ +9\.31 │", result.stdout), result.stdout
