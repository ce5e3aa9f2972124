"""A `--feed alpaca` loop over a weekend is alive, not stalled: while Alpaca's clock says the
market is shut, every poll commits a heartbeat, and `agent-trade status` says it waits for the
open; a loop whose heartbeats stopped (a stuck poll) still reads as stalled."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import BIN
from loopback_alpaca_market import AlpacaMarket
from test_alpaca_trade import RSI, market_env
from test_loop_watchdog import _checkpoint

from agent.loop_state import STALL_MARGIN_MS, Waiting
from market.models import iso_ms

SATURDAY = pd.Timestamp("2026-05-30 06:00", tz="UTC")  # the EA week's weekend
MONDAY_OPEN = "2026-06-01 13:30"  # 09:30 New York


def status(cli, account: str) -> str:
    return json.loads(cli("agent-trade", "status", "--account", account, "--json").stdout)["status"]


def _shown_while_starting(cli, account: str, data_dir: Path) -> str:
    """The status, or "" while the starting loop has not yet put its store and account on
    record (the store can exist a moment before the account does: status then says so and
    exits 2)."""
    if not (data_dir / "agent.db").exists():
        return ""
    run = cli("agent-trade", "status", "--account", account, "--json")
    if run.returncode == 2 and f"no trading account {account!r}" in run.stderr:
        return ""
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)["status"]


@pytest.mark.slow
def test_a_loop_waiting_for_the_open_reads_as_waiting_not_stalled(cli, offline_env) -> None:
    with AlpacaMarket(start=SATURDAY) as market:
        env = {**offline_env, **market_env(market), "AGENT_ALPACA__MAX_WAIT_S": "0.5"}
        args = ("--feed", "alpaca", *RSI, "--symbol", "EA", "--account", "wk")
        proc = subprocess.Popen(
            [str(BIN / "agent-trade"), *args], env=env, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline, shown = time.monotonic() + 60, ""
            while not shown.startswith("waiting") and time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()
                shown = _shown_while_starting(cli, "wk", Path(env["AGENT_DATA_DIR"]))
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert shown.startswith(f"waiting for the open at {MONDAY_OPEN} UTC: the market is closed")
    assert status(cli, "wk") == "stopped"


def _waiting_loop(data_dir: Path, heartbeat_ms: int) -> None:
    """A loop on 15-minute bars, waiting for Monday's open with an hourly heartbeat."""
    waiting = Waiting(next_open_ms=1_780_320_600_000, poll_every_ms=3_600_000)
    _checkpoint(data_dir, heartbeat_ms, 900_000, account="wk", waiting=waiting)


def test_a_stuck_poll_reads_as_stalled_once_its_heartbeat_is_overdue(cli, offline_env) -> None:
    data_dir = Path(offline_env["AGENT_DATA_DIR"])
    data_dir.mkdir(parents=True)
    now = int(time.time() * 1000)
    _waiting_loop(data_dir, now - 1_800_000)  # half an hour: within the hourly heartbeat
    assert status(cli, "wk").startswith(f"waiting for the open at {MONDAY_OPEN} UTC")
    last = now - 3_600_000 - STALL_MARGIN_MS - 30_000
    _waiting_loop(data_dir, last)
    assert status(cli, "wk").startswith(f"stalled since {iso_ms(last)} UTC")
