"""US stock hours in the one runner, as tiny bar tables: what is decided while the market is
closed fills at the next regular open (or is vetoed, by config), holidays and early closes
come from the XNYS calendar, and a stop gapped over a weekend fills at the open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from script_strategy import NO_COSTS, backtest, order

from market.calendar import xnys
from market.instruments import equity_rules
from risk.limits import RiskLimits
from risk.models import SignalAction
from runtime.hours import ClosedPolicy, HoursConfig, TradingHours

HALF_HOUR = 1_800_000
DAY = 86_400_000
NO_BREAKERS = RiskLimits(max_daily_loss_pct=None, max_drawdown_pct=None, max_data_age_ms=5 * DAY)


def ms(text: str) -> int:
    """A New York wall-clock time as epoch ms."""
    return int(pd.Timestamp(text, tz="America/New_York").value // 1_000_000)


def table(rows: list[tuple[str, float, float, float, float]], step: int) -> pd.DataFrame:
    """Bars at the given New York times: (time, open, high, low, close)."""
    times = np.array([ms(t) for t, *_ in rows], dtype=np.int64)
    o, h, lo, c = (np.array(col, dtype=float) for col in zip(*[r[1:] for r in rows], strict=True))
    return pd.DataFrame(
        {
            "open_time": times,
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": 1_000_000.0,
            "close_time": times + step - 1,
        }
    )


def run(frame, plan, step, **hours):
    return backtest(
        {"EA": frame},
        plan,
        NO_COSTS,
        symbol_rules={"EA": equity_rules("EA", 100.0)},
        limits=NO_BREAKERS,
        hours=TradingHours(step, HoursConfig(**hours)),
    )


def buy(ctx):
    return order(ctx, SignalAction.BUY, size_pct=0.5)


FRIDAY_CLOSE = [
    ("2026-05-29 15:30", 100, 101, 99, 100),  # regular hours
    ("2026-05-29 16:00", 100, 101, 99, 100),  # post-market: decided here
    ("2026-05-29 16:30", 102, 103, 101, 102),
    ("2026-06-01 09:00", 104, 105, 103, 104),  # Monday pre-market
    ("2026-06-01 09:30", 106, 107, 105, 106),  # Monday's open
]


def test_an_order_decided_friday_after_the_close_fills_at_mondays_open() -> None:
    result = run(table(FRIDAY_CLOSE, HALF_HOUR), {("EA", 1): [buy]}, HALF_HOUR)
    (fill,) = result.fills
    assert fill.bar == 4 and fill.price == 106
    assert fill.quantity == int(fill.quantity)  # whole shares


def test_extended_hours_fill_the_same_order_in_the_post_market() -> None:
    result = run(table(FRIDAY_CLOSE, HALF_HOUR), {("EA", 1): [buy]}, HALF_HOUR, extended_hours=True)
    assert [(f.bar, f.price) for f in result.fills] == [(2, 102)]


def test_the_veto_policy_refuses_an_order_decided_while_closed() -> None:
    result = run(
        table(FRIDAY_CLOSE, HALF_HOUR),
        {("EA", 1): [buy]},
        HALF_HOUR,
        when_closed=ClosedPolicy.VETO,
    )
    assert result.fills == []
    assert result.vetoes == {"MARKET_CLOSED": 1}


def test_good_friday_is_no_session_even_when_the_data_has_a_bar() -> None:
    rows = [
        ("2026-04-01", 100, 101, 99, 100),
        ("2026-04-02", 100, 101, 99, 100),  # Thursday: decided at its close
        ("2026-04-03", 90, 91, 89, 90),  # Good Friday: a vendor's stray row
        ("2026-04-06", 110, 111, 109, 110),
    ]
    frame = table(rows, DAY)
    frame["open_time"] -= frame["open_time"] % DAY  # daily bars are dated at UTC midnight
    frame["close_time"] = frame["open_time"] + DAY - 1
    result = run(frame, {("EA", 1): [buy]}, DAY)
    assert [(f.bar, f.price) for f in result.fills] == [(3, 110)]


def test_the_early_close_after_thanksgiving_pushes_the_fill_to_monday() -> None:
    rows = [
        ("2025-11-28 12:30", 100, 101, 99, 100),  # decided at 13:00, the early close
        ("2025-11-28 13:00", 102, 103, 101, 102),  # a normal day's regular hours; not this one
        ("2025-12-01 09:30", 104, 105, 103, 104),
    ]
    result = run(table(rows, HALF_HOUR), {("EA", 0): [buy]}, HALF_HOUR)
    assert [(f.bar, f.price) for f in result.fills] == [(2, 104)]


HOUR = 3_600_000


@pytest.mark.parametrize(
    ("decided", "last"),
    [("2026-05-28 14:30", "2026-05-28 15:30"), ("2025-11-28 11:30", "2025-11-28 12:30")],
)
def test_yfinance_hourly_sessions_last_bar_fills(decided: str, last: str) -> None:
    """yfinance stamps hourly bars 09:30, ..., 15:30 (12:30 on an early close): the last one
    runs past the close but is the session's, so an order decided the bar before fills in it."""
    rows = [(decided, 100, 101, 99, 100), (last, 102, 103, 101, 102)]
    result = run(table(rows, HOUR), {("EA", 0): [buy]}, HOUR)
    assert [(f.bar, f.price) for f in result.fills] == [(1, 102)]


