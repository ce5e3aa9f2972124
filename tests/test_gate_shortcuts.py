"""The gate's shortcuts give exactly what the long way gives: a signal is refused as garbage
exactly when a field breaks a rule, sizes and stops land on the same exchange grid line as in
exact decimals, every field of an order is under its seal, and limits or rules changed between
calls apply at once."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.sample import sample_rules
from risk import (
    Approved,
    MarketView,
    OrderType,
    PortfolioView,
    ReasonCode,
    RiskLimits,
    RiskState,
    SignalAction,
    SignalSource,
    TradeSignal,
    UnapprovedOrderError,
    Vetoed,
    assess,
    verify_approved,
)
from risk.sizing import Grid, ceil_float, ceil_to, exact, floor_float, floor_to

NOW = 1_761_782_400_000
PRICE = 65_000.0
RULES = sample_rules()["BTCUSDT"]
MARKET = MarketView(symbol="BTCUSDT", last_price=PRICE, data_time_ms=NOW, atr=50.0, rules=RULES)
CASH = PortfolioView(
    cash=10_000.0, equity=10_000.0, peak_equity=10_000.0, day_start_equity=10_000.0
)
GARBAGE = [math.nan, math.inf, -math.inf, -1.0, 0.0]

maybe_size = st.one_of(st.none(), st.sampled_from(GARBAGE), st.floats(0.001, 2.0))
maybe_price = st.one_of(st.none(), st.sampled_from(GARBAGE), st.floats(60_000.0, 70_000.0))
# above any entry here: a target below the entry is refused later, with the same code
maybe_target = st.one_of(st.none(), st.sampled_from(GARBAGE), st.floats(71_000.0, 80_000.0))
maybe_share = st.one_of(st.none(), st.sampled_from([*GARBAGE, 1.5]), st.floats(0.01, 1.0))


def _buy(**fields: Any) -> TradeSignal:
    return TradeSignal(
        source=SignalSource.STRATEGY,
        symbol="BTCUSDT",
        action=SignalAction.BUY,
        created_ms=NOW,
        **fields,
    )


def _broken(s: TradeSignal) -> bool:
    """The signal rules of docs/risk.md, written out independently of the gate."""

    def bad(value: float | None) -> bool:
        return value is not None and not (math.isfinite(value) and value > 0)

    return (
        not s.decision_id.strip()
        or any(bad(v) for v in (s.quantity, s.size_pct, s.trailing_stop_pct, s.trailing_stop_atr))
        or any(bad(v) for v in (s.limit_price, s.stop_price, s.stop_loss, s.take_profit))
        or not (0.0 <= s.confidence <= 1.0)
        or (s.agreement is not None and not (0.0 < s.agreement <= 1.0))
        or (s.trailing_stop_pct is not None and s.trailing_stop_atr is not None)
        or (s.order_type in ("limit", "stop_limit") and s.limit_price is None)
        or (s.order_type in ("stop", "stop_limit") and s.stop_price is None)
    )


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(
    decision_id=st.sampled_from(["d-1", " ", ""]),
    order_type=st.sampled_from(list(OrderType)),
    quantity=maybe_size,
    size_pct=maybe_size,
    trailing_stop_pct=maybe_share,
    trailing_stop_atr=maybe_size,
    limit_price=maybe_price,
    stop_price=maybe_price,
    stop_loss=maybe_price,
    take_profit=maybe_target,
    confidence=st.sampled_from([0.0, 0.7, 1.0, 1.5, -0.1, math.nan]),
    agreement=maybe_share,
)
def test_a_signal_is_refused_as_invalid_exactly_when_a_field_breaks_a_rule(**fields: Any) -> None:
    sig = _buy(**fields)
    verdict = assess(sig, CASH, MARKET, NOW, RiskLimits(), RiskState())
    invalid = isinstance(verdict, Vetoed) and verdict.reasons[0].code is ReasonCode.INVALID_SIGNAL
    assert invalid == _broken(sig)


steps = st.sampled_from(
    [Decimal(s) for s in ("0.01000000", "0.00001000", "0.1", "1", "0.5", "0.25", "0.00000001")]
)


@st.composite
def near_grid(draw: st.DrawFn) -> tuple[float, Decimal]:
    """A value on a grid line, a float step either side of one, or anywhere between."""
    step = draw(steps)
    line = float(Decimal(draw(st.integers(0, 10**9))) * step)
    value = draw(
        st.one_of(
            st.just(line),
            st.just(math.nextafter(line, math.inf)),
            st.just(math.nextafter(line, -math.inf)),
            st.floats(0.0, 1e7, allow_nan=False),
            st.sampled_from([0.1, 0.3, 65_000.0, 64_999.99, 5e-324, 1e300]),
        )
    )
    return value, step


@pytest.mark.slow
@settings(max_examples=3000, deadline=None)
@given(near_grid())
def test_rounding_to_the_grid_in_float_lands_on_the_exact_decimal_line(
    case: tuple[float, Decimal],
) -> None:
    value, step = case
    want = floor_to(exact(value), step)
    got, moved, got_f = floor_float(value, Grid(step))
    assert (str(got), moved, got_f) == (str(want), want != exact(value), float(want))
    ceiled, raised, ceiled_f = ceil_float(value, Grid(step))
    want = ceil_to(exact(value), step)
    assert (str(ceiled), raised, ceiled_f) == (str(want), want != exact(value), float(want))


def _approved_order() -> Any:
    sig = _buy(
        decision_id="seal-1",
        order_type=OrderType.LIMIT,
        quantity=0.01,
        limit_price=64_990.0,
        stop_loss=63_000.0,
        take_profit=67_000.0,
    )
    verdict = assess(sig, CASH, MARKET, NOW, RiskLimits(), RiskState())
    assert isinstance(verdict, Approved)
    return verdict.order


ALTERED = {
    "client_order_id": "agt-0000",
    "decision_id": "seal-2",
    "symbol": "ETHUSDT",
    "side": "sell",
    "order_type": "market",
    "quantity": Decimal("0.02"),
    "limit_price": Decimal("64990.01"),
    "stop_price": Decimal("1"),
    "stop_loss": Decimal("62000"),
    "take_profit": None,
    "trailing_stop_pct": Decimal("0.01"),
    "reduce_only": True,
    "source": "ai",
    "created_ms": NOW + 1,
}


@pytest.mark.parametrize("field", sorted(ALTERED))
def test_an_order_altered_in_any_field_is_refused_by_executors(field: str) -> None:
    order = _approved_order()
    assert verify_approved(order) is order
    assert set(ALTERED) == set(type(order).model_fields) - {"seal"}
    with pytest.raises(UnapprovedOrderError):
        verify_approved(order.model_copy(update={field: ALTERED[field]}))


@pytest.mark.parametrize("field", sorted(ALTERED))
def test_an_order_changed_in_place_before_its_first_check_is_refused(field: str) -> None:
    """The first check of a freshly sealed order skips the digest only for the very objects
    sealed: a field swapped in place before it is still refused."""
    order = _approved_order()
    object.__setattr__(order, field, ALTERED[field])
    with pytest.raises(UnapprovedOrderError):
        verify_approved(order)


def test_limits_and_rules_changed_between_signals_apply_at_once() -> None:
    sig = _buy(decision_id="lim-1", size_pct=1.0)
    loose, tight = RiskLimits(), RiskLimits(strategy={"max_position_pct": 0.1})
    capped = MARKET.model_copy(
        update={"rules": RULES.model_copy(update={"max_qty": Decimal("0.01")})}
    )

    def quantity(limits: RiskLimits, market: MarketView = MARKET) -> Decimal:
        verdict = assess(sig, CASH, market, NOW, limits, RiskState())
        assert isinstance(verdict, Approved)
        return verdict.order.quantity

    first = quantity(loose)
    assert quantity(tight) < first
    assert quantity(loose) == first
    assert quantity(loose, capped) == Decimal("0.01")
    assert quantity(loose) == first
