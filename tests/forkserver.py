"""A fork server for the tests' console commands: it imports the third-party libraries every
command loads (pandas, numpy, SQLAlchemy, pydantic, httpx, ~0.5 s of CPU a start on a 2-core
machine) and the commands' own modules (their pydantic models and SQLModel tables are built at
import: 75-190 ms, a third to two thirds of a short command), then forks one process per
command. The child is a separate process with its own pid, argv, environment, working directory,
standard streams and exit status; it runs the installed console script as `__main__`. What our
modules read as they import (AGENT_PURE_PYTHON) is a startup variable: a command that sets it
otherwise starts afresh, as the import-weight checks and the launcher's comparison do, so every
command's imports also run from a cold interpreter somewhere in the suite. The UI's and the
server's modules are left to the command: they set their libraries' environment as they load.

Started by `tests/launcher.py` with the pytest worker's environment; it exits when the worker
closes its standard input. Protocol, one connection per command on a Unix socket: the client
sends a 4-byte length, a JSON request (argv, env, cwd) and the command's stdin, stdout and stderr
as file descriptors; the server answers a JSON line with the child's pid, then one with its
wait status."""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import os
import random
import select
import signal
import socket
import sys
import tempfile
from pathlib import Path

from fork_client import LENGTH

PRELOAD = (
    "numpy",
    "pandas",
    "sqlite3",
    "sqlalchemy",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql",
    "sqlmodel",
    "pydantic",
    "pydantic_settings",
    "dotenv",
    "httpx",
    "httpcore",
    "websockets",
    "websockets.asyncio.client",
    "tenacity",
    "diskcache",
    "rich.console",
    "rich.table",
    "rich.progress",
    "rich.logging",
    "ta",
    "dateutil",
    "asyncio",
    "ssl",
    "certifi",
    "zoneinfo",
    "uuid",
    "argparse",
    "logging",
)
ROOT = Path(__file__).resolve().parent.parent
PROJECT = tuple(
    sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests")
)
"""The project's own packages."""
PROJECT_PRELOAD = (
    "agent.cli.backtest",
    "agent.cli.backtest_run",
    "agent.cli.agent_backtest",
    "agent.cli.trade",
    "agent.cli.trade_run",
    "agent.cli.trade_status",
    "agent.cli.data",
    "agent.cli.config",
    "agent.cli.arb",
    "agent.cli.arb_run",
    "agent.decide",
    "agent.graph",
    "agent.report",
    "agent.estimate",
    "backtest.scorecard",
    "store.tables",
)
"""The commands' modules and those they load to run; importing them loads what they need."""
_PR_SET_PDEATHSIG = 1


def preload(absent: list[str]) -> None:
    """`absent`: the modules a command marks absent before its imports (the launcher's)."""
    for name in absent:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    for name in PRELOAD:
        importlib.import_module(name)
    ours = sorted(n for n in sys.modules if n.split(".")[0] in PROJECT)
    if ours:
        raise SystemExit(f"forkserver: a library's preload imported the project's modules: {ours}")
    for name in PROJECT_PRELOAD:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()


def _die_with_parent() -> None:
    """A command the tests left running (a failed test's loop) ends with its worker: each
    process of the chain gets SIGKILL when its parent goes (Linux's PR_SET_PDEATHSIG)."""
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent went before the request took effect
        os._exit(1)


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    head, fds, _, _ = socket.recv_fds(conn, LENGTH.size, 3)
    (size,) = LENGTH.unpack(head)
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ConnectionError("forkserver: the request was cut short")
        body += chunk
    return json.loads(body), fds


def _become_command(request: dict, fds: list[int]) -> None:
    """In the child: take the request's streams, place and environment, then run the script
    as Python runs a script, so its exit (status, exceptions, atexit, flushing) is Python's."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    tempfile.tempdir = None
    random.seed()
    if "numpy.random" in sys.modules:
        sys.modules["numpy.random"].seed()
    script = request["argv"][0]
    sys.argv = list(request["argv"])
    sys.path[0] = os.path.dirname(script)
    import runpy

    runpy.run_path(script, run_name="__main__")
    raise SystemExit(0)


def _supervise(conn: socket.socket) -> None:
    """In a supervisor forked per command: fork the command, report its pid and its status."""
    _die_with_parent()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    request, fds = _receive(conn)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _die_with_parent()
        _become_command(request, fds)
    for fd in fds:
        os.close(fd)
    conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    _, status = os.waitpid(pid, 0)
    conn.sendall(json.dumps({"status": status}).encode() + b"\n")
    conn.close()
    os._exit(0)


def serve(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        readable, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 1):
            return  # the pytest worker is gone
        if listener in readable:
            conn, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                _supervise(conn)
            conn.close()


if __name__ == "__main__":
    _die_with_parent()
    preload(sys.argv[2:])
    serve(sys.argv[1])
