"""Every trading-state transition, and persistence: a halt survives a restart of the store."""

from __future__ import annotations

import math
from decimal import Decimal

from market.sample import sample_rules
from risk import (
    Approved,
    MarketView,
    PortfolioView,
    ReasonCode,
    RiskLimits,
    RiskState,
    SignalSource,
    SourceLimits,
    TradeSignal,
    TradingState,
    Vetoed,
    assess,
    clear_kill,
    decide,
    kill,
    on_equity,
    on_llm_failure,
    on_llm_success,
    on_order,
    on_trade_closed,
    refresh,
    reset_drawdown,
)
from risk.protections import DAY_MS
from risk.records import VerdictRecord, load_state, load_verdicts, record_verdicts, save_state
from store import Store, open_store

LIMITS = RiskLimits()
DAY0 = 1_761_696_000_000  # 2025-10-29 00:00 UTC
NOW = DAY0 + 10 * 3_600_000


def _codes(state: RiskState) -> list[ReasonCode]:
    return [lock.code for lock in state.locks]


def test_default_state_is_active_and_round_trips_as_json() -> None:
    state = RiskState()
    assert state.trading_state(NOW) is TradingState.ACTIVE
    busy = kill(on_order(on_trade_closed(state, -5.0, NOW), NOW), "test", NOW)
    assert RiskState.model_validate_json(busy.model_dump_json()) == busy


def test_daily_loss_halts_until_the_next_utc_day() -> None:
    state = on_equity(RiskState(), 10_000.0, DAY0 + 60_000, LIMITS)
    state = on_equity(state, 9_500.0, NOW, LIMITS)
    assert state.trading_state(NOW) is TradingState.ACTIVE
    state = on_equity(state, 8_990.0, NOW, LIMITS)
    assert state.trading_state(NOW) is TradingState.HALTED
    assert _codes(state) == [ReasonCode.DAILY_LOSS]
    assert state.trading_state(DAY0 + DAY_MS - 1) is TradingState.HALTED
    # Recovering later that day does not lift the halt; the new UTC day does.
    state = on_equity(state, 10_000.0, DAY0 + DAY_MS - 1, LIMITS)
    assert state.trading_state(DAY0 + DAY_MS - 1) is TradingState.HALTED
    tomorrow = on_equity(state, 8_990.0, DAY0 + DAY_MS, LIMITS)
    assert tomorrow.trading_state(DAY0 + DAY_MS) is TradingState.ACTIVE
    assert tomorrow.day_start_equity == 8_990.0
    assert refresh(state, DAY0 + DAY_MS).locks == ()


def test_drawdown_moves_to_reducing_until_a_person_resets_it() -> None:
    state = on_equity(RiskState(), 10_000.0, DAY0, LIMITS)
    state = on_equity(state, 12_000.0, DAY0 + DAY_MS, LIMITS)
    state = on_equity(state, 8_999.0, DAY0 + 5 * DAY_MS, LIMITS)  # 25.0% below 12,000
    assert state.trading_state(DAY0 + 5 * DAY_MS) is TradingState.REDUCING
    assert state.trading_state(DAY0 + 500 * DAY_MS) is TradingState.REDUCING
    reset = reset_drawdown(state, 8_999.0)
    assert reset.trading_state(DAY0 + 5 * DAY_MS) is TradingState.ACTIVE
    assert reset.peak_equity == 8_999.0


def test_kill_switch_halts_until_cleared_by_a_person() -> None:
    state = kill(RiskState(), "operator: exchange incident", NOW)
    assert state.trading_state(NOW + 365 * DAY_MS) is TradingState.HALTED
    assert refresh(state, NOW + 365 * DAY_MS) == state
    assert on_equity(state, 1e9, NOW + DAY_MS, LIMITS).trading_state(NOW) is TradingState.HALTED
    assert clear_kill(state).trading_state(NOW) is TradingState.ACTIVE


def test_consecutive_llm_failures_enter_safe_mode_and_m_healthy_calls_leave_it() -> None:
    state = RiskState()
    for _ in range(LIMITS.max_llm_failures - 1):
        state = on_llm_failure(state, NOW, LIMITS)
    assert state.trading_state(NOW) is TradingState.ACTIVE
    state = on_llm_failure(state, NOW, LIMITS)
    assert state.trading_state(NOW) is TradingState.REDUCING
    assert _codes(on_llm_failure(state, NOW, LIMITS)) == [ReasonCode.SAFE_MODE]
    for _ in range(LIMITS.llm_recoveries - 1):
        state = on_llm_success(state, LIMITS)
        assert state.trading_state(NOW) is TradingState.REDUCING
    relapsed = on_llm_success(on_llm_failure(state, NOW, LIMITS), LIMITS)
    assert relapsed.trading_state(NOW) is TradingState.REDUCING  # the count starts again
    recovered = on_llm_success(state, LIMITS)
    assert recovered.trading_state(NOW) is TradingState.ACTIVE
    assert recovered.llm_failures == 0


def test_losing_streak_counts_losses_and_a_win_resets_it() -> None:
    state = RiskState()
    for i in range(3):
        state = on_trade_closed(state, -1.0, NOW + i)
    assert (state.losing_streak, state.last_loss_ms) == (3, NOW + 2)
    assert on_trade_closed(state, 0.5, NOW).losing_streak == 0
    assert on_trade_closed(state, math.nan, NOW) == state


