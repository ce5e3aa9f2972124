"""What the engine's speed paths must not change: a backtest puts Python's cyclic collector back
as it found it (even when the strategy raises) and frees the cycles made during the run, the
views the runner builds without re-validation are the very models pydantic would have built
from the same values, and records with a written-out __init__ take their fields as declared."""

from __future__ import annotations

import ast
import gc
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from script_strategy import backtest, candles, order

from backtest.data import to_bar_arrays
from execution import ledger, orders
from execution.fees import Liquidity
from execution.ledger import Ledger
from execution.orders import ExitReason, Fill, Pending, snap
from execution.rules import rule_breaches, within_notional
from market.sample import load_sample, sample_rules
from risk.gate import filters_of
from risk.models import MarketView, PortfolioView, ReasonCode, SignalAction
from risk.sizing import exact
from risk.state import RiskState
from risk.views import market_facts, portfolio_facts
from runtime.market import Market
from runtime.portfolio import account_facts

ROOT = Path(__file__).resolve().parents[1]
BARS = candles([(100, 101, 99, 100)] * 6)


@pytest.fixture
def own_thresholds() -> Iterator[tuple[int, int, int]]:
    found = gc.get_threshold()
    gc.set_threshold(1_234, 5, 6)
    try:
        yield gc.get_threshold()
    finally:
        gc.set_threshold(*found)


def test_a_backtest_puts_the_collector_back_as_it_found_it(own_thresholds) -> None:
    result = backtest(BARS, {1: [order]})
    assert len(result.fills) == 1
    assert gc.isenabled() and gc.get_threshold() == own_thresholds


def test_a_strategy_that_raises_still_puts_the_collector_back(own_thresholds) -> None:
    def broken(ctx):
        raise RuntimeError("the strategy broke")

    with pytest.raises(RuntimeError, match="the strategy broke"):
        backtest(BARS, {1: [broken]})
    assert gc.isenabled() and gc.get_threshold() == own_thresholds


def test_cycles_made_during_a_long_run_are_freed_during_it() -> None:
    """An agent's model-call threads make cycles while the run goes on: they must not pile up
    until the run ends, as they would with the collector off."""
    freed: list[int] = []

    class Node:
        def __init__(self, n: int) -> None:
            self.me, self.n = self, n

        def __del__(self) -> None:
            freed.append(self.n)

    during: list[int] = []

    def cyclic(ctx):
        for n in range(300_000):  # well past the relaxed threshold
            Node(n)
        return order(ctx)

    def count(ctx):
        during.append(len(freed))
        return order(ctx, SignalAction.SELL)

    backtest(BARS, {1: [cyclic], 2: [count]})
    assert during[0] > 100_000  # collected inside the run, not only after it


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
    facts = account_facts(
        ledger, {"BTCUSDT": price}, RiskState(peak_equity=peak), pending, fee_rate=0.001
    )
    view = facts.view()
    assert view == PortfolioView.model_validate(view.model_dump())
    assert portfolio_facts(view).view() == view  # the gate's facts and the view, both ways
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
        assert market_facts(view).view() == view
        assert view.model_dump_json() == validated.model_dump_json()


@pytest.mark.parametrize(
    ("module", "record"),
    [
        (orders, "Fill"),
        (orders, "WorkingOrder"),
        (orders, "Bracket"),
        (ledger, "Lot"),
        (ledger, "TradeRecord"),
    ],
)
def test_a_written_out_init_takes_the_dataclass_fields_in_order(module, record: str) -> None:
    """The simulator's and ledger's records write their __init__ out (compiled, it is five
    times faster than the one dataclasses generates): it must take exactly the fields, in
    order, with their defaults, so positional and keyword calls build the same record. Read
    from the source, as a compiled class shows no signature."""
    source = ast.parse((ROOT / Path(*module.__name__.split("."))).with_suffix(".py").read_text())
    body = next(n for n in source.body if isinstance(n, ast.ClassDef) and n.name == record).body
    fields = [(f.target.id, f.value) for f in body if isinstance(f, ast.AnnAssign)]
    init = next(f for f in body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    names = [a.arg for a in init.args.args[1:]]
    defaults = [None] * (len(names) - len(init.args.defaults)) + init.args.defaults
    assert names == [name for name, _ in fields]
    assert [ast.dump(d) if d else None for d in defaults] == [
        ast.dump(v) if v else None for _, v in fields
    ]
    assigned = [s.targets[0].attr for s in init.body if isinstance(s, ast.Assign)]
    assert assigned == names


on_a_grid = st.builds(
    lambda k, places: k / 10**places,
    st.integers(min_value=-(10**12), max_value=10**12),
    st.integers(min_value=0, max_value=12),
)
quantities = st.floats() | on_a_grid | st.builds(lambda a, b: a + b, on_a_grid, on_a_grid)


@given(quantities)
def test_snap_is_round_to_ten_places_bit_for_bit(quantity: float) -> None:
    """Its shortcut returns the quantity itself only where round(x, 10) would: any float (NaN,
    infinities, subnormals, -0.0), grid quantities and their dusty sums."""
    expected = struct.pack("<d", round(quantity, 10))
    assert struct.pack("<d", snap(quantity)) == expected


@given(
    steps=st.integers(min_value=1, max_value=10**9),
    near=st.sampled_from([5.0, 9_000_000.0]),
    off=st.floats(min_value=-1e-6, max_value=1e-6) | st.floats(min_value=-0.5, max_value=2.0),
)
def test_a_notional_the_venue_clears_by_its_floats_breaks_no_notional_filter(
    steps: int, near: float, off: float
) -> None:
    """The venue checks a market order's notional at the open without the open's exact decimal
    where the float notional is far inside minNotional and maxNotional: there the exact check
    must find no notional breach, however near a filter (5 and 9M for BTCUSDT) the order is."""
    rules = sample_rules()["BTCUSDT"]
    quantity = steps * rules.step_size
    price = near * (1 + off) / float(quantity)
    if within_notional(filters_of(rules), float(quantity), price):
        codes = {code for code, _ in rule_breaches(rules, quantity, exact(price))}
        assert not codes & {ReasonCode.MIN_NOTIONAL, ReasonCode.MAX_ORDER_NOTIONAL}
