"""Tiny hand-made candle scenarios (freqtrade style): each pins the exit reason, the fill bars,
the fill prices and the PnL that docs/fills.md promises. Signals come at a bar's close, so an
order decided at bar t fills at bar t+1 at the earliest."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from pytest import approx
from script_strategy import NO_COSTS, backtest, candles, order

from backtest.config import BacktestConfig
from backtest.engine import BacktestResult
from backtest.report import build_report
from execution.fees import FeeSchedule, Liquidity
from execution.slippage import FixedBps, VolumeParticipation
from risk.models import OrderType, SignalAction

BUY, CLOSE = SignalAction.BUY, SignalAction.CLOSE
FLAT = (100.0, 100.5, 99.5, 100.0)


@dataclass
class Expect:
    reason: str
    entry_bar: int
    entry_price: float
    exit_bar: int
    exit_price: float
    pnl: float


@dataclass
class Scenario:
    rows: list[tuple[float, ...]]
    plan: dict
    trades: list[Expect]
    config: BacktestConfig = NO_COSTS
    check: dict = field(default_factory=dict)


def buy(**kw):
    return lambda ctx: order(ctx, BUY, **kw)


def close():
    return lambda ctx: order(ctx, CLOSE)


SCENARIOS: dict[str, Scenario] = {
    "signal entry and exit at the next opens": Scenario(
        rows=[FLAT, (101, 102, 100, 101), (102, 103, 101, 102), (103, 104, 102, 103), FLAT],
        plan={0: [buy(quantity=10)], 2: [close()]},
        trades=[Expect("signal", 1, 101, 3, 103, 20)],
    ),
    "stop-loss hit inside a bar fills at the stop": Scenario(
        rows=[FLAT, FLAT, (100, 100.5, 97, 99), (99, 99.5, 98.5, 99)],
        plan={0: [buy(quantity=10, stop_loss=98)]},
        trades=[Expect("stop_loss", 1, 100, 2, 98, -20)],
    ),
    "take-profit hit fills at the target": Scenario(
        rows=[FLAT, FLAT, (100, 103.5, 99.8, 103), FLAT],
        plan={0: [buy(quantity=10, take_profit=103)]},
        trades=[Expect("take_profit", 1, 100, 2, 103, 30)],
    ),
    "stop and target in one bar: the stop is assumed first and counted": Scenario(
        rows=[FLAT, FLAT, (100, 104, 97, 100), FLAT],
        plan={0: [buy(quantity=10, stop_loss=98, take_profit=103)]},
        trades=[Expect("stop_loss", 1, 100, 2, 98, -20)],
        check={"ambiguous": 1},
    ),
    "a gap through the stop fills at the open": Scenario(
        rows=[FLAT, FLAT, (95, 96, 94, 95), (95, 96, 94, 95)],
        plan={0: [buy(quantity=10, stop_loss=98)]},
        trades=[Expect("stop_loss", 1, 100, 2, 95, -50)],
    ),
    "a gap through the target fills at the (better) open": Scenario(
        rows=[FLAT, FLAT, (105, 106, 104, 105), FLAT],
        plan={0: [buy(quantity=10, take_profit=103)]},
        trades=[Expect("take_profit", 1, 100, 2, 105, 50)],
    ),
    "the stop can hit in the bar a market entry filled": Scenario(
        rows=[FLAT, (100, 100.4, 97.5, 98), FLAT],
        plan={0: [buy(quantity=10, stop_loss=98)]},
        trades=[Expect("stop_loss", 1, 100, 1, 98, -20)],
    ),
    # Trailing 5% below the highest high: the entry fills at 100, so the stop starts at 95.
    # Bar 1's high 100.5 raises it to 95.475 for bar 2; bar 2's high 110 to 104.5 for bar 3.
    "a trailing stop ratchets up on the highs and fires on a later bar's low": Scenario(
        rows=[FLAT, FLAT, (100, 110, 99, 109), (109, 109.5, 104, 105), FLAT],
        plan={0: [buy(quantity=10, trailing=0.05)]},
        trades=[Expect("trailing_stop", 1, 100, 3, 104.5, 45)],
    ),
    "a bar's low is judged against the stop its own high has not raised yet": Scenario(
        rows=[FLAT, FLAT, (100, 110, 103, 105), (105, 106, 104.6, 105), (105, 105.5, 104, 104.5)],
        plan={0: [buy(quantity=10, trailing=0.05)]},
        trades=[Expect("trailing_stop", 1, 100, 4, 104.5, 45)],
    ),
    "a gap through a trailing stop fills at the open": Scenario(
        rows=[FLAT, FLAT, (100, 110, 99, 109), (102, 103, 101, 102), FLAT],
        plan={0: [buy(quantity=10, trailing=0.05)]},
        trades=[Expect("trailing_stop", 1, 100, 3, 102, 20)],
    ),
    "a fixed stop above the trail fires as the stop-loss": Scenario(
        rows=[FLAT, FLAT, (100, 101, 96.5, 97), FLAT],
        plan={0: [buy(quantity=10, stop_loss=97, trailing=0.05)]},
        trades=[Expect("stop_loss", 1, 100, 2, 97, -30)],
    ),
    "a lower high never lowers the trail": Scenario(
        rows=[FLAT, FLAT, (100, 110, 99, 109), (109, 109, 105, 106), (106, 107, 104.4, 105)],
        plan={0: [buy(quantity=10, trailing=0.05)]},
        trades=[Expect("trailing_stop", 1, 100, 4, 104.5, 45)],
    ),
    "a limit never touched never fills and stays open": Scenario(
        rows=[FLAT, (100, 101, 96, 97), (97, 98, 96.5, 97), (97, 99, 96, 98)],
        plan={0: [buy(quantity=10, order_type=OrderType.LIMIT, limit=95.5)]},
        trades=[],
        check={"open_orders": 1, "fills": 0},
    ),
    "a limit only touched does not fill by default": Scenario(
        rows=[FLAT, (100, 100.5, 99, 100), (100, 100.5, 99.5, 100), FLAT],
        plan={0: [buy(quantity=10, order_type=OrderType.LIMIT, limit=99)]},
        trades=[],
        check={"open_orders": 1},
    ),
    "a limit touched fills when touch counts": Scenario(
        rows=[FLAT, (100, 100.5, 99, 100), FLAT, FLAT, (101, 101.5, 100.5, 101)],
        plan={0: [buy(quantity=10, order_type=OrderType.LIMIT, limit=99)], 3: [close()]},
        config=NO_COSTS.model_copy(update={"limit_on_touch": True}),
        trades=[Expect("signal", 1, 99, 4, 101, 20)],
    ),
    "a limit traded through fills at the limit and pays the maker fee": Scenario(
        rows=[FLAT, (100, 100.5, 98.5, 99.5), FLAT, FLAT],
        plan={0: [buy(quantity=10, order_type=OrderType.LIMIT, limit=99)], 2: [close()]},
        config=BacktestConfig(fees=FeeSchedule(maker=0.0002, taker=0.001)),
        trades=[Expect("signal", 1, 99, 3, 100, 10 - 0.198 - 1.0)],
        check={"fees": 0.198 + 1.0},
    ),
    "a limit marketable on arrival fills at the open as a taker": Scenario(
        rows=[FLAT, (100, 100.5, 99.5, 100), FLAT, FLAT],
        plan={0: [buy(quantity=10, order_type=OrderType.LIMIT, limit=101)], 2: [close()]},
        config=BacktestConfig(fees=FeeSchedule(maker=0.0, taker=0.001)),
        trades=[Expect("signal", 1, 100, 3, 100, -2.0)],
    ),
    "a buy stop triggers at its price": Scenario(
        rows=[FLAT, (100, 101.5, 99.8, 101.2), FLAT, FLAT],
        plan={0: [buy(quantity=10, order_type=OrderType.STOP, stop=101)], 2: [close()]},
        trades=[Expect("signal", 1, 101, 3, 100, -10)],
    ),
    "a buy stop gapped over fills at the open": Scenario(
        rows=[FLAT, (102, 102.5, 101.5, 102), FLAT, FLAT],
        plan={0: [buy(quantity=10, order_type=OrderType.STOP, stop=101)], 2: [close()]},
        trades=[Expect("signal", 1, 102, 3, 100, -20)],
    ),
    "a stop-limit gapped past its limit rests as a limit from the next bar": Scenario(
        rows=[FLAT, (102, 102.5, 101.6, 102), (101.8, 102, 101.2, 101.5), FLAT, FLAT],
        plan={
            0: [buy(quantity=10, order_type=OrderType.STOP_LIMIT, stop=101, limit=101.5)],
            3: [close()],
        },
        trades=[Expect("signal", 2, 101.5, 4, 100, -15)],
    ),
    "fees are charged on entry and exit": Scenario(
        rows=[FLAT, FLAT, (105, 111, 104, 110), (110, 111, 109, 110)],
        plan={0: [buy(quantity=10)], 2: [close()]},
        config=BacktestConfig(fees=FeeSchedule.from_bps(10)),
        trades=[Expect("signal", 1, 100, 3, 110, 100 - 1.0 - 1.1)],
        check={"fees": 2.1, "equity": 10_000 + 97.9},
    ),
    "slippage makes buys dearer and sells cheaper": Scenario(
        rows=[FLAT, FLAT, FLAT, FLAT],
        plan={0: [buy(quantity=10)], 2: [close()]},
        config=BacktestConfig(fees=FeeSchedule(maker=0, taker=0), slippage=FixedBps(bps=10)),
        trades=[Expect("signal", 1, 100.1, 3, 99.9, -2.0)],
    ),
    "a position open on the last bar is marked at its close, without an exit fee": Scenario(
        rows=[FLAT, FLAT, (102, 104, 101, 103), (103, 106, 102, 105)],
        plan={0: [buy(quantity=10)]},
        config=BacktestConfig(fees=FeeSchedule.from_bps(10)),
        trades=[Expect("end_of_data", 1, 100, 3, 105, 50 - 1.0)],
        check={"equity": 10_000 + 50 - 1.0},
    ),
    "a minNotional order is vetoed, counted and never resized": Scenario(
        rows=[FLAT, FLAT, FLAT],
        plan={0: [buy(quantity=0.04)]},
        trades=[],
        check={"vetoed": {"MIN_NOTIONAL": 1}, "fills": 0, "equity": 10_000},
    ),
    "a second resting buy is capped by the room the first one takes": Scenario(
        rows=[FLAT, (100, 100.5, 98.5, 99), (99, 99.5, 97.5, 98), FLAT, FLAT],
        plan={
            0: [
                buy(quantity=60, order_type=OrderType.LIMIT, limit=99, tag="a"),
                buy(quantity=60, order_type=OrderType.LIMIT, limit=98, tag="b"),
            ],
            3: [close()],
        },
        trades=[
            Expect("signal", 1, 99, 4, 100, 60),
            Expect("signal", 2, 98, 4, 100, 81.632),
        ],
        check={"adjusted": {"MAX_POSITION": 1, "STEP_SIZE": 1}},
    ),
    "volume participation fills a large order over several bars with impact": Scenario(
        rows=[
            (100, 100.5, 99.5, 100, 50),
            (100, 100.5, 99.5, 100, 50),
            (101, 101.5, 100.5, 101, 50),
            (101, 101.5, 100.5, 101, 50),
            (102, 102.5, 101.5, 102, 50),
            (103, 103.5, 102.5, 103, 50),
        ],
        plan={0: [buy(quantity=10)], 3: [close()]},
        config=BacktestConfig(
            fees=FeeSchedule(maker=0, taker=0),
            slippage=VolumeParticipation(max_participation=0.1, impact=0.1),
        ),
        trades=[
            Expect("signal", 1, 100.1, 4, 101.898, 5 * (101.898 - 100.1)),
            Expect("signal", 2, 101.101, 5, 102.897, 5 * (102.897 - 101.101)),
        ],
    ),
}


def _check(result: BacktestResult, scenario: Scenario) -> None:
    got = [
        Expect(t.exit_reason.value, t.entry_bar, t.entry_price, t.exit_bar, t.exit_price, t.pnl)
        for t in result.trades
    ]
    assert len(got) == len(scenario.trades), got
    for trade, want in zip(got, scenario.trades, strict=True):
        assert trade.reason == want.reason
        assert (trade.entry_bar, trade.exit_bar) == (want.entry_bar, want.exit_bar)
        assert trade.entry_price == approx(want.entry_price, rel=1e-12)
        assert trade.exit_price == approx(want.exit_price, rel=1e-12)
        assert trade.pnl == approx(want.pnl, rel=1e-9, abs=1e-9)
    check = scenario.check
    assert result.ambiguous_bars == check.get("ambiguous", 0)
    assert result.open_orders == check.get("open_orders", 0)
    if "fills" in check:
        assert len(result.fills) == check["fills"]
    if "fees" in check:
        assert result.fees == approx(check["fees"], rel=1e-12)
    if "equity" in check:
        assert result.equity[-1] == approx(check["equity"], rel=1e-12)
    if "vetoed" in check:
        assert dict(result.vetoes) == check["vetoed"]
    if "adjusted" in check:
        assert dict(result.adjustments) == check["adjusted"]
    rejected = {}
    for rejection in result.rejections:
        rejected[rejection.code] = rejected.get(rejection.code, 0) + 1
    assert rejected == check.get("rejected", {})


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_fill_scenario(name: str) -> None:
    scenario = SCENARIOS[name]
    _check(backtest(candles(scenario.rows), scenario.plan, scenario.config), scenario)


def test_two_symbols_share_one_cash_balance() -> None:
    """The second entry is sized by what the first left, and the gate's adjustment is counted."""
    btc = candles([FLAT, FLAT, FLAT, (110, 111, 109, 110)])
    eth = candles([(50, 51, 49, 50), (50, 51, 49, 50), (50, 51, 49, 50), (45, 46, 44, 45)])
    plan = {
        ("BTCUSDT", 0): [buy(size_pct=0.6)],
        ("ETHUSDT", 0): [buy(size_pct=0.6)],
        ("BTCUSDT", 2): [close()],
        ("ETHUSDT", 2): [close()],
    }
    result = backtest({"BTCUSDT": btc, "ETHUSDT": eth}, plan)
    by_symbol = {t.symbol: t for t in result.trades}
    assert (by_symbol["BTCUSDT"].size, by_symbol["ETHUSDT"].size) == (60, 80)
    assert by_symbol["BTCUSDT"].pnl == approx(600)
    assert by_symbol["ETHUSDT"].pnl == approx(-400)
    assert {t.exit_bar for t in result.trades} == {3}
    assert sum(result.adjustments.values()) == 1  # capped by exposure / cash, the gate's call
    assert result.equity[1] == approx(10_000)  # all cash spent, positions worth what they cost
    assert result.equity[-1] == approx(10_200)


def test_a_fee_callable_replaces_the_schedule() -> None:
    """E.g. a flat 1 USDT per fill, whatever the size or liquidity."""

    def flat_fee(quantity: float, price: float, liquidity: Liquidity) -> float:
        return 1.0

    rows = [FLAT, FLAT, (105, 106, 104, 105), (105, 106, 104, 105)]
    result = backtest(candles(rows), {0: [buy(quantity=10)], 2: [close()]}, fee_fn=flat_fee)
    (trade,) = result.trades
    assert (trade.exit_reason, trade.entry_bar, trade.exit_bar) == ("signal", 1, 3)
    assert (trade.entry_price, trade.exit_price) == (100, 105)
    assert trade.pnl == approx(50 - 2.0) and trade.fees == approx(2.0)
    assert build_report(result).config["fee_function"] == "flat_fee"