def test_garbage_equity_changes_nothing() -> None:
    state = on_equity(RiskState(), 10_000.0, NOW, LIMITS)
    assert on_equity(state, math.nan, NOW, LIMITS) == state
    assert on_equity(state, math.inf, NOW, LIMITS) == state


def test_order_times_outside_the_hour_are_dropped() -> None:
    state = on_order(RiskState(), NOW - 3_600_000)
    state = on_order(state, NOW - 10)
    assert on_order(state, NOW).recent_orders_ms == (NOW - 10, NOW)
    assert refresh(state, NOW + 3_600_000).recent_orders_ms == ()


def test_an_equity_close_leaves_order_times_to_the_gate_and_an_old_one_never_counts() -> None:
    """Only the gate's rate limits read order times, each inside its window, and the gate drops
    the old ones when it refreshes at a signal. An equity close (every bar on paper, every span
    a backtest folds) leaves them: dropping one there rebuilt the state for nothing a rule reads.
    """
    old = NOW - 2 * 3_600_000
    state = on_order(on_equity(RiskState(), 10_000.0, old, LIMITS), old)
    closed = on_equity(state, 10_000.0, NOW, LIMITS)
    assert closed.recent_orders_ms == (old,)
    market = MarketView(
        symbol="BTCUSDT",
        last_price=65_000.0,
        data_time_ms=NOW,
        atr=40.0,
        rules=sample_rules()["BTCUSDT"],
    )
    portfolio = PortfolioView(
        cash=10_000.0, equity=10_000.0, peak_equity=10_000.0, day_start_equity=10_000.0
    )
    buy = TradeSignal(
        decision_id="a", source=SignalSource.AI, symbol="BTCUSDT", action="buy", created_ms=NOW
    )
    one_an_hour = RiskLimits(ai=SourceLimits(max_orders_per_minute=1, max_orders_per_hour=1))
    verdict, after = decide(buy, portfolio, market, NOW, one_an_hour, closed)
    assert isinstance(verdict, Approved)
    assert after.recent_orders_ms == (NOW,)


# --- persistence -------------------------------------------------------------------------


def _reopen(store: Store) -> Store:
    url = store.engine.url.render_as_string(hide_password=False)
    mode = "require" if store.backend.timescaledb else "off"  # the backend it was opened on
    store.close()
    return open_store(url, mode)


def test_a_halt_survives_a_restart(store: Store) -> None:
    assert store.schema_version() >= 2
    halted = kill(RiskState(), "operator", NOW)
    save_state(store, halted, NOW)
    save_state(store, RiskState(), NOW, scope="backtest-1")
    reopened = _reopen(store)
    try:
        loaded = load_state(reopened)
        assert loaded == halted
        assert loaded.trading_state(NOW + DAY_MS) is TradingState.HALTED
        assert load_state(reopened, "backtest-1") == RiskState()
        assert load_state(reopened, "never-saved") == RiskState()
        save_state(reopened, clear_kill(loaded), NOW + 1)
        assert load_state(reopened).trading_state(NOW) is TradingState.ACTIVE
    finally:
        reopened.close()


def test_verdicts_are_recorded_with_inputs_and_replay_identically(store: Store) -> None:
    rules = sample_rules()["BTCUSDT"]
    market = MarketView(
        symbol="BTCUSDT", last_price=65_000.0, data_time_ms=NOW, atr=40.0, rules=rules
    )
    portfolio = PortfolioView(
        cash=10_000.0, equity=10_000.0, peak_equity=10_000.0, day_start_equity=10_000.0
    )
    signals = [
        TradeSignal(
            decision_id="a",
            source=SignalSource.AI,
            symbol="BTCUSDT",
            action="buy",
            confidence=0.9,
            created_ms=NOW,
        ),
        TradeSignal(
            decision_id="b",
            source=SignalSource.AI,
            symbol="BTCUSDT",
            action="buy",
            quantity=math.nan,
            created_ms=NOW,
        ),
    ]
    state = on_trade_closed(RiskState(), -3.0, NOW - 1)
    records = []
    for sig in signals:
        verdict, after = decide(sig, portfolio, market, NOW, LIMITS, state)
        records.append(
            VerdictRecord(
                now_ms=NOW,
                signal=sig,
                portfolio=portfolio,
                market=market,
                limits=LIMITS,
                verdict=verdict,
                state_before=state,
                state_after=after,
            )
        )
        state = after
    assert record_verdicts(store, records) == 2
    loaded = load_verdicts(store)
    assert loaded[0] == records[0]
    assert loaded[1].verdict == records[1].verdict  # the NaN signal: NaN != NaN, so field-wise
    assert math.isnan(loaded[1].signal.quantity)
    assert isinstance(loaded[0].verdict, Approved)
    assert isinstance(loaded[1].verdict, Vetoed)
    assert loaded[0].verdict.order.stop_loss == Decimal("64920")
    for record in loaded:
        replay = assess(
            record.signal,
            record.portfolio,
            record.market,
            record.now_ms,
            record.limits,
            record.state_before,
        )
        assert replay == record.verdict
    assert load_verdicts(store, "other") == []
