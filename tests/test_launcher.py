"""The tests' commands run forked from a server that has imported the libraries
(`tests/launcher.py`), directly or through a stand-in a shell finds on its PATH (the README's
lines): a forked command must be the command a user starts, in what it prints, writes and exits
with, and a command that outlives its time is killed, not waited on."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from launcher import ForkServer, forks, run_command, stand_ins

from tests.conftest import BIN

COMMANDS = [
    ("agent-backtest", "--strategy", "sma_cross", "--symbol", "BTCUSDT", "--days", "1"),
    ("agent-backtest", "--symbol", "BTCUSDT", "--days", "1", "--json", "report.json"),
    ("agent-backtest", "--strategy", "sma_cros"),  # a user error: exit 2 naming it
    ("agent-trade", "status"),  # no account yet: exit 2
    ("agent-config", "show"),
    ("agent-arb", "scan", "--exchange", "binance,bybit", "--symbol", "BTCUSDT"),
]
RUN_NUMBER = re.compile(r"run #\d+")


def _afresh(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def _shell_env(env: dict[str, str]) -> dict[str, str]:
    """The README test's PATH: the stand-ins first, then the real console scripts."""
    commands = stand_ins()
    return {**env, "PATH": os.pathsep.join([str(commands), str(BIN), env["PATH"]])}


def _typed(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess:
    """As the README test runs a line: bash finds the command by name."""
    line = shlex.join([Path(argv[0]).name, *argv[1:]])
    return _afresh(["bash", "-c", line], _shell_env(env), cwd, timeout)


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_forked_command_prints_writes_and_exits_as_one_started_afresh(
    command: tuple[str, ...], offline_env: dict[str, str], tmp_path: Path
) -> None:
    argv = [str(BIN / command[0]), *command[1:]]
    assert forks(offline_env)
    outcomes = []
    for way, start in (("fork", run_command), ("typed", _typed), ("afresh", _afresh)):
        cwd = tmp_path / way
        cwd.mkdir()
        env = {**offline_env, "AGENT_DATA_DIR": str(tmp_path / "data")}  # one store, in turn
        done = start(argv, env, cwd, 120)
        written = {p.name: p.read_text() for p in cwd.iterdir()}
        outcomes.append(
            (done.returncode, done.stdout, RUN_NUMBER.sub("run #N", done.stderr), written)
        )
    forked, typed, afresh = outcomes
    assert forked == afresh
    assert typed == afresh
    assert forked[1] or forked[2]  # each command says something


def test_a_stand_in_starts_its_command_afresh_where_the_interpreter_must_start_differently(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    """`-X importtime` is read as Python starts: a forked command could not honour it."""
    env = {**offline_env, "PYTHONPROFILEIMPORTTIME": "1"}
    done = _typed([str(BIN / "agent-config"), "show"], env, tmp_path, 120)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^import time: .*\|\s+pydantic$", done.stderr, re.M)  # preloaded if forked


@pytest.mark.slow
def test_ctrl_c_at_a_stand_in_stops_its_command_as_it_stops_a_user_s(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    loop = ["agent-trade", "--feed", "replay", "--speed", "1", "--strategy", "sma_cross"]
    shell = subprocess.Popen(
        ["bash", "-c", shlex.join(loop)],
        env=_shell_env(offline_env),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    said = []
    for line in shell.stderr:  # type: ignore[union-attr]
        said.append(line)
        if line.startswith("kill switch:"):  # its last line before the loop starts
            break
    time.sleep(0.5)
    shell.send_signal(signal.SIGINT)
    _, rest = shell.communicate(timeout=60)
    err = "".join(said) + rest
    assert shell.returncode == 0, err
    assert "SIGINT: finishing the current step, then stopping" in err
    assert "loop stopped: stop requested" in err


@pytest.mark.slow
def test_a_forked_command_past_its_time_is_killed(offline_env: dict[str, str], tmp_path: Path):
    loop = [str(BIN / "agent-trade"), "--feed", "replay", "--speed", "1", "--strategy", "sma_cross"]
    with pytest.raises(subprocess.TimeoutExpired) as expired:
        run_command(loop, offline_env, tmp_path, 3)
    assert "strategy: sma_cross" in expired.value.stderr  # it ran, and what it printed is kept
    assert not _alive(expired.value.pid)  # killed and reaped


@pytest.mark.slow
def test_a_command_left_running_ends_with_its_fork_server(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    """A failed test can leave its loop running; it goes when the worker's server does."""
    server = ForkServer()
    loop = [str(BIN / "agent-trade"), "--feed", "replay", "--speed", "1", "--strategy", "sma_cross"]
    proc = server.start(loop, offline_env, tmp_path)
    assert proc.poll() is None
    server.close()
    deadline = time.monotonic() + 10
    while _alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(proc.pid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except OSError:
        return False
    return state != "Z"
