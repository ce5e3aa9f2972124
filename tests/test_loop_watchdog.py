"""A loop that is alive but not moving never reads as running: `agent-trade status` says since
when it stalled once no bar came for longer than the feed's interval plus the margin."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from agent.alerts import AlertWatch
from agent.loop_state import STALL_MARGIN_MS, LoopState
from config import Settings
from execution.paper_records import save_step
from market.models import iso_ms
from store import open_store


def _checkpoint(
    data_dir: Path, progress_ms: int, bar_every_ms: int, account: str = "paper", **state: Any
) -> None:
    """What a running loop (this test's own process, alive) committed at its last progress."""
    store = open_store(f"sqlite:///{data_dir / 'agent.db'}")
    stored = LoopState(
        account=account,
        initial_cash=10_000.0,
        pid=os.getpid(),
        wall_updated_ms=progress_ms,
        bar_every_ms=bar_every_ms,
        **state,
    )
    save_step(store, account, orders=[], fills=[], state_json=stored.model_dump_json(), now_ms=0)
    store.close()


@pytest.mark.slow
def test_status_says_stalled_since_the_last_progress_and_running_while_it_moves(
    cli, offline_env
) -> None:
    data_dir = Path(offline_env["AGENT_DATA_DIR"])
    data_dir.mkdir(parents=True)
    now = int(time.time() * 1000)
    last = now - 60_000 - STALL_MARGIN_MS - 30_000  # a live feed's minute plus the margin, past
    _checkpoint(data_dir, last, 60_000)
    shown = json.loads(cli("agent-trade", "status", "--json").stdout)
    assert shown["status"].startswith(f"stalled since {iso_ms(last)} UTC")
    text = cli("agent-trade", "status").stdout
    assert "stalled since" in text and ": running" not in text

    _checkpoint(data_dir, int(time.time() * 1000), 60_000)
    assert json.loads(cli("agent-trade", "status", "--json").stdout)["status"] == "running"


def test_a_stall_is_alerted_once_and_named_as_a_stall(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    _checkpoint(tmp_path, now, 60_000)
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    heard: list = []
    watch = AlertWatch(store, Settings(data_dir=tmp_path), channels=[heard.append])
    assert watch.poll() == []  # running: nothing to say

    last = now - 60_000 - STALL_MARGIN_MS - 30_000
    _checkpoint(tmp_path, last, 60_000)
    watch.poll()
    watch.poll()
    store.close()
    assert [(a.kind, a.account) for a in heard] == [("stalled", "paper")]
    assert f"stalled since {iso_ms(last)} UTC" in heard[0].text
