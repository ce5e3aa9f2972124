"""A backtest skips quiet bars; the breakers it folds over them must be exactly those a paper
loop trips calling `on_equity` on every close, or the two would judge signals differently."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk.limits import RiskLimits
from risk.state import RiskState, kill, on_equity, on_equity_series

DAY_MS = 86_400_000
T0 = 1_761_711_720_000


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.floats(-0.04, 0.04),
            st.just(float("nan")),
        ),
        min_size=1,
        max_size=400,
    ),
    gap_minutes=st.integers(1, 600),
    drawdown=st.sampled_from([None, 0.02, 0.05]),
    daily=st.sampled_from([None, 0.01, 0.03]),
    prior=st.booleans(),
)
def test_folded_equity_equals_close_by_close(steps, gap_minutes, drawdown, daily, prior) -> None:
    limits = RiskLimits(max_drawdown_pct=drawdown, max_daily_loss_pct=daily)
    equity = 10_000 * np.cumprod(1 + np.nan_to_num(np.asarray(steps)))
    equity[np.isnan(np.asarray(steps))] = np.nan
    times = T0 + gap_minutes * 60_000 * np.arange(len(equity), dtype=np.int64)
    state = RiskState()
    if prior:
        state = on_equity(kill(state, "a person", T0 - 1), 10_500.0, int(T0 - DAY_MS), limits)
    expected = state
    for value, moment in zip(equity.tolist(), times.tolist(), strict=True):
        expected = on_equity(expected, value, moment, limits)
    assert on_equity_series(state, equity, times, limits) == expected


def test_a_drawdown_inside_a_skipped_span_locks_as_it_would_close_by_close() -> None:
    limits = RiskLimits(max_drawdown_pct=0.05)
    equity = np.array([10_000.0, 10_400.0, 9_800.0, 9_850.0, 10_100.0])
    times = T0 + 60_000 * np.arange(5, dtype=np.int64)
    folded = on_equity_series(RiskState(), equity, times, limits)
    assert [lock.code.value for lock in folded.locks] == ["MAX_DRAWDOWN"]
    assert folded.locks[0].since_ms == int(times[2])
    assert folded.peak_equity == 10_400.0


def test_a_long_skipped_span_folds_as_close_by_close() -> None:
    """Spans longer than the screen's stretch (a quiet year of 1m bars) are folded a stretch at
    a time; days, peaks, a gap of unmarked closes and a lock still land where they would."""
    limits = RiskLimits(max_drawdown_pct=0.05, max_daily_loss_pct=0.03)
    steps = np.random.default_rng(7).normal(0, 0.0004, 150_000)
    equity = 10_000 * np.cumprod(1 + steps)
    equity[65_530:65_545] = np.nan
    times = T0 + 60_000 * np.arange(len(equity), dtype=np.int64)
    expected = RiskState()
    for value, moment in zip(equity.tolist(), times.tolist(), strict=True):
        expected = on_equity(expected, value, moment, limits)
    assert expected.locks
    assert on_equity_series(RiskState(), equity, times, limits) == expected


@settings(max_examples=200, deadline=None)
@given(
    cash=st.floats(8_000, 12_000),
    length=st.integers(1, 3_000),
    gap_minutes=st.integers(1, 600),
    drawdown=st.sampled_from([None, 0.05]),
    daily=st.sampled_from([None, 0.03]),
)
def test_a_flat_span_told_as_flat_folds_as_close_by_close(
    cash, length, gap_minutes, drawdown, daily
) -> None:
    """A backtest tells the fold that a span without a position is its cash throughout; after
    a peak of 10,500 that span may sit in a drawdown or a daily loss, and locks as it would."""
    limits = RiskLimits(max_drawdown_pct=drawdown, max_daily_loss_pct=daily)
    state = on_equity(RiskState(), 10_500.0, T0 - 60_000, limits)
    equity = np.full(length, cash)
    times = T0 + gap_minutes * 60_000 * np.arange(length, dtype=np.int64)
    expected = state
    for moment in times.tolist():
        expected = on_equity(expected, cash, moment, limits)
    assert on_equity_series(state, equity, times, limits, cash) == expected


def _buy_and_close_later(plan_extra: dict[int, list]) -> dict[str, str]:
    """Buy at bar 0's close (filled at bar 1's open), a crash at bar 1's close only, then an
    entry and an exit decided at bar 3: each decision's verdict."""
    from script_strategy import backtest, candles, order

    from risk.models import SignalAction

    bars = candles(
        [
            (100, 101, 99, 100),
            (100, 100, 79, 80),  # the fill bar: its close is 20% under the entry
            (80, 101, 80, 100),  # recovered: no later close shows the drawdown
            (100, 101, 99, 100),
            (100, 101, 99, 100),
        ]
    )
    plan = {
        0: [lambda ctx: order(ctx, size_pct=0.5)],
        3: [
            lambda ctx: order(ctx, size_pct=0.1, tag="again"),
            lambda ctx: order(ctx, SignalAction.CLOSE),
        ],
        **plan_extra,
    }
    result = backtest(bars, plan, limits=RiskLimits(max_drawdown_pct=0.05))
    return {
        decision: verdict.kind + ":" + ",".join(r.code.value for r in verdict.reasons)
        if verdict.kind == "vetoed"
        else verdict.kind
        for decision, verdict in result.verdicts.items()
    }


def test_a_breaker_tripped_at_a_fill_bars_close_locks_as_stepping_every_bar_does() -> None:
    """A backtest steps a bar where only an order fills without taking its close there: the
    close joins the fold of the quiet closes after it. The drawdown that exists only at that
    close must still lock the next entry, exactly as a run stepping every bar judges it."""
    folded = _buy_and_close_later({})
    stepped = _buy_and_close_later({1: [], 2: []})  # wakes at every bar: each is stepped
    assert folded == stepped
    assert folded["script:BTCUSDT:3:buyagain"] == "vetoed:MAX_DRAWDOWN"
    assert folded["script:BTCUSDT:3:close"] == "approved"
