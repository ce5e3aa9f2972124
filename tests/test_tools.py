"""The tools the model calls: schemas it can read, errors it can act on, and nothing after the
decision time, ever, on the real bundled sample."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from market.sample import load_sample, sample_rules
from risk.state import RiskState, kill
from tools import ALL_TOOLS, MarketData, ToolEnv, chat_tools, decision_tools, flat_portfolio

BAR = 2_000


@pytest.fixture(scope="module")
def market() -> MarketData:
    return MarketData({s: load_sample(s) for s in ("BTCUSDT", "ETHUSDT")}, "1m")


@pytest.fixture
def env(market: MarketData) -> ToolEnv:
    now = int(market.frames["BTCUSDT"]["close_time"].iloc[BAR])
    return ToolEnv(
        market=market,
        now_ms=now,
        rules=sample_rules(),
        portfolio=flat_portfolio(10_000),
        decision_id="t:BTCUSDT:1",
    )


def call(env: ToolEnv, name: str, arguments: object) -> dict:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    outcome = ALL_TOOLS.call(env, "call_1", name, raw)
    payload = json.loads(outcome.content)
    assert outcome.ok == ("error" not in payload)
    return payload


def test_schemas_are_openai_functions_with_required_fields() -> None:
    schemas = {s["function"]["name"]: s["function"] for s in ALL_TOOLS.schemas()}
    assert set(schemas) == {
        "get_candles",
        "get_market_snapshot",
        "compute_indicators",
        "get_order_book",
        "cross_venue_spread",
        "run_backtest",
        "assess_risk",
        "get_portfolio",
        "place_order",
        "cancel_order",
        "submit_signal",
        "get_limits",
        "get_loop_status",
    }
    signal = schemas["submit_signal"]["parameters"]
    assert signal["type"] == "object"
    assert signal["required"] == ["symbol", "action", "confidence"]
    assert signal["properties"]["action"]["enum"] == ["buy", "sell", "close", "hold"]
    assert "title" not in json.dumps(schemas)  # compact: no pydantic titles
    assert "submit_signal" not in chat_tools().names
    assert "place_order" not in decision_tools().names
    assert {"get_limits", "get_loop_status"} <= set(chat_tools().names)
    assert "get_loop_status" not in decision_tools().names  # an unattended decision pays per token
    assert "cross_venue_spread" in chat_tools().names
    assert "cross_venue_spread" not in decision_tools().names  # recorded decisions stay as they are


def test_snapshot_is_as_of_the_decision_time(env: ToolEnv, market: MarketData) -> None:
    snap = call(env, "get_market_snapshot", {"symbol": "btcusdt"})
    frame = market.frames["BTCUSDT"]
    assert snap["last_price"] == frame["close"].iloc[BAR]
    assert pd.Timestamp(snap["as_of"]).value // 1_000_000 == frame["close_time"].iloc[BAR]


def test_candles_never_show_a_bar_after_now(env: ToolEnv, market: MarketData) -> None:
    result = call(env, "get_candles", {"symbol": "BTCUSDT", "interval": "15m", "limit": 100})
    last_close = pd.Timestamp(result["rows"][-1][0], tz="UTC").value // 1_000_000
    assert last_close <= env.now_ms + 1
    assert len(result["rows"]) == 100
    one_minute = call(env, "get_candles", {"symbol": "BTCUSDT", "interval": "1m", "limit": 3})
    assert [r[4] for r in one_minute["rows"]] == list(
        market.frames["BTCUSDT"]["close"].iloc[BAR - 2 : BAR + 1]
    )


def test_15m_bars_are_built_from_complete_minutes_only(env: ToolEnv, market: MarketData) -> None:
    rows = call(env, "get_candles", {"symbol": "BTCUSDT", "interval": "15m", "limit": 1})["rows"]
    end = pd.Timestamp(rows[0][0], tz="UTC").value // 1_000_000
    minutes = market.frames["BTCUSDT"]
    inside = minutes[(minutes["open_time"] >= end - 900_000) & (minutes["open_time"] < end)]
    assert len(inside) == 15
    assert rows[0][2] == pytest.approx(inside["high"].max())
    assert rows[0][5] == pytest.approx(inside["volume"].sum(), abs=1e-3)


def test_asking_for_the_future_is_an_error_naming_the_decision_time(env: ToolEnv) -> None:
    result = call(env, "get_candles", {"symbol": "BTCUSDT", "end": "2025-11-01T00:00Z"})
    assert "after the decision time" in result["error"]


@pytest.mark.parametrize("end", ["9999-12-31T23:59Z", "0001-01-01"])
def test_a_time_no_market_has_is_a_tool_error_naming_the_field(env: ToolEnv, end: str) -> None:
    result = call(env, "get_candles", {"symbol": "BTCUSDT", "end": end})
    assert result["error"].startswith("end ") and "out of range" in result["error"]


def test_unknown_symbol_lists_the_known_ones(env: ToolEnv) -> None:
    result = call(env, "get_market_snapshot", {"symbol": "DOGEUSDT"})
    assert result["error"] == (
        "unknown symbol 'DOGEUSDT'; this session has data for BTCUSDT, ETHUSDT"
    )


def test_validation_errors_name_the_field(env: ToolEnv) -> None:
    result = call(env, "submit_signal", {"symbol": "BTCUSDT", "action": "moon", "confidence": 7})
    assert "action" in result["error"] and "confidence" in result["error"]


def test_malformed_json_and_unknown_tools_are_tool_errors(env: ToolEnv) -> None:
    assert "not valid JSON" in call(env, "get_portfolio", "{oops")["error"]
    outcome = ALL_TOOLS.call(env, "c", "buy_everything", "{}")
    assert not outcome.ok and "unknown tool 'buy_everything'" in outcome.error


def test_backtest_range_outside_the_visible_data_is_refused(env: ToolEnv) -> None:
    result = call(env, "run_backtest", {"strategy": "sma_cross", "symbol": "BTCUSDT", "days": 3})
    assert result["error"].startswith("only 1.39 days of BTCUSDT data before now")
    done = call(env, "run_backtest", {"strategy": "sma_cross", "symbol": "BTCUSDT", "days": 1})
    assert done["metrics"]["# Trades"] > 0
    assert pd.Timestamp(done["end"], tz="UTC").value // 1_000_000 <= env.now_ms + 1


def test_assess_risk_previews_the_gate_without_side_effects(env: ToolEnv) -> None:
    idea = {"symbol": "BTCUSDT", "action": "buy", "size_pct": 1.0, "confidence": 0.9}
    first = call(env, "assess_risk", idea)
    second = call(env, "assess_risk", idea)
    assert first == second  # no rate-limit slot was taken
    assert first["verdict"] == "approved"
    assert first["notional_usdt"] <= 2_500  # clamped to the AI's 25% max position
    assert any(n.startswith("ATR_STOP") for n in first["notes"])


def test_assess_risk_reflects_a_halt(env: ToolEnv) -> None:
    env.risk_state = lambda: kill(RiskState(), "test", 0)
    result = call(env, "assess_risk", {"symbol": "BTCUSDT", "action": "buy", "confidence": 0.9})
    assert result["verdict"] == "vetoed"
    assert result["notes"][0].startswith("KILL_SWITCH")
    portfolio = call(env, "get_portfolio", {})
    assert portfolio["trading_state"] == "HALTED" and portfolio["equity_usdt"] == 10_000


def test_cancel_needs_a_venue(env: ToolEnv) -> None:
    result = call(env, "cancel_order", {"client_order_id": "at-123"})
    assert result["error"] == "no working orders can be cancelled in this mode"


def test_the_spread_tool_says_when_no_run_keeps_both_venues_books(env: ToolEnv) -> None:
    outcome = ALL_TOOLS.call(env, "c", "cross_venue_spread", '{"symbol": "BTCUSDT", "size": 1}')
    assert not outcome.ok
    assert "no cross-venue books in this mode" in (outcome.error or "")


def test_an_argument_a_tool_does_not_take_is_refused_by_name(env: ToolEnv) -> None:
    """place_order with leverage 100 was taken and the leverage dropped: the model believed it
    had asked for something the tool never does."""
    arguments = {"symbol": "BTCUSDT", "action": "buy", "size_pct": 0.1, "confidence": 0.9}
    outcome = chat_tools().call(
        env, "c1", "place_order", json.dumps({**arguments, "leverage": 100})
    )
    assert not outcome.ok and "leverage: not an argument it takes" in outcome.error
    assert chat_tools().call(env, "c2", "place_order", json.dumps(arguments)).ok


def test_true_or_false_for_a_number_is_refused_not_read_as_one(env: ToolEnv) -> None:
    """pydantic's lax mode read "confidence": true as 1.0, which skipped the gate's confidence
    scaling, and "size_pct": true as all of the equity."""
    base = {"symbol": "BTCUSDT", "action": "buy", "size_pct": 0.1, "confidence": 0.9}
    for field in ("confidence", "size_pct"):
        outcome = chat_tools().call(env, "c", "place_order", json.dumps({**base, field: True}))
        assert not outcome.ok and f"{field}: a number, not true or false" in outcome.error
