"""`agent-server --trade ...`: the trading loop inside the server, against a real uvicorn on
loopback: /health shows the loop, /orderbook serves the book the loop keeps, halt and resume
act on it, SIGTERM stops both cleanly, and loop flags that do not apply say why."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import BIN
from loopback_api import free_port

LOOP = ("--feed", "replay", "--speed", "300", "--strategy", "sma_cross", "--fast", "5")


def _until(what: str, check: Callable[[], object], proc: subprocess.Popen) -> object:
    """Poll until `check` gives something truthy; a guard against a hang, not a timing."""
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, f"agent-server exited {proc.returncode}"
        try:
            found = check()
        except httpx.TransportError:
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_the_server_runs_the_loop_serves_its_book_and_steers_it(
    offline_env: dict[str, str], cli, tmp_path: Path
) -> None:
    port = free_port()
    args = [str(BIN / "agent-server"), "--no-ui", "--port", str(port), "--trade", *LOOP]
    err = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(args, env=offline_env, cwd=tmp_path, stderr=err)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

            def health() -> dict:
                return client.get("/health").json()

            def moving() -> dict | None:
                shown = health()
                rows = shown["accounts"]
                return shown if rows and rows[0]["last_bar"] else None

            shown = _until("the loop's first bar", moving, proc)
            assert shown["server_loop"] == {"account": "paper", "alive": True, "ended": None}
            assert shown["accounts"][0]["status"] == "running"

            def live_book() -> dict | None:
                book = client.get("/orderbook", params={"symbol": "BTCUSDT", "limit": 5})
                return book.json() if book.json().get("kind") == "live" else None

            book = _until("the loop's live book", live_book, proc)
            assert "account 'paper'" in book["source"] and book["last_update_id"] is None
            assert 0 < len(book["bids"]) <= 5 and 0 < len(book["asks"]) <= 5
            assert book["best_bid"] < book["best_ask"] and book["event_time_ms"] > 0
            # The loop keeps no ETHUSDT book (the replay has no depth capture of it): the
            # exchange's REST snapshot is asked for, and Binance is unreachable here.
            other = client.get("/orderbook", params={"symbol": "ETHUSDT"})
            assert other.status_code == 503 and "unreachable" in other.json()["detail"]

            halted = client.post("/accounts/paper/halt", json={"reason": "from the API"})
            assert halted.json()["trading_state"] == "HALTED"
            at = client.get("/accounts/paper").json()

            def halted_bars() -> bool:
                now = client.get("/accounts/paper").json()
                return now["bars"] >= at["bars"] + 5 and now["trading_state"] == "HALTED"

            _until("bars stepped while halted", halted_bars, proc)
            assert client.get("/accounts/paper").json()["orders"] == at["orders"]
            resumed = client.post("/accounts/paper/resume").json()
            assert resumed["trading_state"] == "ACTIVE"
    finally:  # uvicorn shuts down gracefully, then lets SIGTERM end the process as asked
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        err.close()
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()
    status = json.loads(cli("agent-trade", "status", "--json").stdout)
    assert status["status"] == "stopped" and status["stop_reason"] == "stop requested"


@pytest.mark.parametrize(
    ("trade", "said"),
    [
        (("--mode", "testnet"), "agent-server --trade trades paper accounts only"),
        (("--metrics-port", "9100"), "--metrics-port does not apply to agent-server --trade"),
        (("status",), "agent-server --trade runs the loop; `status` is for agent-trade"),
        (("--data-dir", "x"), "give --data-dir before --trade"),
        (("--speed", "0"), "invalid --speed 0"),
    ],
)
def test_loop_flags_that_do_not_apply_exit_2_before_serving(cli, trade, said) -> None:
    result = cli("agent-server", "--no-ui", "--port", str(free_port()), "--trade", *trade)
    assert result.returncode == 2 and said in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
