"""Hypothesis over any signal, portfolio, market and state: an approved order never breaks a
limit, the cash or the exchange filters, never grows; garbage is vetoed, never raised."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from market.sample import sample_rules
from risk import (
    Approved,
    ApprovedOrder,
    MarketView,
    OrderType,
    PortfolioView,
    PositionView,
    ReasonCode,
    RiskLimits,
    RiskState,
    Side,
    SignalAction,
    SignalSource,
    TradeSignal,
    TradingState,
    Vetoed,
    assess,
    client_order_id,
    decide,
    verify_approved,
)
from risk.protections import Lock
from risk.state import on_order, refresh

NOW = 1_761_782_400_000
RULES = sample_rules()
EXAMPLES = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GARBAGE = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, -1e308, 5e-324, 1e308]),
    st.floats(allow_nan=True, allow_infinity=True),
)
DIE = st.integers(0, 9)
D20 = st.integers(0, 19)
UNIT = st.floats(0.0, 1.0)
CONFIDENCE = st.one_of(st.just(1.0), st.floats(0.5, 1.0), UNIT)
PRICE_FACTORS = {  # where a sane price field sits, as a multiple of the last price
    "limit_price": st.one_of(st.floats(0.99, 1.01), st.floats(0.9, 1.1)),
    "stop_price": st.one_of(st.floats(0.99, 1.01), st.floats(0.9, 1.1)),
    "stop_loss": st.floats(0.9, 1.01),
    "take_profit": st.floats(0.995, 1.5),
}
OTHER_SYMBOLS = st.sampled_from([*sorted(RULES), "DOGEUSDT"])
NEAR_MARKET = st.floats(0.995, 1.005)
ACTIONS = st.sampled_from(
    [SignalAction.BUY] * 5
    + [SignalAction.SELL] * 2
    + [SignalAction.CLOSE] * 2
    + [SignalAction.HOLD]
)
ORDER_TYPES = st.sampled_from(
    [OrderType.MARKET] * 3 + [OrderType.LIMIT] * 2 + [OrderType.STOP, OrderType.STOP_LIMIT]
)
QUANTITY = st.one_of(st.floats(1e-4, 10.0), st.floats(1e-8, 1e6))
SIZE_PCT = st.one_of(st.floats(1e-4, 2.0), st.just(100.0))
DECISION_IDS = st.sampled_from(["dec-1", "ünïcødé", "x" * 80, *(f"d{i}" for i in range(16)), ""])
LOCKS = st.lists(
    st.builds(
        Lock,
        code=st.sampled_from([ReasonCode.KILL_SWITCH, ReasonCode.MAX_DRAWDOWN]),
        level=st.sampled_from([TradingState.REDUCING, TradingState.HALTED]),
        message=st.just("test lock"),
        since_ms=st.just(NOW - 1),
        until_ms=st.one_of(st.none(), st.integers(NOW - 10, NOW + 10)),
    ),
    min_size=1,
    max_size=2,
)


def _sane(price: float) -> float:
    return price if math.isfinite(price) and price > 0 else 100.0


def pick(
    draw: st.DrawFn, sane: st.SearchStrategy[float], *, none: int = 6, bad: int = 1
) -> float | None:
    """None `none` times in 20, garbage `bad` times in 20, else sane: mostly sane, so that the
    properties of approved orders are exercised, not just the vetoes."""
    roll = draw(D20)
    if roll < none:
        return None
    if roll < none + bad:
        return draw(GARBAGE)
    return draw(sane)


LAST_PRICE = st.floats(0.5, 200_000.0)
SPREAD = st.floats(0.0, 0.004)
ATR_FACTOR = st.floats(0.0, 0.2)
DATA_AGE = st.integers(-1_000, 130_000)
CASH = st.floats(0.0, 1e7)
HELD = st.floats(-1.0, 50.0)
OTHER_HELD = st.floats(0.0, 10.0)
AVG_PRICE = st.floats(1.0, 1e5)
EQUITY = st.floats(-1e6, 1e8)
POSITIVE_EQUITY = st.floats(1.0, 1e8)
PEAK = st.floats(0.0, 2e8)
SOURCES = st.sampled_from(SignalSource)
ORDER_COUNT = st.integers(0, 25)
GAP = st.integers(1, 400_000)
LAST_ORDER = st.integers(0, 100_000)
STREAK = st.integers(0, 5)
LAST_LOSS = st.one_of(st.none(), st.integers(NOW - 7_200_000, NOW))


def markets(draw: st.DrawFn, honest: bool) -> MarketView:
    symbol = draw(st.sampled_from(sorted(RULES)))
    last = pick(draw, LAST_PRICE, none=0, bad=0 if honest else 1) or 0.0
    sane = _sane(last)
    spread = draw(SPREAD)
    book = draw(st.booleans())
    atr_factor = pick(draw, ATR_FACTOR, bad=0 if honest else 2)
    return MarketView(
        symbol=symbol,
        last_price=last,
        data_time_ms=NOW - draw(DATA_AGE),
        atr=None if atr_factor is None else sane * atr_factor,
        best_bid=sane * (1 - spread) if book else None,
        best_ask=sane * (1 + spread) if book else None,
        rules=RULES[symbol],
    )


def portfolios(draw: st.DrawFn, market: MarketView, honest: bool) -> PortfolioView:
    price = _sane(market.last_price)
    bad = 0 if honest else 1
    cash = pick(draw, CASH, none=0, bad=bad) or 0.0
    held = pick(draw, HELD, none=8, bad=bad) or 0.0
    positions = {market.symbol: PositionView(quantity=held, avg_price=price)}
    other = "ETHUSDT" if market.symbol == "BTCUSDT" else "BTCUSDT"
    if draw(st.booleans()):
        positions[other] = PositionView(
            quantity=draw(OTHER_HELD), avg_price=pick(draw, AVG_PRICE, none=0, bad=bad) or 0.0
        )
    marked = (cash if math.isfinite(cash) else 0.0) + held * price
    equity = pick(draw, POSITIVE_EQUITY if honest else EQUITY, none=14, bad=bad)
    equity = marked if equity is None else equity
    peak = pick(draw, PEAK, none=18 if honest else 16, bad=bad)
    day_start = pick(draw, PEAK, none=18 if honest else 16, bad=bad)
    return PortfolioView(
        cash=cash,
        equity=equity,
        peak_equity=equity if peak is None else peak,
        day_start_equity=equity if day_start is None else day_start,
        positions=positions,
    )


def signals(draw: st.DrawFn, market: MarketView, honest: bool) -> TradeSignal:
    """Mostly sane proposals; unless honest, one in ten is garbage-prone in every number."""
    price = _sane(market.last_price)
    bad = 6 if not honest and draw(DIE) == 0 else 0
    order_type = draw(ORDER_TYPES)
    needed = {
        "limit_price": order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT),
        "stop_price": order_type in (OrderType.STOP, OrderType.STOP_LIMIT),
    }
    prices = {}
    for name, factor in PRICE_FACTORS.items():
        if honest and name in needed:
            factor = NEAR_MARKET
        value = pick(draw, factor, none=0 if needed.get(name) else 10, bad=bad)
        sane = value is not None and 0.5 <= value <= 1.5
        prices[name] = price * value if sane else value
    return TradeSignal(
        decision_id="honest" if honest else draw(DECISION_IDS),
        source=draw(SOURCES),
        symbol=market.symbol if honest or draw(DIE) else draw(OTHER_SYMBOLS),
        action=SignalAction.BUY if honest else draw(ACTIONS),
        order_type=order_type,
        quantity=pick(draw, QUANTITY, none=10, bad=bad),
        size_pct=pick(draw, SIZE_PCT, none=10, bad=bad),
        confidence=pick(draw, CONFIDENCE, none=0, bad=bad),
        created_ms=NOW,
        **prices,
    )


def states(draw: st.DrawFn, honest: bool) -> RiskState:
    count = draw(ORDER_COUNT) if draw(DIE) < 3 else 0  # evenly spaced: few draws
    gap, last_order = draw(GAP), draw(LAST_ORDER)
    return RiskState(
        locks=tuple(draw(LOCKS)) if not honest and draw(DIE) == 0 else (),
        losing_streak=draw(STREAK),
        last_loss_ms=draw(LAST_LOSS),
        recent_orders_ms=tuple(
            range(NOW - last_order - gap * (count - 1), NOW - last_order + 1, gap)
        ),
    )


ORDER_NOTIONAL = st.one_of(st.none(), st.floats(1.0, 1e6))
RISK_PCT = st.one_of(st.none(), st.floats(0.001, 0.1))
FEE = st.floats(0.0, 0.01)


def limit_sets(draw: st.DrawFn) -> RiskLimits:
    if draw(st.booleans()):
        return RiskLimits(fee_rate=draw(st.sampled_from([0.0, 0.001])))
    per_source = {
        "max_position_pct": draw(UNIT),
        "max_exposure_pct": draw(UNIT),
        "max_order_notional": draw(ORDER_NOTIONAL),
        "risk_per_trade_pct": draw(RISK_PCT),
        "scale_by_confidence": draw(st.booleans()),
        "require_stop_loss": draw(st.booleans()),
        "min_confidence": draw(UNIT),
    }
    return RiskLimits(fee_rate=draw(FEE), ai=per_source, strategy=per_source)


@st.composite
def cases(
    draw: st.DrawFn, honest: bool = False
) -> tuple[TradeSignal, PortfolioView, MarketView, RiskLimits, RiskState]:
    """Any signal on any account and market; `honest` keeps to sane buys on an ACTIVE account,
    so that most are approved and the sizing arithmetic is exercised thoroughly."""
    market = markets(draw, honest)
    return (
        signals(draw, market, honest),
        portfolios(draw, market, honest),
        market,
        limit_sets(draw),
        states(draw, honest),
    )


def _exact(value: float) -> Decimal:
    return Decimal(repr(value))


def _buy_cost(order: ApprovedOrder, last: float) -> Decimal:
    """The price a buy is budgeted at: its limit, else the market (or a stop above it)."""
    if order.limit_price is not None:
        return order.limit_price
    market = _exact(last)
    return market if order.stop_price is None else max(order.stop_price, market)


def assert_within_cash(order: ApprovedOrder, cost: Decimal, cash: float, fee_rate: float) -> None:
    """Exactly, in Decimal: an exchange rejects an order short by a single cent."""
    with localcontext() as ctx:
        ctx.prec = 200
        assert order.quantity * cost * (1 + _exact(fee_rate)) <= _exact(cash)


def _reference(order: ApprovedOrder, market: MarketView) -> Decimal:
    """The price the exchange filters are checked at."""
    if order.limit_price is not None:
        return order.limit_price
    if order.stop_price is not None:
        return order.stop_price
    return market.rules.floor_price(_exact(market.last_price))


@pytest.mark.slow
@EXAMPLES
@given(cases())
def test_an_approved_order_never_breaks_a_limit(case: tuple) -> None:
    check_within_limits(*case)


@pytest.mark.slow
@EXAMPLES
@given(cases(honest=True))
def test_an_approved_entry_never_breaks_a_limit(case: tuple) -> None:
    check_within_limits(*case)


@pytest.mark.slow
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_decide_judges_a_state_as_its_refresh_and_refreshes_it_once(case: tuple) -> None:
    """`decide` judges the state as given and refreshes it after, in one new state: the rules
    read only the locks in force and the order times inside each window, so the verdict is the
    refreshed state's, and the state returned is that refresh with an approved order counted.
    The states drawn hold expired locks and order times on both sides of the windows."""
    signal, portfolio, market, limits, state = case
    refreshed = refresh(state, NOW)
    verdict, after = decide(signal, portfolio, market, NOW, limits, state)
    assert verdict == assess(signal, portfolio, market, NOW, limits, refreshed)
    assert after == (on_order(refreshed, NOW) if isinstance(verdict, Approved) else refreshed)


def check_within_limits(
    signal: TradeSignal,
    portfolio: PortfolioView,
    market: MarketView,
    limits: RiskLimits,
    state: RiskState,
) -> None:
    verdict = assess(signal, portfolio, market, NOW, limits, state)
    event(
        verdict.reasons[0].code
        if isinstance(verdict, Vetoed)
        else f"approved reduce_only={verdict.order.reduce_only}"
    )
    assert verdict == assess(signal, portfolio, market, NOW, limits, state)  # deterministic
    if isinstance(verdict, Vetoed):
        assert verdict.reasons and all(isinstance(r.code, ReasonCode) for r in verdict.reasons)
        return
    assert isinstance(verdict, Approved)
    order = verify_approved(verdict.order)
    source = limits.for_source(signal.source)
    last = market.last_price
    held = portfolio.positions[market.symbol].quantity
    ref = _reference(order, market)
    assert signal.action is not SignalAction.HOLD
    assert order.symbol == signal.symbol == market.symbol
    assert order.client_order_id == client_order_id(signal.decision_id)
    assert market.rules.violations(order.quantity, ref) == []
    assert state.trading_state(NOW) is not TradingState.HALTED
    qty = float(order.quantity)
    if signal.quantity is not None and signal.action is not SignalAction.CLOSE:
        assert qty <= signal.quantity

    if order.reduce_only:  # an exit: never more than held, never a flip
        assert (order.side is Side.SELL) == (held > 0)
        assert order.quantity <= _exact(abs(held))
        if order.side is Side.BUY:  # covering a short spends cash too
            assert_within_cash(order, _buy_cost(order, last), portfolio.cash, limits.fee_rate)
        if signal.size_pct is not None and signal.action is not SignalAction.CLOSE:
            assert qty * float(ref) <= signal.size_pct * portfolio.equity * (1 + 1e-9)
        return

    # An entry: a buy on an ACTIVE account, within every limit.
    assert order.side is Side.BUY and held >= 0
    assert state.trading_state(NOW) is TradingState.ACTIVE
    assert signal.confidence >= source.min_confidence
    assert NOW - market.data_time_ms <= limits.max_data_age_ms
    cost = _buy_cost(order, last)
    equity = portfolio.equity
    notional = qty * float(cost)
    assert_within_cash(order, cost, portfolio.cash, limits.fee_rate)
    slack = 1e-9 * max(equity, 1.0)
    if signal.size_pct is not None:
        assert notional <= signal.size_pct * equity * (1 + 1e-9)
    assert notional + held * last <= source.max_position_pct * equity + slack
    others = sum(
        abs(p.quantity) * p.avg_price for s, p in portfolio.positions.items() if s != market.symbol
    )
    assert notional + held * last + others <= source.max_exposure_pct * equity + slack
    if source.max_order_notional is not None:
        assert notional <= source.max_order_notional * (1 + 1e-9)
    if source.require_stop_loss:
        assert order.stop_loss is not None and order.stop_loss < cost
    orders = state.recent_orders_ms
    assert sum(1 for t in orders if t > NOW - 60_000) < source.max_orders_per_minute
    assert sum(1 for t in orders if t > NOW - 3_600_000) < source.max_orders_per_hour


BAD_PRICE = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, -1e308])
BAD_CONFIDENCE = st.sampled_from([math.nan, math.inf, -math.inf, -0.1, 1.01, 1e308])
NUMERIC_FIELDS = st.sampled_from(["quantity", "size_pct", *PRICE_FACTORS, "confidence"])
ACTING = st.sampled_from([SignalAction.BUY, SignalAction.SELL, SignalAction.CLOSE])


@st.composite
def garbage_cases(
    draw: st.DrawFn,
) -> tuple[TradeSignal, PortfolioView, MarketView, RiskLimits, RiskState]:
    """A case whose signal carries at least one value no honest proposal could."""
    market = markets(draw, honest=False)
    fields = signals(draw, market, honest=False).model_dump()
    field = draw(NUMERIC_FIELDS)
    fields[field] = draw(BAD_CONFIDENCE if field == "confidence" else BAD_PRICE)
    if fields["action"] is SignalAction.HOLD:
        fields["action"] = draw(ACTING)
    signal = TradeSignal(**fields)
    return (
        signal,
        portfolios(draw, market, honest=False),
        market,
        limit_sets(draw),
        states(draw, honest=False),
    )


@pytest.mark.slow
@EXAMPLES
@given(garbage_cases())
def test_garbage_signals_are_vetoed_with_a_reason_never_an_exception(case: tuple) -> None:
    verdict = assess(case[0], case[1], case[2], NOW, case[3], case[4])
    assert isinstance(verdict, Vetoed)
    assert ReasonCode.INVALID_SIGNAL in [r.code for r in verdict.reasons]
