"""A dead or refusing LLM endpoint, played by a hostile loopback server, as a user meets it:
`agent-backtest` and `agent-trade` stop at once on a refusal (exit 2, nothing saved) and trip a
breaker on a persistent outage (a partial report, exit 3) instead of running on abstains."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loopback_openai import LoopbackOpenAI, Scripted

from agent.cli.common import EXIT_OUTAGE
from agent.llm import LLMClient, LLMError
from config.settings import LLMSettings

DAY = ("--symbol", "BTCUSDT", "--days", "1", "--yes")
CONCURRENCY = 8  # the default: at most this many decisions are in flight when a stop comes
BREAKER = 5  # llm.breaker_failures' default


def _error(status: int, message: str) -> Scripted:
    return Scripted(status, {"error": {"message": message, "type": "invalid_request_error"}})


Hostile = Callable[[Scripted], LoopbackOpenAI]


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    """A server that gives `reply` to every request."""
    servers: list[LoopbackOpenAI] = []

    def start(reply: Scripted) -> LoopbackOpenAI:
        servers.append(LoopbackOpenAI(responder=lambda _: reply).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def _env(server: LoopbackOpenAI, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-test-loopback",
        "AGENT_LLM__MAX_RETRIES": "0",
        **extra,
    }


def _saved(offline_env: dict[str, str]) -> tuple[int, int]:
    """Backtest runs and decisions in the store (0, 0 when nothing was written)."""
    path = Path(offline_env["AGENT_DATA_DIR"]) / "agent.db"
    if not path.exists():
        return 0, 0
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        runs = conn.execute("SELECT COUNT(*) FROM backtest_runs").fetchone()[0]
        decisions = (
            conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
            if "decisions" in tables
            else 0
        )
    return runs, decisions


@pytest.mark.slow
@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (_error(401, "Incorrect API key provided"), "set OPENAI_API_KEY"),
        (_error(403, "model not allowed for this key"), "set OPENAI_API_KEY"),
        (_error(400, "The model `gpt-9` does not exist"), "check AGENT_LLM__MODEL"),
    ],
    ids=["401", "403", "400"],
)
def test_a_refused_key_or_request_stops_the_backtest_at_once_and_saves_nothing(
    cli, offline_env, tmp_path: Path, hostile: Hostile, reply: Scripted, said: str
) -> None:
    server = hostile(reply)
    out = tmp_path / "run.json"
    result = cli("agent-backtest", *DAY, "--json", str(out), env=_env(server))

    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert server.base_url in errors[0] and said in errors[0]
    assert len(server.requests) <= CONCURRENCY  # not one request per planned decision
    assert not out.exists()
    assert _saved(offline_env) == (0, 0)


def test_a_base_url_that_is_not_a_url_is_one_line_before_anything_runs(cli) -> None:
    result = cli("agent-backtest", *DAY, env={"OPENAI_BASE_URL": "not a url"})
    assert result.returncode == 2
    assert "OPENAI_BASE_URL 'not a url' is not an http(s) URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_base_url_no_parser_reads_stops_only_the_runs_that_use_the_model(cli) -> None:
    """Was a ValueError traceback from every command, a classic backtest's too."""
    broken = {"OPENAI_BASE_URL": "http://u:pw-9931@[::1:11434/v1"}
    classic = cli("agent-backtest", "--strategy", "sma_cross", "--days", "1", env=broken)
    assert classic.returncode == 0, classic.stderr
    agent = cli("agent-backtest", *DAY, env=broken)
    assert agent.returncode == 2
    (line,) = [row for row in agent.stderr.splitlines() if row.startswith("error:")]
    assert (
        "Traceback" not in agent.stderr
        and "OPENAI_BASE_URL 'http://u:***@[::1:11434/v1' is not an http(s) URL" in line
    )
    assert "pw-9931" not in classic.stdout + classic.stderr + agent.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("reply", "env", "cause"),
    [
        (_error(500, "The server had an error"), {}, "server_error"),
        (Scripted(200, ""), {}, "bad_response"),
        (Scripted(200, {}, delay_s=3), {"AGENT_LLM__TIMEOUT_S": "0.2"}, "timeout"),
    ],
    ids=["500", "empty", "timeout"],
)
def test_a_persistent_outage_trips_the_breaker_with_a_partial_report(
    cli, tmp_path: Path, hostile: Hostile, reply: Scripted, env: dict, cause: str
) -> None:
    server = hostile(reply)
    out = tmp_path / "run.json"
    result = cli("agent-backtest", *DAY, "--json", str(out), env=_env(server, **env))

    assert result.returncode == EXIT_OUTAGE, result.stderr
    assert f"failed {BREAKER} decisions in a row" in result.stderr and cause in result.stderr
    agent = json.loads(out.read_text())["agent"]
    assert agent["partial"] is True and agent["stopped"] == "outage"
    assert agent["decisions"] < BREAKER + CONCURRENCY < agent["planned_decisions"]
    assert set(agent["llm"]["abstains"]) == {cause}
    assert len(server.requests) < BREAKER + CONCURRENCY


