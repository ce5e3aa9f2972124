"""Trailing stops end to end: the gate validates and seals them, the one fill model ratchets
them on the highs and never lowers them, and a paper account keeps the level over a restart."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from script_strategy import MINUTE, T0, backtest, candles, order, rules
from test_risk_gate import AI, approved, codes, market, portfolio, run, signal, vetoed_with

from execution.fills import trail_levels
from execution.paper import GrowingFeed, PaperExecutor
from execution.slippage import FixedBps
from market.models import Candle
from risk import ReasonCode, RiskLimits, TradeSignal
from risk.gate import decide
from risk.state import RiskState

# --- the gate -------------------------------------------------------------------------------


def test_a_trailing_stop_is_sealed_into_the_approved_order() -> None:
    order = approved(run(signal(quantity=0.1, trailing_stop_pct=0.02)))
    assert order.trailing_stop_pct == Decimal("0.02")


def test_an_atr_multiple_becomes_a_fraction_of_the_entry_stated_in_the_verdict() -> None:
    verdict = run(signal(quantity=0.1, trailing_stop_atr=3.0), mk=market(atr=65.0))
    assert approved(verdict).trailing_stop_pct == Decimal("0.003")  # 3 x 65 / 65,000
    assert ReasonCode.TRAILING_STOP in codes(verdict)


def test_the_sources_default_applies_to_an_entry_without_one() -> None:
    limits = RiskLimits(strategy={"trailing_stop_pct": 0.01})
    verdict = run(signal(quantity=0.1), limits=limits)
    assert approved(verdict).trailing_stop_pct == Decimal("0.01")
    assert ReasonCode.TRAILING_STOP in codes(verdict)
    own = approved(run(signal(quantity=0.1, trailing_stop_pct=0.03), limits=limits))
    assert own.trailing_stop_pct == Decimal("0.03")


def test_a_trailing_stop_stands_in_for_the_ais_stop_and_sizes_its_risk() -> None:
    limits = RiskLimits(ai={"max_position_pct": 1.0, "max_exposure_pct": 1.0})
    verdict = run(signal(source=AI, trailing_stop_pct=0.02), limits=limits)
    order = approved(verdict)
    assert order.stop_loss is None  # no ATR stop made up beside it
    assert ReasonCode.ATR_STOP not in codes(verdict)
    # 1% of 10,000 at risk over a 2% (1,300) distance: 0.0769 BTC, floored to the step.
    assert order.quantity == Decimal("0.07692")
    assert ReasonCode.RISK_SIZED in codes(verdict)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"trailing_stop_pct": float("nan")}, ReasonCode.INVALID_SIGNAL),
        ({"trailing_stop_pct": -0.01}, ReasonCode.INVALID_SIGNAL),
        ({"trailing_stop_atr": 0.0}, ReasonCode.INVALID_SIGNAL),
        ({"trailing_stop_pct": 0.01, "trailing_stop_atr": 2.0}, ReasonCode.INVALID_SIGNAL),
        ({"trailing_stop_pct": 1.0}, ReasonCode.TRAILING_STOP),
        ({"trailing_stop_pct": 1e-9}, ReasonCode.TRAILING_STOP),  # under one 0.01 tick
    ],
)
def test_bad_trailing_stops_are_vetoed_with_their_code(fields: dict, code: ReasonCode) -> None:
    vetoed_with(run(signal(quantity=0.1, **fields)), code)


def test_an_atr_trailing_stop_without_an_atr_is_vetoed() -> None:
    verdict = run(signal(quantity=0.1, trailing_stop_atr=2.0), mk=market(atr=None))
    vetoed_with(verdict, ReasonCode.TRAILING_STOP)


# --- the fill model -------------------------------------------------------------------------


highs = st.lists(st.floats(1.0, 1e6, allow_nan=False), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(highs, st.floats(0.0001, 0.5), st.floats(1.0, 1e6))
def test_a_longs_trailing_stop_never_moves_down(path: list[float], pct: float, start: float):
    levels = trail_levels(start, pct, np.array(path))
    assert levels[0] >= start
    assert np.all(np.diff(levels) >= 0)


@settings(max_examples=300, deadline=None)
@given(highs, st.floats(0.0001, 0.5), st.floats(1.0, 1e6), st.integers(0, 59))
def test_bar_by_bar_and_over_a_span_give_the_same_level(path, pct, start, cut) -> None:
    """What lets the fast backtest fold quiet bars and a paper account step every bar."""
    highs = np.array(path)
    level = start
    for high in highs[: cut + 1]:
        level = float(trail_levels(level, pct, np.array([high]))[-1])
    assert level == trail_levels(start, pct, highs)[min(cut, len(highs) - 1)]


bars = st.lists(
    st.tuples(st.floats(-0.03, 0.03), st.floats(0, 0.03), st.floats(0, 0.03)),
    min_size=3,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(bars, st.floats(0.005, 0.2))
def test_the_venue_fires_the_first_time_a_low_crosses_the_stop_in_force(moves, pct) -> None:
    """Random walks through the runner and the simulator: the exit comes at the first bar whose
    low reaches the stop it opened with, at that stop or at a lower open (a gap)."""
    rows, price = [(100.0, 100.5, 99.5, 100.0)], 100.0
    for drift, up, down in moves:
        open_ = price
        price = max(1.0, open_ * (1 + drift))
        rows.append((open_, max(open_, price) * (1 + up), min(open_, price) * (1 - down), price))
    result = backtest(candles(rows), {0: [lambda ctx: order(ctx, quantity=10, trailing=pct)]})
    (trade,) = result.trades
    o, h, lo = (np.array([r[i] for r in rows]) for i in range(3))
    entry = trade.entry_bar
    in_force = np.concatenate(
        (
            [trade.entry_price * (1 - pct)],
            trail_levels(trade.entry_price * (1 - pct), pct, h[entry:]),
        )
    )[: len(rows) - entry]
    crossed = np.flatnonzero(lo[entry:] <= in_force)
    if trade.exit_reason == "trailing_stop":
        bar = entry + int(crossed[0])
        assert trade.exit_bar == bar
        assert trade.exit_price == min(o[bar], in_force[bar - entry])
    else:
        assert trade.exit_reason == "end_of_data" and not len(crossed)


# --- paper: the level survives a restart ---------------------------------------------------


ROWS = [
    (100, 100.5, 99.5, 100),
    (100, 100.5, 99.5, 100),
    (100, 110, 99, 109),  # raises the 5% trail to 104.5
    (109, 109.5, 105, 108),  # the process stops after this bar
    (108, 108.5, 104, 105),  # a restarted process must still know 104.5
    (105, 105.5, 104.5, 105),
]


def _candle(row: tuple[float, ...], index: int) -> Candle:
    open_time = T0 + index * MINUTE
    o, h, lo, c = row
    return Candle(
        open_time=open_time,
        close_time=open_time + MINUTE - 1,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=1_000.0,
    )


def _paper() -> PaperExecutor:
    feed = GrowingFeed(["BTCUSDT"])
    return PaperExecutor({"BTCUSDT": rules()}, feed, cash=10_000, slippage=FixedBps(bps=0))


def _step(paper: PaperExecutor, index: int, row: tuple[float, ...]) -> int:
    at = paper.feed.append(T0 + index * MINUTE, T0 + (index + 1) * MINUTE - 1,
                           {"BTCUSDT": _candle(row, index)})  # fmt: skip
    paper.on_bar(at)
    return at


def _buy(paper: PaperExecutor) -> None:
    """10 at bar 1's open with a 5% trailing stop, through the gate at bar 0's close."""
    now = T0 + MINUTE - 1
    entry: TradeSignal = signal(quantity=10, trailing_stop_pct=0.05).model_copy(
        update={"created_ms": now}
    )
    view = market(last_price=100.0, data_time_ms=now, rules=rules())
    verdict, _ = decide(entry, portfolio(), view, now, RiskLimits(), RiskState())
    paper.execute(approved(verdict))


def test_a_paper_restart_keeps_the_trailing_level() -> None:
    straight = _paper()
    _step(straight, 0, ROWS[0])
    _buy(straight)
    for i, row in enumerate(ROWS[1:], start=1):
        _step(straight, i, row)

    first = _paper()
    _step(first, 0, ROWS[0])
    _buy(first)
    for i in range(1, 4):
        _step(first, i, ROWS[i])
    _, fills, checkpoint = first.changes({})
    second = _paper()
    second.restore(checkpoint, fills, list(first.orders.values()))
    for i in range(4, len(ROWS)):
        _step(second, i, ROWS[i])

    exits = [f for f in straight.sim.fills if f.reason.value == "trailing_stop"]
    assert [(f.price, f.time_ms) for f in exits] == [(104.5, T0 + 4 * MINUTE)]
    resumed = [f for f in second.sim.fills if f.reason.value == "trailing_stop"]
    assert [(f.price, f.time_ms) for f in resumed] == [(f.price, f.time_ms) for f in exits]
    assert second.ledger.cash == straight.ledger.cash