def test_a_stop_gapped_over_a_weekend_fills_at_mondays_open_not_at_its_price() -> None:
    rows = [
        ("2026-05-28 15:00", 100, 101, 99, 100),  # Thursday: buy with a stop at 95
        ("2026-05-28 15:30", 100, 101, 99, 100),  # fills here
        ("2026-05-29 15:30", 99, 100, 98, 99),  # Friday
        ("2026-05-30 10:00", 80, 81, 79, 80),  # a Saturday print: no session
        ("2026-06-01 08:00", 85, 86, 84, 85),  # Monday pre-market: below the stop, no fill
        ("2026-06-01 09:30", 90, 92, 89, 91),  # Monday's open
    ]

    def entry(ctx):
        return order(ctx, SignalAction.BUY, size_pct=0.5, stop_loss=95.0)

    result = run(table(rows, HALF_HOUR), {("EA", 0): [entry]}, HALF_HOUR)
    exit_fill = result.fills[-1]
    assert (exit_fill.bar, exit_fill.price, exit_fill.reason) == (5, 90, "stop_loss")


@pytest.mark.parametrize(
    ("when", "state"),
    [
        ("2026-05-29 16:30", "US market closed; next open Mon 2026-06-01 09:30 EDT"),
        ("2026-04-03 11:00", "US market closed; next open Mon 2026-04-06 09:30 EDT"),
        ("2025-11-28 10:00", "US market open; closes Fri 2025-11-28 13:00 EST (early close)"),
        ("2026-06-01 10:00", "US market open; closes Mon 2026-06-01 16:00 EDT"),
    ],
)
def test_the_market_state_says_open_or_closed_and_the_next_open(when: str, state: str) -> None:
    assert xnys().state(ms(when)) == state


def test_a_stocks_gaps_are_the_bars_its_sessions_lack_not_its_nights() -> None:
    days = table([(d, 1, 1, 1, 1) for d in ("2026-05-28", "2026-05-29", "2026-06-02")], DAY)
    days_utc = days["open_time"] - days["open_time"] % DAY
    assert xnys().missing(days_utc.to_numpy(), DAY) == 1  # Monday 06-01; not the weekend
    halves = table([(t, 1, 1, 1, 1) for t in ("2026-05-29 15:00", "2026-06-01 10:30")], HALF_HOUR)
    # Friday 15:30 and Monday 09:30 and 10:00 are missing; the night and the weekend are not.
    assert xnys().missing(halves["open_time"].to_numpy(), HALF_HOUR) == 3


def test_an_hourly_session_lacks_the_bars_of_its_own_grid_that_start_in_regular_hours() -> None:
    """yfinance's hourly bars start at 09:30 and the 15:30 one is the session's; Alpaca's start
    on the hour, 10:00 to 15:00 in regular hours (09:00 is pre-market)."""
    yahoo = [f"2026-05-2{d} {h}:30" for d in (8, 9) for h in range(9, 16)]
    alpaca = [f"2026-05-2{d} {h:02}:00" for d in (8, 9) for h in range(9, 17)]
    for stamps in (yahoo, alpaca):
        opens = table([(t, 1, 1, 1, 1) for t in stamps], HOUR)["open_time"].to_numpy()
        assert xnys().missing(opens, HOUR) == 0
    opens = table([(t, 1, 1, 1, 1) for t in yahoo if t != "2026-05-28 15:30"], HOUR)
    assert xnys().missing(opens["open_time"].to_numpy(), HOUR) == 1


SESSIONS_SCRIPT = """
import hashlib, json, sys
from market.calendar import xnys
s = xnys()
digest = hashlib.sha256()
for name in ("labels", "opens", "closes", "extended_opens", "extended_closes"):
    digest.update(getattr(s, name).tobytes())
digest.update(repr(sorted(s.early_closes)).encode())
print(json.dumps({"built": "exchange_calendars" in sys.modules, "digest": digest.hexdigest(),
                  "sessions": len(s.labels), "christmas_2025": s.state(1766673000000)}))
"""


def _sessions(cache_home: Path) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    done = subprocess.run(
        [sys.executable, "-c", SESSIONS_SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.slow
def test_the_calendar_is_built_once_and_read_back_as_built(tmp_path: Path) -> None:
    """exchange_calendars takes ~0.6 s to load and build the sessions: the first process keeps
    them in the user's cache, and the next reads them back without loading it, the same to the
    bit. A damaged file is rebuilt, and a cache that cannot be written costs only the build."""
    first = _sessions(tmp_path)
    (kept,) = (tmp_path / "agent-trader").glob("xnys-sessions-*.npz")
    assert first["built"] and first["sessions"] > 11_000
    assert first["christmas_2025"].startswith("US market closed; next open Fri 2025-12-26")
    again = _sessions(tmp_path)
    assert not again["built"] and again | {"built": True} == first
    kept.write_bytes(b"PK\x03\x04 cut short")
    assert _sessions(tmp_path) == first  # rebuilt
    assert _sessions(tmp_path) == again  # and kept again
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    assert _sessions(blocked) == first
