"""A run whose answers are already cached decides in the main thread (no waits to hide), and the
first decision that has to ask the model hands the rest to the concurrent pool: extending a
cached window asks only for the new decisions, concurrently, and reports exactly what a cold run
of the longer window reports."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from loopback_openai import LoopbackOpenAI
from scripted_model import ScriptedModel, buy_an_uptrend

WINDOW = ("--symbol", "BTCUSDT", "--start", "2025-10-30", "--concurrency", "4", "--yes")


@pytest.mark.slow
def test_extending_a_cached_window_asks_only_for_new_decisions_concurrently(
    cli, tmp_path: Path
) -> None:
    model = ScriptedModel(buy_an_uptrend)
    # Each answer takes 50 ms, as a real model's take longer: requests the run sends at once
    # are then in flight together however busy the machine, and one at a time they never are.
    server = LoopbackOpenAI(responder=lambda body: replace(model(body), delay_s=0.05)).start()
    llm = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test-loopback"}
    try:
        short = cli("agent-backtest", *WINDOW, "--end", "2025-10-30T12:00", env=llm)
        assert short.returncode == 0, short.stderr
        first = len(server.requests)
        server.max_in_flight = 0
        longer = tmp_path / "longer.json"
        extended = cli(
            "agent-backtest", *WINDOW, "--end", "2025-10-31", "--json", str(longer), env=llm
        )
        assert extended.returncode == 0, extended.stderr
        asked = len(server.requests) - first
        report = json.loads(longer.read_text())
        assert asked == report["agent"]["decisions"] - first > 0  # the cached half sent nothing
        assert server.max_in_flight > 1  # the new half went out concurrently

        cold_dir = {**llm, "AGENT_DATA_DIR": str(tmp_path / "cold-data")}
        cold = tmp_path / "cold.json"
        again = cli(
            "agent-backtest", *WINDOW, "--end", "2025-10-31", "--json", str(cold), env=cold_dir
        )
        assert again.returncode == 0, again.stderr
    finally:
        server.stop()
    assert decided(cold) == decided(longer)


def decided(report: Path) -> dict:
    """The report but its data notices (a fresh data dir says more about where bars came from)."""
    loaded = json.loads(report.read_text())
    del loaded["config"]["data"]
    return loaded
