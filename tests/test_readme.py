"""Every command in README.md runs as documented: each one a real subprocess, offline, with no
key, and exits with the code the README implies (0 unless the line says `[exit N]`). Commands
that build on each other run in order in one fresh data directory, as a reader would type them:
an `agent-trade` or `agent-arb` account's commands, and a block's other commands (imports, then what lists or
backtests them). Each backtest that reads only the bundled sample or a file runs alone in its
own directory, so the workers spread them. Lines that need what this machine lacks say so in
the README and are skipped with that reason. bash runs each line as typed; the console scripts
it finds are stand-ins that fork the real ones (tests/fork_client.py)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from launcher import stand_ins

from market.sample import load_sample
from tests.conftest import BIN

README = Path(__file__).parents[1] / "README.md"
STOCKS = Path(__file__).parent / "fixtures" / "stocks"
STOCK_FILES = {
    "GOOG.csv": "GOOG-1d-2004-08-19_2013-03-01_backtesting-py.csv",
    "EA-15m.csv": "EA-15m-2026-05-26_2026-06-03_yfinance.csv",
}
PROGRAMS = (
    "agent-arb",
    "agent-backtest",
    "agent-data",
    "agent-server",
    "agent-trade",
    "agent-ui",
    "agent-config",
    "AGENT_",
    "curl",
    "python3",
    "OPENAI_",
    "export",
)
SKIP = re.compile(r"\[(needs [^\]]+|runs until stopped|installs the package)\]")
EXIT = re.compile(r"\[exit (\d+)\]")
ACCOUNT = re.compile(r"--account\s+(\S+)")
BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
COMMENT = re.compile(r"\s+#.*$")
CI_LINE = re.compile(r"<!-- test-command -->.*?<!-- /test-command -->", re.S)


def readme_blocks() -> list[list[str]]:
    """Command lines of each bash block (comment lines and the CI line itself excluded)."""
    text = CI_LINE.sub("", README.read_text())
    blocks = ([line.strip() for line in block.splitlines()] for block in BLOCK.findall(text))
    kept = ([line for line in block if line.startswith(PROGRAMS)] for block in blocks)
    return [block for block in kept if block]


def _shared_state(command: str) -> str | None:
    """What a command shares with the block's earlier ones: the account it trades, steers or
    journals, the block's store, or nothing (a backtest of the bundled sample or a file)."""
    program = next(word for word in command.split() if "=" not in word)
    if program == "agent-backtest" and "--exchange" not in command and not SKIP.search(command):
        return None
    if program in ("agent-trade", "agent-arb"):
        account = ACCOUNT.search(command)
        return f"{program} account {account.group(1) if account else 'paper'}"
    return "store"


def readme_runs() -> list[list[str]]:
    """Each block split into runs that share nothing on disk, each run in README order. An
    account's run starts with the block's imports above it, which may fill the store it reads.
    A command that shares nothing runs once however often the README shows it (the quick start's
    backtest is shown again with the agent's): a second run would only repeat the first."""
    runs = []
    alone: set[str] = set()
    for block in readme_blocks():
        shared: dict[str, list[str]] = {}
        imports: list[str] = []
        for command in block:
            key = _shared_state(command)
            if key is None:
                bare = COMMENT.sub("", command)
                if bare not in alone:
                    alone.add(bare)
                    runs.append([command])
                continue
            if key != "store" and key not in shared:
                shared[key] = list(imports)
            shared.setdefault(key, []).append(command)
            if command.startswith("agent-data import"):
                imports.append(command)
        runs.extend(shared.values())
    return runs


def _user_csv(path: Path) -> None:
    """The `my.csv` the README's examples read: a day of real ETHUSDT bars, as a user exports."""
    frame = load_sample("ETHUSDT").iloc[-1_440:]
    columns = ["open_time", "open", "high", "low", "close", "volume"]
    frame[columns].rename(columns={"open_time": "timestamp"}).to_csv(path, index=False)


def _stock_csvs(folder: Path) -> None:
    """The `GOOG.csv` and `EA-15m.csv` the stock examples read: the test fixtures."""
    for name, fixture in STOCK_FILES.items():
        shutil.copyfile(STOCKS / fixture, folder / name)


def test_the_readme_has_commands_and_marks_what_it_cannot_run_here() -> None:
    commands = [c for block in readme_blocks() for c in block]
    assert len(commands) >= 25
    assert any("--sweep" in c and "--strategy" in c for c in commands)
    unmarked = [c for c in commands if "[" in c and not (SKIP.search(c) or EXIT.search(c))]
    assert not unmarked


@pytest.mark.slow
@pytest.mark.parametrize(
    "run", readme_runs(), ids=lambda run: f"{run[0].split()[0].split('=')[0]}x{len(run)}"
)
def test_readme_run(run: list[str], offline_env: dict[str, str], tmp_path: Path) -> None:
    _user_csv(tmp_path / "my.csv")
    _stock_csvs(tmp_path)
    commands = stand_ins()  # each forked, as the cli fixture runs it
    env = {**offline_env, "PATH": os.pathsep.join([str(commands), str(BIN), offline_env["PATH"]])}
    skipped = []
    for command in run:
        skip = SKIP.search(command)
        if skip:
            skipped.append(skip.group(1))
            continue
        marked = EXIT.search(command)
        proc = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )
        assert proc.returncode == (int(marked.group(1)) if marked else 0), (
            f"{command}\n{proc.stderr[-2000:]}"
        )
        assert "Traceback" not in proc.stderr, proc.stderr
    if len(skipped) == len(run):
        pytest.skip("; ".join(sorted(set(skipped))))


@pytest.mark.slow
def test_the_pytest_script_collects_what_python_m_pytest_does() -> None:
    """A developer who types `pytest` instead of the README's `python -m pytest` gets the same
    suite: tests that share helpers as `tests.*` modules collect either way."""
    run = subprocess.run(
        [
            str(BIN / "pytest"),
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_gate_corpus.py",
        ],
        cwd=README.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "test_gate_corpus.py::" in run.stdout
