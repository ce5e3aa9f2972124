"""Shared fixtures: real stores (SQLite always, PostgreSQL when TEST_DATABASE_URL is set,
TimescaleDB when TEST_TIMESCALEDB_URL is set: CI sets both) and a runner for the installed console scripts in a fresh, offline data directory."""

from __future__ import annotations

import atexit
import compileall
import gc
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from launcher import run_command
from loopback_openai import LoopbackOpenAI, Scripted
from sqlalchemy import create_engine, text

from arbitrage.live_books import BOOKS_THREAD
from store import Store, open_store

FIXTURES = Path(__file__).parent / "fixtures"
BIN = Path(sys.executable).parent
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL")
TIMESCALEDB_URL = os.environ.get("TEST_TIMESCALEDB_URL")

CACHE_HOME = Path(tempfile.mkdtemp(prefix="agent-test-cache-home-"))
"""The user's cache (XDG_CACHE_HOME) of every test and command in this process: it outlives a
command, as on a user's machine (the XNYS calendar is built once, market.calendar), while each
command's HOME is its test's own; never the real user's."""
atexit.register(shutil.rmtree, CACHE_HOME, ignore_errors=True)
os.environ["XDG_CACHE_HOME"] = str(CACHE_HOME)
_postgres_passed: list[str] = []


# pytest keeps the assertion-rewritten form of each test module (and of the plugins' packages)
# in __pycache__ only when bytecode may be written; with PYTHONDONTWRITEBYTECODE set, as on CI,
# every worker would parse and rewrite ~450 modules again at every run. The commands the tests
# start still see the variable.
sys.dont_write_bytecode = False

# Test clients (gradio_client's Hugging Face headers) otherwise look things up on the internet.
os.environ["HF_HUB_OFFLINE"] = "1"
_real_getaddrinfo = socket.getaddrinfo


def _is_loopback(host: object) -> bool:
    if host in (None, "", "localhost", "0.0.0.0"):  # nosec B104 - a name check, nothing binds
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reaches past the machine: a name other than loopback fails to resolve, as on a
    machine with no network, and the test that tried fails naming the host (threads too)."""
    tried: list[str] = []

    def resolve(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not _is_loopback(host):
            tried.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, f"tests stay on loopback: {host}")
        return _real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    yield
    if tried:
        pytest.fail(f"the test tried to reach beyond loopback: {sorted(set(tried))}")
    if any(t.name == BOOKS_THREAD for t in threading.enumerate()):
        pytest.fail("the test left venue book streams running (BackgroundBooks.stop not called)")


@pytest.fixture(autouse=True)
def environment_restored() -> Iterator[None]:
    """What a test leaves in the process environment goes with it (Ray's driver sets
    PYTHONBREAKPOINT): later tests start their commands from the same environment."""
    before = dict(os.environ)
    yield
    if os.environ != before:
        os.environ.clear()
        os.environ.update(before)


def schema_url(base: str) -> Iterator[str]:
    """A throwaway schema per test, so parallel workers never see each other's tables."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def database_url(backend: str) -> str:
    """The server URL for `postgresql` or `timescaledb`; skips when unset, except that CI
    (`CI=true`) fails a missing TimescaleDB rather than pass without testing it."""
    url = POSTGRES_URL if backend == "postgresql" else TIMESCALEDB_URL
    if url:
        return url
    variable = "TEST_DATABASE_URL" if backend == "postgresql" else "TEST_TIMESCALEDB_URL"
    reason = f"{backend}: set {variable} (.ci/run does)"
    if backend == "timescaledb" and os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run these tests")
    pytest.skip(reason)


BACKENDS = ["sqlite", "postgresql", "timescaledb"]


def backend_store(backend: str, folder: Path) -> Iterator[Store]:
    """The same store on every backend: plain PostgreSQL never uses the extension, the
    TimescaleDB one must. A fresh SQLite file in `folder`, or a throwaway schema."""
    if backend == "sqlite":
        opened = open_store(f"sqlite:///{folder / 'agent.db'}")
        yield opened
        opened.close()
        return
    mode = "off" if backend == "postgresql" else "require"
    for url in schema_url(database_url(backend)):
        opened = open_store(url, mode)
        yield opened
        opened.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from backend_store(request.param, tmp_path)


PACKAGES = Path(__file__).resolve().parent.parent

UI_GROUP = pytest.mark.xdist_group("ui")
"""The tests that run the UI in-process share one xdist worker (pyproject: --dist loadgroup).
Every worker imports every test module to collect it, so those modules import agent.ui (Gradio
and Plotly, ~1.4 s of CPU) inside their tests: the other worker never loads it."""


