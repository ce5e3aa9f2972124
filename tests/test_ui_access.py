"""`agent-ui` off loopback as a user starts it: a real subprocess on 0.0.0.0, reached over
127.0.0.1 (and 127.0.0.2 as a second client): refused without a login, a login wall before any
page with one, a generated token that works and is printed once, and throttled guessing."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import BIN, stop

from agent.loop_state import LoopState
from store import open_store
from store.tables import TradingLoopRow

RUNNING = "Running on local URL"
# One worker runs them all, so the module's `agent-ui` (~5 s of CPU to start) starts once, not
# once on each worker that would take one of its tests.
pytestmark = pytest.mark.xdist_group("ui-access")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_off_loopback_without_auth_exits_2_with_one_line(cli) -> None:
    result = cli("agent-ui", "--host", "0.0.0.0", "--port", str(_free_port()))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: refusing to serve the chat, which can approve orders, on 0.0.0.0 without a "
        "login: anyone who can reach this machine could use it; pass --auth user:password (or "
        "AGENT_UI_AUTH), --auth token for a generated one, or keep the default --host 127.0.0.1"
    )
    assert RUNNING not in result.stdout


def test_behind_a_reverse_proxy_without_auth_exits_2_with_one_line(cli) -> None:
    """A proxy publishing the loopback port opens the chat to everyone it serves."""
    public = ("--public-origin", "https://trader.example.com")
    result = cli("agent-ui", *public, "--port", str(_free_port()))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: refusing to serve the chat, which can approve orders, on "
        "https://trader.example.com without a login: anyone who can reach this machine could "
        "use it; pass --auth user:password (or AGENT_UI_AUTH), --auth token for a generated one"
    )
    assert RUNNING not in result.stdout


@pytest.mark.slow
def test_insecure_no_auth_is_refused_while_a_live_account_exists(cli, offline_env) -> None:
    data = Path(offline_env["AGENT_DATA_DIR"])
    store = open_store(f"sqlite:///{data / 'agent.db'}")
    state = LoopState(account="lv", mode="live", initial_cash=1_000)
    with store.engine.begin() as conn:
        conn.execute(
            TradingLoopRow.__table__.insert().values(
                account="lv", updated_ms=0, state_json=state.model_dump_json()
            )
        )
    store.close()
    result = cli("agent-ui", "--host", "0.0.0.0", "--insecure-no-auth")
    assert result.returncode == 2
    assert "--insecure-no-auth refused: live account(s) lv are in this store" in result.stderr
    both = cli("agent-ui", "--auth", "a:b", "--insecure-no-auth")
    assert both.returncode == 2 and "contradict each other" in both.stderr


@pytest.mark.slow
def test_a_page_rebinding_its_name_to_loopback_cannot_drive_the_chat(offline_env, tmp_path) -> None:
    """Was 200: a page whose name resolved to 127.0.0.1 got its order approved through the
    chat and could halt or resume the loop account, the browser treating it as same-origin."""
    port, log = _free_port(), tmp_path / "output.log"
    env = {**offline_env, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1"}
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [str(BIN / "agent-ui"), "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    rebound = f"rebind.evil.example:{port}"
    try:
        _wait_for(RUNNING, log, proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            page = {"Host": rebound, "Origin": f"http://{rebound}"}
            assert client.get("/", headers=page).status_code == 403
            for name, data in (("chat", ["buy BTC", [], "t"]), ("approve", [[], "t"]),
                               ("kill_switch", ["chat"])):  # fmt: skip
                refused = client.post(f"/gradio_api/call/{name}", json={"data": data}, headers=page)
                assert refused.status_code == 403, refused.text
                assert "not as rebind.evil.example" in refused.json()["detail"]
            assert not (Path(offline_env["AGENT_DATA_DIR"]) / "KILL-chat").exists()

            own = {"Origin": f"http://127.0.0.1:{port}"}
            asked = client.post(
                "/gradio_api/call/kill_switch", json={"data": ["chat"]}, headers=own
            )
            event = asked.json()["event_id"]
            answer = client.get(f"/gradio_api/call/kill_switch/{event}").text
            assert "event: complete" in answer, answer
            assert (Path(offline_env["AGENT_DATA_DIR"]) / "KILL-chat").exists()
    finally:
        stop(proc)


def _wait_for(line: str, log: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while line not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


@dataclass
class Served:
    url: str
    token: str
    log: Path  # everything the server prints and logs (stdout and stderr)
    data_dir: Path
    proc: subprocess.Popen


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("ui-access")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "OPENAI_", "BINANCE_"))
    }
    env.update(
        AGENT_DATA_DIR=str(home / "data"),
        AGENT_BINANCE__BASE_URL="http://127.0.0.1:9",
        AGENT_LOG_LEVEL="DEBUG",
        HOME=str(home),
        GRADIO_ANALYTICS_ENABLED="False",
        NO_PROXY="127.0.0.1,localhost",
    )
    port, log = _free_port(), home / "output.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [str(BIN / "agent-ui"), "--host", "0.0.0.0", "--port", str(port), "--auth", "token"],
            env=env,
            cwd=home,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(RUNNING, log, proc)
        found = re.search(r"login: user agent, token (\S+) \(printed only now", log.read_text())
        assert found, log.read_text()
        yield Served(f"http://127.0.0.1:{port}", found.group(1), log, home / "data", proc)
    finally:
        stop(proc)


@pytest.mark.slow
def test_the_login_wall_comes_before_any_page(served: Served) -> None:
    with httpx.Client(base_url=served.url) as client:
        assert client.get("/config").status_code == 401
        assert client.get("/gradio_api/info").status_code == 401
        page = client.get("/")
        assert page.status_code == 200 and '"auth_required":true' in page.text.replace(" ", "")
        assert "Kill switch" not in page.text and "Approve" not in page.text


@pytest.mark.slow
def test_the_printed_token_signs_in_and_appears_in_no_log(served: Served) -> None:
    with httpx.Client(base_url=served.url) as client:
        refused = client.post("/login", data={"username": "agent", "password": "guess"})
        assert refused.status_code == 400
        signed = client.post("/login", data={"username": "agent", "password": served.token})
        assert signed.status_code == 200
        config = client.get("/config")
        assert config.status_code == 200 and "Kill switch" in config.text
    for path in served.data_dir.rglob("*"):
        if path.is_file():
            assert served.token.encode() not in path.read_bytes(), path
    printed = served.log.read_text()
    assert printed.count(served.token) == 1  # the start line only
    assert " DEBUG " in printed  # though the log is on, at its most verbose


@pytest.mark.slow
def test_repeated_failed_logins_are_throttled_per_client(served: Served) -> None:
    guesser = httpx.Client(
        base_url=served.url, transport=httpx.HTTPTransport(local_address="127.0.0.3")
    )
    with guesser:
        codes = [
            guesser.post("/login", data={"username": "agent", "password": f"guess{i}"}).status_code
            for i in range(6)
        ]
        assert codes == [400] * 5 + [429]
        # Locked out: even the right token is not tried, and the wait is stated.
        locked = guesser.post("/login", data={"username": "agent", "password": served.token})
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    other = httpx.Client(
        base_url=served.url, transport=httpx.HTTPTransport(local_address="127.0.0.4")
    )
    with other:
        fine = other.post("/login", data={"username": "agent", "password": served.token})
        assert fine.status_code == 200


@pytest.mark.slow
def test_a_service_managers_stop_ends_the_ui_as_ctrl_c_does(served: Served) -> None:
    """SIGTERM (docker stop, systemd) closes the server and the store and exits 0: the store's
    write-ahead log is folded back and removed, as only a closed store does. Last: it stops
    the module's server."""
    database = served.data_dir / "agent.db"
    assert database.with_name("agent.db-wal").exists()  # open, and written to
    assert stop(served.proc, signal.SIGTERM) == 0, served.log.read_text()[-2000:]
    assert not database.with_name("agent.db-wal").exists()
    assert "closing server" in served.log.read_text()
