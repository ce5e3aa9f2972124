"""What the engine's speed paths must not change: a backtest leaves Python's cyclic collector as
it found it (even when the strategy raises), and the views the runner builds without
re-validation are the very models pydantic would have built from the same values."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from script_strategy import backtest, candles, order

from backtest.data import to_bar_arrays
from execution.fees import Liquidity
from execution.ledger import Ledger
from execution.orders import ExitReason, Fill, Pending
from market.sample import load_sample, sample_rules
from risk.models import MarketView, PortfolioView
from risk.state import RiskState
from runtime.market import Market
from runtime.portfolio import portfolio_view

BARS = candles([(100, 101, 99, 100)] * 6)


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_backtest_leaves_the_collector_running() -> None:
    result = backtest(BARS, {1: [order]})
    assert len(result.fills) == 1
    assert gc.isenabled()


def test_a_backtest_leaves_a_paused_collector_paused(collector_off) -> None:
    backtest(BARS, {1: [order]})
    assert not gc.isenabled()


def test_a_strategy_that_raises_still_leaves_the_collector_running() -> None:
    def broken(ctx):
        raise RuntimeError("the strategy broke")

    with pytest.raises(RuntimeError, match="the strategy broke"):
        backtest(BARS, {1: [broken]})
    assert gc.isenabled()


finite = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)


@given(
    cash=finite,
    bought=finite,
    price=finite,
    peak=st.none() | finite,
    waiting=st.lists(st.tuples(st.sampled_from([1, -1]), finite), max_size=3),
)
def test_the_runners_portfolio_view_is_the_validated_model(
    cash: float, bought: float, price: float, peak: float | None, waiting: list
) -> None:
    ledger = Ledger(cash + bought * price)
    ledger.apply(
        Fill("o1", "BTCUSDT", 1, bought, price, 0.0, Liquidity.TAKER, 0, 0, ExitReason.SIGNAL)
    )
    pending = [Pending("BTCUSDT", side, quantity, None) for side, quantity in waiting]
    view = portfolio_view(
        ledger, {"BTCUSDT": price}, RiskState(peak_equity=peak), pending, fee_rate=0.001
    )
    assert view == PortfolioView.model_validate(view.model_dump())
    assert (
        view.model_dump_json() == PortfolioView.model_validate(view.model_dump()).model_dump_json()
    )


def test_the_runners_market_view_is_the_validated_model() -> None:
    bars, _ = to_bar_arrays({"BTCUSDT": load_sample("BTCUSDT")})
    market = Market(bars, sample_rules())
    for index in (0, 13, 14, 500, len(bars) - 1):  # before, at and after the ATR's warm-up
        view = market.view("BTCUSDT", index)
        validated = MarketView.model_validate(dict(view))
        assert view == validated
        assert view.model_dump_json() == validated.model_dump_json()
