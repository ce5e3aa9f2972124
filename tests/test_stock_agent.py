"""The agent on US stocks: offline it backtests the EA file with fills in regular hours only,
and the model's decision prompt says whether the market is open and when it next opens."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from loopback_openai import LoopbackOpenAI
from scripted_model import ScriptedModel, look_at_the_market, tool_call

EA = Path(__file__).parent / "fixtures" / "stocks" / "EA-15m-2026-05-26_2026-06-03_yfinance.csv"
ARGS = ("--symbol", "EA", "--data", str(EA), "--decide-every", "60")


@pytest.mark.slow
def test_the_offline_agent_backtests_a_stock_and_fills_in_regular_hours(cli, tmp_path) -> None:
    out = tmp_path / "agent.json"
    result = cli("agent-backtest", *ARGS, "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "offline" in result.stderr
    report = json.loads(out.read_text())
    times = pd.to_datetime([f["time"] for f in report["fills"]]).tz_convert("America/New_York")
    minutes = times.hour * 60 + times.minute
    assert len(times) and ((minutes >= 570) & (minutes < 960)).all()
    assert report["config"]["market_hours"]["fills"] == "regular hours"


def hold(_messages):
    return tool_call("submit_signal", {"symbol": "EA", "action": "hold", "confidence": 0.5})


@pytest.mark.slow
def test_the_decision_prompt_shows_the_market_state(cli, tmp_path) -> None:
    server = LoopbackOpenAI(responder=ScriptedModel(look_at_the_market, hold)).start()
    try:
        env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test-loopback"}
        result = cli("agent-backtest", *ARGS, "--yes", env=env)
        assert result.returncode == 0, result.stderr
        prompts = {
            message["content"]
            for request in server.requests
            for message in request.body["messages"]
            if message["role"] == "user"
        }
    finally:
        server.stop()
    lines = [line for p in prompts for line in p.splitlines() if line.startswith("Market: ")]
    assert len(lines) == len(prompts)
    assert "Market: US market closed; next open Thu 2026-05-28 09:30 EDT." in lines
    assert any(line.startswith("Market: US market open; closes") for line in lines)
