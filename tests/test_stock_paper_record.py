"""The paper record live trading asks for, for a stock: a session stands for the real time until
the next one, so a week of paper trading on Alpaca's bars earns a week, whatever the bar size,
and pre- and post-market bars add nothing (a crypto account's minute bars still count minutes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from agent.live_readiness import record_paper_profile, require_paper_record, trading_profile
from agent.loop_state import LoopState
from backtest.config import BacktestConfig
from core.errors import UserError
from execution.paper_records import save_step
from market.calendar import DAY_MS, xnys
from risk.limits import RiskLimits
from store import open_store
from store.tables import EquityPointRow

SESSIONS = xnys()
INTERVALS = st.sampled_from([60_000, 300_000, 900_000, 1_800_000, 3_600_000])
MONDAY = int(pd.Timestamp("2026-06-01", tz="UTC").value // 1_000_000)  # a week with no holiday


def session_bars(first: int, count: int, interval_ms: int, *, extended: bool) -> np.ndarray:
    """Every bar of `count` sessions from index `first`: regular hours, or 04:00 to 20:00."""
    starts = SESSIONS.extended_opens if extended else SESSIONS.opens
    ends = SESSIONS.extended_closes if extended else SESSIONS.closes
    return np.concatenate(
        [
            np.arange(starts[i], ends[i] - interval_ms + 1, interval_ms)
            for i in range(first, first + count)
        ]
    )


@settings(max_examples=25, deadline=None)
@given(first=st.integers(8000, 10_500), count=st.integers(1, 10), interval=INTERVALS)
def test_whole_sessions_count_the_real_time_from_the_first_open_to_the_next_after_the_last(
    first, count, interval
) -> None:
    bars = session_bars(first, count, interval, extended=True)
    span = (SESSIONS.opens[first + count] - SESSIONS.opens[first]) / DAY_MS
    assert SESSIONS.days_covered(bars, interval) == pytest.approx(span)
    half = bars[: len(bars) // 2]  # fewer bars never count more
    assert SESSIONS.days_covered(half, interval) <= span + 1e-9


def test_a_session_covered_half_counts_half_its_span() -> None:
    monday = int(np.searchsorted(SESSIONS.labels, MONDAY))
    bars = session_bars(monday, 1, 60_000, extended=False)
    assert SESSIONS.days_covered(bars[: len(bars) // 2], 60_000) == pytest.approx(0.5)
    friday = session_bars(monday + 4, 1, 60_000, extended=False)
    assert SESSIONS.days_covered(friday, 60_000) == pytest.approx(3.0)  # to Monday's open


def _stock_account(store, account: str, bars: np.ndarray, interval_ms: int) -> None:
    """What a paper loop on Alpaca's bars stores: its checkpoint and an equity point a bar."""
    state = LoopState(account=account, initial_cash=10_000.0, bar_every_ms=interval_ms)
    save_step(store, account, orders=[], fills=[], state_json=state.model_dump_json(), now_ms=0)
    _points(store, account, bars, interval_ms)


def _points(store, account: str, bars: np.ndarray, interval_ms: int) -> None:
    rows = [
        {"account": account, "time_ms": int(t) + interval_ms - 1, "equity": 1e4, "cash": 1e4}
        for t in bars
    ]
    with store.engine.begin() as conn:
        conn.execute(insert(EquityPointRow), rows)


def test_a_week_of_stock_paper_trading_on_15m_bars_is_the_7_days_live_asks_for(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    profile = trading_profile(["EA"], "rsi_reversion", None, 15, RiskLimits(), BacktestConfig())
    record_paper_profile(store, "st", profile, "alpaca", None, 0)
    monday = int(np.searchsorted(SESSIONS.labels, MONDAY))
    interval = 900_000
    _stock_account(store, "st", session_bars(monday, 4, interval, extended=True), interval)
    said: list[str] = []
    with pytest.raises(UserError, match=r"'st' has 4\.0 of them; .* for 3\.0 more"):
        require_paper_record(store, tmp_path, profile, 7, MONDAY, said.append, "alpaca")
    _points(store, "st", session_bars(monday + 4, 1, interval, extended=True), interval)
    require_paper_record(store, tmp_path, profile, 7, MONDAY, said.append, "alpaca")
    assert said[-1].startswith("paper record: account 'st' traded this on paper for 7.0 days")
    store.close()