@pytest.mark.slow
def test_retries_show_in_the_terminal_summary_and_the_json(
    cli, tmp_path: Path, hostile: Hostile
) -> None:
    server = hostile(_error(503, "overloaded"))
    out = tmp_path / "run.json"
    env = _env(server, AGENT_LLM__MAX_RETRIES="1", AGENT_LLM__MAX_RETRY_AFTER_S="0.01")
    result = cli("agent-backtest", *DAY, "--concurrency", "1", "--json", str(out), env=env)

    assert result.returncode == EXIT_OUTAGE, result.stderr
    # Decisions 1 and 2 retry once each; by then 4 requests failed in a row, and the 5th
    # (decision 3's first) stops the retrying: 5 failed decisions, 2 retries.
    assert json.loads(out.read_text())["agent"]["llm"]["retries"] == 2
    assert re.search(rf"retries / failed requests\W+2 / {BREAKER}\b", result.stdout)


@pytest.mark.slow
def test_a_refused_key_stops_the_trading_loop_and_status_says_why(cli, hostile: Hostile) -> None:
    server = hostile(_error(401, "Incorrect API key provided"))
    env = _env(server)
    args = ("--feed", "replay", "--speed", "20000", "--decide-every", "1", "--yes")
    result = cli("agent-trade", *args, "--max-bars", "30", env=env)

    assert result.returncode == 2, result.stderr
    assert "refused the run" in result.stderr and "Traceback" not in result.stderr
    assert len(server.requests) == 1
    shown = cli("agent-trade", "status", "--json", env=env)
    status = json.loads(shown.stdout)
    assert status["status"] == "stopped" and "set OPENAI_API_KEY" in status["stop_reason"]
    assert status["orders"] == 0


def test_a_dead_endpoint_is_not_retried_once_it_failed_the_breaker_count_in_a_row() -> None:
    server = LoopbackOpenAI(responder=lambda _: _error(503, "overloaded")).start()
    settings = LLMSettings(max_retries=4, breaker_failures=3, max_retry_after_s=0.01)
    client = LLMClient(settings, api_key="sk-loopback", base_url=server.base_url, cache_dir=None)
    messages = [{"role": "user", "content": "hi"}]
    try:
        attempts = []
        for _ in range(3):
            with pytest.raises(LLMError) as failed:
                client.complete(messages, prompt_version="v")
            attempts.append(failed.value.attempts)
    finally:
        client.close()
        server.stop()
    assert attempts == [3, 1, 1]  # retried until 3 requests had failed in a row, then not
    assert len(server.requests) == 5


@pytest.mark.slow
@pytest.mark.parametrize("command", ["agent-backtest", "agent-trade"])
def test_a_refused_key_during_the_format_probe_stops_the_run_in_one_line(
    cli, hostile: Hostile, tmp_path: Path, command: str
) -> None:
    """With llm.decision_format=probe the first decision probes the endpoint; a 401 there was
    a traceback (agent-backtest) or a traceback per decision on an ACTIVE loop (agent-trade),
    where the tools format stops the run with one line."""
    server = hostile(_error(401, "Incorrect API key provided"))
    env = _env(server, AGENT_LLM__DECISION_FORMAT="probe", AGENT_LLM__MAX_RETRIES="0")
    args = (
        DAY
        if command == "agent-backtest"
        else (
            "--feed",
            "replay",
            "--speed",
            "20000",
            "--decide-every",
            "1",
            "--yes",
            "--max-bars",
            "30",
        )
    )
    result = cli(command, *args, env=env)
    assert result.returncode == 2, result.stderr
    assert "refused the run" in result.stderr and "Traceback" not in result.stderr