def usable_cores() -> int:
    """The cores this process may run on, capped by a cgroup v2 CPU quota (a container given 2
    CPUs of a larger host sees them all in its affinity)."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    return cores if quota == "max" else max(1, min(cores, -(-int(quota) // int(period))))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: a worker per usable core, and one more. The tests wait about 15 % of their
    time (a command starting, a loopback server answering, a stop or timeout they check): on 2
    cores, two workers left them idle 15 % of a full run (182 s), three keep them busy (4 %
    idle, 172 s). PYTEST_XDIST_AUTO_NUM_WORKERS still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return usable_cores() + 1


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A grouped test fails, saying why, if `--dist loadgroup` ignored its xdist_group mark
    (pytest 9.2 with pytest-xdist 3.8 did, without a word): the groups keep each UI server on
    one worker."""
    if (
        getattr(item.config.option, "loadgroup", False)
        and item.get_closest_marker("xdist_group")
        and "@" not in item.nodeid.rsplit("]", 1)[-1]
    ):
        pytest.fail(
            f"--dist loadgroup ignored this test's xdist_group mark (pytest {pytest.__version__}"
            " with this pytest-xdist: pytest-dev/pytest-xdist#1386); install the dev extra's "
            "pytest, which keeps the groups",
            pytrace=False,
        )


def pytest_configure(config: pytest.Config) -> None:
    """Compile the project once, before any worker starts: with PYTHONDONTWRITEBYTECODE set
    (as on CI), every command a test runs would otherwise recompile every module it loads."""
    if hasattr(config, "workerinput"):
        return
    from core.native import choose

    build = choose()  # before a test runs a command: each would warn and fail on its stderr
    if "changed since the compile" in build:
        pytest.exit(
            f"the engine runs as {build}: `pip install -e .` rebuilds it (or test the source "
            "with AGENT_PURE_PYTHON=1)",
            returncode=2,
        )
    roots = (p for p in PACKAGES.iterdir() if (p / "__init__.py").is_file() and p.name != "tests")
    for root in roots:
        compileall.compile_dir(root, quiet=1)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what collection loaded (every test module and the libraries they import) out of
    the cyclic collector's reach, as the console commands do after their imports: otherwise
    each full collection during the tests rescans those long-lived objects again (~8% of the
    CPU of the in-process tests)."""
    gc.collect()
    gc.freeze()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Runs where results arrive (the xdist controller too), so the count covers all workers."""
    if (
        report.when == "call"
        and report.passed
        and ("[postgresql" in report.nodeid or "[timescaledb" in report.nodeid)
    ):
        _postgres_passed.append(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if POSTGRES_URL or TIMESCALEDB_URL:
        terminalreporter.write_line(f"PostgreSQL tests passed: {len(_postgres_passed)}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout_s: float = 30) -> int:
    """Stop a server a test started as a user would (Ctrl-C); one that does not stop in time
    fails the test and is killed, so it cannot go on taking CPU from the rest of the suite."""
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(
            f"{proc.args[0]} still ran {timeout_s} s after {sig!r}; killed"
        ) from None


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def offline_env(tmp_path: Path) -> dict[str, str]:
    """A user's fresh machine: empty data dir, no API keys, Binance unreachable (closed port)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGENT_", "OPENAI_", "BINANCE_", "BYBIT_", "APCA_"))
    }
    env.pop("DATABASE_URL", None)
    env.update(
        AGENT_DATA_DIR=str(tmp_path / "data"),
        AGENT_BINANCE__BASE_URL="http://127.0.0.1:9",
        AGENT_BINANCE__MAX_RETRIES="0",
        AGENT_BINANCE__STREAM_URL="ws://127.0.0.1:9",
        AGENT_BYBIT__BASE_URL="http://127.0.0.1:9",
        AGENT_BYBIT__STREAM_URL="ws://127.0.0.1:9",
        AGENT_BYBIT__MAX_RETRIES="0",
        AGENT_ALPACA__DATA_URL="http://127.0.0.1:9",
        AGENT_ALPACA__PAPER_URL="http://127.0.0.1:9",
        AGENT_ALPACA__LIVE_URL="http://127.0.0.1:9",
        HOME=str(tmp_path / "home"),
        COLUMNS="200",
    )
    return env


@pytest.fixture
def cli(offline_env: dict[str, str], tmp_path: Path):
    """Run an installed console script as a real subprocess."""

    def run(command: str, *args: str, env: dict[str, str] | None = None) -> CliResult:
        proc = run_command(
            [str(BIN / command), *args], {**offline_env, **(env or {})}, tmp_path, 120
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@dataclass
class FailingLLM:
    """An OpenAI-compatible server on loopback that answers every call with a 500, and the
    environment that points the commands at it."""

    server: LoopbackOpenAI
    env: dict[str, str]


@pytest.fixture
def failing_llm() -> Iterator[FailingLLM]:
    server = LoopbackOpenAI(
        responder=lambda _: Scripted(500, {"error": {"message": "upstream down", "type": "x"}})
    ).start()
    env = {
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-test-loopback",
        "AGENT_LLM__MAX_RETRIES": "0",
        # it stands in for a paid model, so --budget-usd can cap it
        "AGENT_LLM__PRICES_HOST": "127.0.0.1",
    }
    yield FailingLLM(server, env)
    server.stop()
