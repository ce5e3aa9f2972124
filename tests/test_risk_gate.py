"""One scenario per limit: each pins the code the gate gives and the size it allows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from market.sample import sample_rules
from risk import (
    Approved,
    ApprovedOrder,
    MarketView,
    PortfolioView,
    PositionView,
    ReasonCode,
    RiskLimits,
    RiskState,
    Side,
    SignalSource,
    TradeSignal,
    UnapprovedOrderError,
    Verdict,
    Vetoed,
    assess,
    client_order_id,
    decide,
    kill,
    on_order,
    verify_approved,
)
from risk.protections import DAY_MS, Lock, TradingState

NOW = 1_761_782_400_000  # 2025-10-30 00:00 UTC
PRICE = 65_000.0
RULES = sample_rules()
STRATEGY, AI = SignalSource.STRATEGY, SignalSource.AI


def signal(action: str = "buy", source: SignalSource = STRATEGY, **fields: Any) -> TradeSignal:
    return TradeSignal(
        decision_id=fields.pop("decision_id", "dec-1"),
        source=source,
        symbol=fields.pop("symbol", "BTCUSDT"),
        action=action,
        created_ms=NOW,
        **fields,
    )


def market(**fields: Any) -> MarketView:
    symbol = fields.pop("symbol", "BTCUSDT")
    return MarketView(
        symbol=symbol,
        last_price=fields.pop("last_price", PRICE),
        data_time_ms=fields.pop("data_time_ms", NOW),
        atr=fields.pop("atr", 50.0),
        rules=fields.pop("rules", RULES[symbol]),
        **fields,
    )


def portfolio(
    cash: float = 10_000.0, positions: dict[str, tuple[float, float]] | None = None, **fields: Any
) -> PortfolioView:
    held = {s: PositionView(quantity=q, avg_price=p) for s, (q, p) in (positions or {}).items()}
    equity = fields.pop("equity", cash + sum(q * PRICE for q, _ in (positions or {}).values()))
    return PortfolioView(
        cash=cash,
        equity=equity,
        peak_equity=fields.pop("peak_equity", equity),
        day_start_equity=fields.pop("day_start_equity", equity),
        positions=held,
    )


def run(
    sig: TradeSignal,
    pf: PortfolioView | None = None,
    mk: MarketView | None = None,
    limits: RiskLimits | None = None,
    state: RiskState | None = None,
    now_ms: int = NOW,
) -> Verdict:
    return assess(
        sig, pf or portfolio(), mk or market(), now_ms, limits or RiskLimits(), state or RiskState()
    )


def approved(verdict: Verdict) -> ApprovedOrder:
    assert isinstance(verdict, Approved), verdict
    return verdict.order


def codes(verdict: Verdict) -> list[ReasonCode]:
    reasons = verdict.adjustments if isinstance(verdict, Approved) else verdict.reasons
    return [r.code for r in reasons]


def vetoed_with(verdict: Verdict, code: ReasonCode) -> None:
    assert isinstance(verdict, Vetoed), verdict
    assert code in codes(verdict), verdict.reasons


# --- sizing for a classic strategy -------------------------------------------------------


def test_strategy_asking_for_all_equity_gets_nearly_all_cash_with_zero_fees() -> None:
    order = approved(run(signal(size_pct=1.0), limits=RiskLimits(fee_rate=0.0)))
    spent = order.quantity * Decimal(repr(PRICE))
    assert Decimal("9999") < spent <= Decimal("10000")


def test_strategy_asking_for_all_equity_keeps_a_fee_buffer_by_default() -> None:
    verdict = run(signal(size_pct=1.0))
    spent = approved(verdict).quantity * Decimal(repr(PRICE)) * Decimal("1.001")
    assert Decimal("9998") < spent <= Decimal("10000")
    assert ReasonCode.INSUFFICIENT_CASH in codes(verdict)


def test_hundred_times_equity_is_clamped_to_the_cash() -> None:
    verdict = run(signal(size_pct=100.0), limits=RiskLimits(fee_rate=0.0))
    assert approved(verdict).quantity == Decimal("0.15384")
    assert codes(verdict) == [ReasonCode.MAX_POSITION, ReasonCode.STEP_SIZE]


def test_a_signal_without_size_is_sized_to_the_room_left() -> None:
    order = approved(run(signal(), limits=RiskLimits(fee_rate=0.0)))
    assert order.quantity == Decimal("0.15384")


def test_an_exact_quantity_is_kept_exactly() -> None:
    verdict = run(signal(quantity=0.1))
    assert approved(verdict).quantity == Decimal("0.1")
    assert codes(verdict) == []


# --- per-limit scenarios -----------------------------------------------------------------


def test_max_position_clamps_an_ai_entry_to_a_quarter_of_equity() -> None:
    verdict = run(signal(source=AI, quantity=1.0, stop_loss=64_000.0, confidence=1.0))
    order = approved(verdict)
    assert ReasonCode.MAX_POSITION in codes(verdict)
    assert order.quantity * Decimal(repr(PRICE)) <= Decimal("2500")
    assert order.quantity == Decimal("0.03846")


def test_max_position_vetoes_when_the_position_is_already_full() -> None:
    pf = portfolio(cash=7_000.0, positions={"BTCUSDT": (3_000.0 / PRICE, PRICE)})
    adding = RiskLimits(ai={"allow_pyramiding": True})
    verdict = run(signal(source=AI, quantity=0.01, stop_loss=60_000.0), pf, limits=adding)
    vetoed_with(verdict, ReasonCode.MAX_POSITION)


def test_max_exposure_counts_positions_in_other_symbols() -> None:
    pf = portfolio(cash=5_500.0, positions={"ETHUSDT": (1.0, 4_000.0)}, equity=10_000.0)
    verdict = run(signal(source=AI, quantity=1.0, stop_loss=64_000.0), pf)
    order = approved(verdict)
    assert ReasonCode.MAX_EXPOSURE in codes(verdict)
    assert order.quantity * Decimal(repr(PRICE)) <= Decimal("1000")


def test_max_order_notional_caps_a_large_ai_account() -> None:
    pf = portfolio(cash=1_000_000.0)
    verdict = run(signal(source=AI, quantity=5.0, stop_loss=55_000.0), pf)
    assert ReasonCode.MAX_ORDER_NOTIONAL in codes(verdict)
    assert approved(verdict).quantity * Decimal(repr(PRICE)) <= Decimal("10000")


def test_insufficient_cash_vetoes_an_entry_with_no_free_cash() -> None:
    vetoed_with(
        run(signal(quantity=0.1), portfolio(cash=0.0, equity=10_000.0)),
        ReasonCode.INSUFFICIENT_CASH,
    )


def test_risk_per_trade_sizes_from_the_stop_distance() -> None:
    limits = RiskLimits(ai={"max_position_pct": 1.0, "max_exposure_pct": 1.0})
    verdict = run(signal(source=AI, stop_loss=64_000.0), limits=limits)
    # 1% of 10,000 at risk over a 1,000 stop distance: 0.1 BTC.
    assert approved(verdict).quantity == Decimal("0.1")
    assert codes(verdict)[0] is ReasonCode.RISK_SIZED


def test_strategy_with_a_stop_is_risk_sized_and_without_one_is_not() -> None:
    with_stop = run(signal(size_pct=1.0, stop_loss=60_000.0))
    assert ReasonCode.RISK_SIZED in codes(with_stop)
    assert approved(with_stop).quantity == Decimal("0.04")  # 2% of 10,000 / 5,000
    assert ReasonCode.RISK_SIZED not in codes(run(signal(size_pct=1.0)))


def test_ai_without_a_stop_gets_an_atr_stop_stated_in_the_verdict() -> None:
    verdict = run(signal(source=AI))
    order = approved(verdict)
    assert order.stop_loss == Decimal("64900")  # 65,000 - 2 x ATR 50
    assert ReasonCode.ATR_STOP in codes(verdict)


def test_ai_without_a_stop_or_an_atr_is_vetoed() -> None:
    vetoed_with(run(signal(source=AI), mk=market(atr=None)), ReasonCode.NO_STOP_LOSS)


def test_strategy_needs_no_stop_and_gets_none() -> None:
    assert approved(run(signal(quantity=0.1), mk=market(atr=None))).stop_loss is None


def test_a_stop_above_a_buy_entry_is_vetoed() -> None:
    vetoed_with(run(signal(source=AI, stop_loss=66_000.0)), ReasonCode.BAD_STOP)


def test_take_profit_below_a_buy_entry_is_invalid() -> None:
    vetoed_with(run(signal(quantity=0.1, take_profit=60_000.0)), ReasonCode.INVALID_SIGNAL)


def test_low_confidence_ai_signal_is_vetoed() -> None:
    vetoed_with(run(signal(source=AI, confidence=0.5)), ReasonCode.LOW_CONFIDENCE)


def test_confidence_scales_an_ai_size_down() -> None:
    limits = RiskLimits(ai={"max_position_pct": 1.0, "max_exposure_pct": 1.0})
    verdict = run(signal(source=AI, stop_loss=64_000.0, confidence=0.8), limits=limits)
    assert approved(verdict).quantity == Decimal("0.08")
    assert ReasonCode.CONFIDENCE_SCALED in codes(verdict)


def test_stale_data_blocks_entries_but_not_exits() -> None:
    stale = market(data_time_ms=NOW - 121_000)
    vetoed_with(run(signal(quantity=0.1), mk=stale), ReasonCode.STALE_DATA)
    held = portfolio(positions={"BTCUSDT": (0.1, PRICE)})
    assert approved(run(signal("close"), held, stale)).quantity == Decimal("0.1")


def test_wide_spread_blocks_entries() -> None:
    wide = market(best_bid=64_800.0, best_ask=65_200.0)  # ~61.5 bps
    vetoed_with(run(signal(quantity=0.1), mk=wide), ReasonCode.WIDE_SPREAD)
    tight = market(best_bid=64_999.99, best_ask=65_000.0)
    approved(run(signal(quantity=0.1), mk=tight))


def test_crossed_book_blocks_entries() -> None:
    vetoed_with(
        run(signal(quantity=0.1), mk=market(best_bid=65_001.0, best_ask=65_000.0)),
        ReasonCode.INVALID_MARKET,
    )


def test_fat_finger_limit_price_is_vetoed_for_entries_and_exits() -> None:
    far = signal(
        order_type="limit", limit_price=PRICE * 1.03, quantity=0.1, source=AI, stop_loss=60_000.0
    )
    vetoed_with(run(far), ReasonCode.FAT_FINGER)
    held = portfolio(positions={"BTCUSDT": (0.1, PRICE)})
    dump = signal("sell", order_type="limit", limit_price=PRICE * 0.5)
    vetoed_with(run(dump, held), ReasonCode.FAT_FINGER)


def test_limit_prices_round_to_the_tick_in_the_traders_favour() -> None:
    buy = run(signal(order_type="limit", limit_price=64_999.999, quantity=0.1))
    assert approved(buy).limit_price == Decimal("64999.99")
    assert ReasonCode.TICK_SIZE in codes(buy)
    held = portfolio(positions={"BTCUSDT": (0.1, PRICE)})
    sell = run(signal("sell", order_type="limit", limit_price=65_000.001), held)
    assert approved(sell).limit_price == Decimal("65000.01")


def test_quantity_rounds_down_to_the_step() -> None:
    verdict = run(signal(quantity=0.123456789))
    assert approved(verdict).quantity == Decimal("0.12345")
    assert codes(verdict) == [ReasonCode.STEP_SIZE]


def test_min_notional_vetoes_a_dust_order() -> None:
    vetoed_with(run(signal(quantity=0.00007)), ReasonCode.MIN_NOTIONAL)  # 4.55 USDT < 5


def test_min_qty_vetoes_a_size_below_one_step() -> None:
    vetoed_with(run(signal(quantity=0.000001)), ReasonCode.MIN_QTY)


def test_exchange_max_qty_clamps() -> None:
    cheap = market(last_price=1.0, atr=0.01)
    pf = portfolio(cash=1e8)
    verdict = run(signal(quantity=20_000.0), pf, cheap)
    assert approved(verdict).quantity == Decimal("9000")
    assert ReasonCode.MAX_QTY in codes(verdict)


def test_rate_limits_per_minute_and_per_hour_block_entries_not_exits() -> None:
    sig = signal(source=AI, stop_loss=60_000.0)
    two_recent = RiskState(recent_orders_ms=(NOW - 50_000, NOW - 10_000))
    vetoed_with(run(sig, state=two_recent), ReasonCode.RATE_LIMIT)
    spread_out = RiskState(recent_orders_ms=tuple(NOW - 120_000 * (i + 1) for i in range(20))[::-1])
    vetoed_with(run(sig, state=spread_out), ReasonCode.RATE_LIMIT)
    approved(run(sig, state=RiskState(recent_orders_ms=(NOW - 61_000,))))
    held = portfolio(positions={"BTCUSDT": (0.1, PRICE)})
    approved(run(signal("close", source=AI), held, state=two_recent))


def test_an_unwinding_buy_passes_the_limits_that_hold_back_entries_and_says_so() -> None:
    """A lone arbitrage leg's close buys back what its partner sold: it takes risk off, so the
    rate limit and a REDUCING lock record it instead of vetoing it; an entry is still vetoed."""
    held = portfolio(positions={"BTCUSDT": (0.1, PRICE)})
    busy = RiskState(
        recent_orders_ms=tuple(NOW - 1_000 * i for i in range(30, 0, -1)),  # 30 a minute
        locks=(
            Lock(
                code=ReasonCode.SAFE_MODE, level=TradingState.REDUCING, message="safe", since_ms=NOW
            ),
        ),
    )
    entry = signal(quantity=0.01)
    vetoed_with(run(entry, held, state=busy), ReasonCode.RATE_LIMIT)
    unwind = entry.model_copy(update={"unwinds": True})
    verdict = run(unwind, held, state=busy)
    assert approved(verdict).quantity == Decimal("0.01")
    assert codes(verdict).count(ReasonCode.UNWIND) == 2  # the rate limit and safe mode
    halted = RiskState(
        locks=(
            Lock(code=ReasonCode.HALTED, level=TradingState.HALTED, message="stop", since_ms=NOW),
        )
    )
    vetoed_with(run(unwind, held, state=halted), ReasonCode.HALTED)


def test_decide_counts_approved_orders_for_the_rate_limit() -> None:
    sig = signal(source=AI, stop_loss=60_000.0)
    state = RiskState()
    for i in range(2):
        verdict, state = decide(sig, portfolio(), market(), NOW + i, RiskLimits(), state)
        approved(verdict)
    verdict, after = decide(sig, portfolio(), market(), NOW + 2, RiskLimits(), state)
    vetoed_with(verdict, ReasonCode.RATE_LIMIT)
    assert after == state
    assert state.recent_orders_ms == (NOW, NOW + 1)


def test_daily_loss_and_drawdown_in_the_portfolio_block_entries_even_without_state() -> None:
    down_today = portfolio(cash=8_900.0, equity=8_900.0, day_start_equity=10_000.0)
    vetoed_with(run(signal(quantity=0.01), down_today), ReasonCode.DAILY_LOSS)
    off_peak = portfolio(cash=7_000.0, equity=7_000.0, peak_equity=10_000.0)
    vetoed_with(run(signal(quantity=0.01), off_peak), ReasonCode.MAX_DRAWDOWN)


def test_cooldown_blocks_ai_entries_after_losses_but_not_strategy_or_exits() -> None:
    state = RiskState(losing_streak=3, last_loss_ms=NOW - 10 * 60_000)
    ai = signal(source=AI, stop_loss=60_000.0)
    vetoed_with(run(ai, state=state), ReasonCode.COOLDOWN)
    approved(
        run(ai, state=state, now_ms=NOW + 50 * 60_000, mk=market(data_time_ms=NOW + 50 * 60_000))
    )
    approved(run(signal(quantity=0.01), state=state))
    held = portfolio(positions={"BTCUSDT": (0.1, PRICE)})
    approved(run(signal("close", source=AI), held, state=state))


# --- trading states ----------------------------------------------------------------------


def test_halted_blocks_everything_including_exits() -> None:
    state = kill(RiskState(), "operator pressed stop", NOW)
    held = portfolio(positions={"BTCUSDT": (0.1, PRICE)})
    vetoed_with(run(signal(quantity=0.01), held, state=state), ReasonCode.KILL_SWITCH)
    vetoed_with(run(signal("close"), held, state=state), ReasonCode.KILL_SWITCH)


def test_halted_still_lets_a_protective_stop_close_the_position() -> None:
    """A stop set at entry fires through a halt, as a resting exchange stop would; nothing else
    marked protective gets through."""
    state = kill(RiskState(), "operator pressed stop", NOW)
    held = portfolio(positions={"BTCUSDT": (0.1, PRICE)})
    order = approved(run(signal("close", source=AI, protective=True), held, state=state))
    assert (order.side, order.quantity, order.reduce_only) == (Side.SELL, Decimal("0.1"), True)
    entry = signal(source=AI, quantity=0.01, stop_loss=60_000.0, protective=True)
    vetoed_with(run(entry, held, state=state), ReasonCode.KILL_SWITCH)
    vetoed_with(run(signal("sell", quantity=0.05, protective=True), held, state=state),
                ReasonCode.KILL_SWITCH)  # fmt: skip


def test_reducing_allows_only_exits() -> None:
    lock = Lock(
        code=ReasonCode.MAX_DRAWDOWN, level=TradingState.REDUCING, message="dd", since_ms=NOW
    )
    state = RiskState(locks=(lock,))
    held = portfolio(positions={"BTCUSDT": (0.1, PRICE)})
    vetoed_with(run(signal(quantity=0.01), held, state=state), ReasonCode.MAX_DRAWDOWN)
    order = approved(run(signal("sell", quantity=0.05), held, state=state))
    assert (order.side, order.quantity, order.reduce_only) == (Side.SELL, Decimal("0.05"), True)


def test_an_expired_lock_no_longer_blocks_even_before_refresh() -> None:
    lock = Lock(
        code=ReasonCode.DAILY_LOSS,
        level=TradingState.HALTED,
        message="loss",
        since_ms=NOW - DAY_MS,
        until_ms=NOW,
    )
    approved(run(signal(quantity=0.01), state=RiskState(locks=(lock,))))


# --- exits and shorts --------------------------------------------------------------------


def test_close_sells_the_whole_long_floored_to_the_step() -> None:
    held = portfolio(positions={"BTCUSDT": (0.123456789, PRICE)})
    order = approved(run(signal("close", source=AI, confidence=0.1), held))
    assert (order.side, order.quantity, order.reduce_only) == (Side.SELL, Decimal("0.12345"), True)


def test_selling_more_than_held_is_capped_at_the_position() -> None:
    held = portfolio(positions={"BTCUSDT": (0.1, PRICE)})
    verdict = run(signal("sell", quantity=5.0), held)
    assert approved(verdict).quantity == Decimal("0.1")
    assert ReasonCode.REDUCE_ONLY in codes(verdict)


def test_selling_without_a_position_would_be_a_short_and_is_vetoed() -> None:
    vetoed_with(run(signal("sell", quantity=0.1)), ReasonCode.SHORT_NOT_ALLOWED)


def test_closing_without_a_position_is_vetoed() -> None:
    vetoed_with(run(signal("close")), ReasonCode.NO_POSITION)


def test_a_dust_position_cannot_be_sold_below_min_notional() -> None:
    held = portfolio(positions={"BTCUSDT": (0.00005, PRICE)})
    vetoed_with(run(signal("close"), held), ReasonCode.MIN_NOTIONAL)


# --- garbage in --------------------------------------------------------------------------


def test_hold_is_a_veto_with_no_order() -> None:
    vetoed_with(run(signal("hold", quantity=float("nan"))), ReasonCode.HOLD)


@pytest.mark.parametrize(
    "fields",
    [
        {"quantity": float("nan")},
        {"quantity": -1.0},
        {"quantity": 0.0},
        {"size_pct": float("inf")},
        {"confidence": 1.5},
        {"confidence": float("nan")},
        {"stop_loss": -5.0},
        {"order_type": "limit"},
        {"order_type": "stop", "stop_price": float("-inf")},
        {"decision_id": " "},
    ],
)
def test_garbage_signals_are_invalid(fields: dict[str, Any]) -> None:
    vetoed_with(run(signal(**fields)), ReasonCode.INVALID_SIGNAL)


def test_unknown_symbol_invalid_market_and_invalid_portfolio() -> None:
    vetoed_with(run(signal(symbol="ETHUSDT", quantity=1.0)), ReasonCode.UNKNOWN_SYMBOL)
    vetoed_with(
        run(signal(quantity=0.1), mk=market(last_price=float("nan"))), ReasonCode.INVALID_MARKET
    )
    vetoed_with(
        run(signal(quantity=0.1), portfolio(equity=float("nan"))), ReasonCode.INVALID_PORTFOLIO
    )


# --- per-source limits -------------------------------------------------------------------


def test_defaults_differ_by_source_and_partial_overrides_keep_the_rest() -> None:
    limits = RiskLimits(strategy={"max_position_pct": 0.5})
    assert limits.for_source(STRATEGY).max_position_pct == 0.5
    assert limits.for_source(STRATEGY).require_stop_loss is False
    assert limits.for_source(AI).require_stop_loss is True
    assert limits.for_source(AI).min_confidence == 0.6
    assert RiskLimits.model_validate_json(limits.model_dump_json()) == limits


# --- the seal ----------------------------------------------------------------------------


def test_gate_made_orders_verify_and_carry_the_decision_client_id() -> None:
    order = approved(run(signal(quantity=0.1, decision_id="abc")))
    assert verify_approved(order) is order
    assert order.client_order_id == client_order_id("abc")


def test_hand_made_and_altered_orders_are_refused() -> None:
    order = approved(run(signal(quantity=0.1)))
    forged = ApprovedOrder(**{**order.model_dump(), "seal": "0" * 64})
    with pytest.raises(UnapprovedOrderError):
        verify_approved(forged)
    with pytest.raises(UnapprovedOrderError):
        verify_approved(order.model_copy(update={"quantity": Decimal("10")}))
    with pytest.raises(UnapprovedOrderError):
        verify_approved(order.model_dump())


def test_unvalidated_verdicts_equal_validated_ones_and_survive_a_round_trip() -> None:
    """The gate builds its verdicts without re-validation; they must be the very models
    validation would give, so records, reports and the seal see no difference."""
    for verdict in (run(signal(quantity=0.1)), run(signal(quantity=-1))):
        rebuilt = type(verdict).model_validate(verdict.model_dump())
        assert rebuilt == verdict
        assert rebuilt.model_dump_json() == verdict.model_dump_json()
    order = approved(run(signal(quantity=0.1)))
    assert verify_approved(ApprovedOrder.model_validate(order.model_dump())) == order


def test_the_gate_is_deterministic() -> None:
    sig = signal(source=AI, confidence=0.9)
    assert run(sig) == run(sig)


def test_on_order_feeds_the_gate_the_same_window() -> None:
    state = on_order(on_order(RiskState(), NOW - 30_000), NOW - 20_000)
    vetoed_with(run(signal(source=AI, stop_loss=60_000.0), state=state), ReasonCode.RATE_LIMIT)
