"""The client side of `tests/forkserver.py`, standard library only: the launcher uses it in a
pytest worker, and a command stand-in uses it where bash runs a command as typed (the README's
lines). The stand-in is a file named like the console script, first on the PATH, run by a bare
interpreter (`-IS`: no site, no environment), so it costs ~20 ms instead of the ~0.4 s a command
spends importing the libraries; it hands its own streams, arguments, environment and directory
to the fork server and exits with the command's status."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Mapping
from pathlib import Path

LENGTH = struct.Struct("!I")
STARTUP_VARIABLES = (
    "PYTHON",
    "LC_",
    "LANG",
    "TMPDIR",
    "OPENBLAS_",
    "OMP_",
    "PYDANTIC_",
    "AGENT_PURE_PYTHON",
)
"""What Python, the preloaded libraries or our modules read from the environment only as they
start: a command whose values differ from the server's starts afresh."""
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def startup(env: Mapping[str, str], defaults: Mapping[str, str]) -> dict[str, str]:
    """The startup variables a command sees, with the defaults it sets before its imports."""
    return {k: v for k, v in {**defaults, **env}.items() if k.startswith(STARTUP_VARIABLES)}


def send_request(
    path: str, argv: list[str], env: Mapping[str, str], cwd: str, fds: list[int]
) -> socket.socket:
    """Ask the server at `path` to run `argv` with these streams (stdin, stdout, stderr)."""
    request = json.dumps({"argv": argv, "env": dict(env), "cwd": cwd}).encode()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    socket.send_fds(conn, [LENGTH.pack(len(request))], fds)
    conn.sendall(request)
    return conn


class Replies:
    """The server's JSON lines on one connection: the command's pid, then its wait status."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._buffer = b""

    def next(self, timeout: float | None) -> dict:
        self._conn.settimeout(timeout)
        while b"\n" not in self._buffer:
            try:
                chunk = self._conn.recv(4096)
            except BlockingIOError:  # timeout 0: nothing yet
                raise TimeoutError from None
            if not chunk:
                raise ConnectionError("the fork server closed the connection")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)


def write_stand_in(
    folder: Path,
    script: Path,
    server: str,
    defaults: Mapping[str, str],
    expected: Mapping[str, str],
) -> Path:
    """An executable named like `script` that runs it through the server at `server`, or
    execs it afresh where the environment's startup variables (with the command's `defaults`)
    are not the server's, `expected`."""
    stand_in = folder / script.name
    stand_in.write_text(
        f"#!{sys.executable} -IS\n"
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from fork_client import run_as\n"
        f"run_as({server!r}, {str(script)!r}, {json.dumps(dict(defaults))!r}, "
        f"{json.dumps(dict(expected))!r})\n"
    )
    stand_in.chmod(0o755)
    return stand_in


def run_as(server: str, script: str, defaults: str, expected: str) -> None:
    """Be the command `script` with this process's arguments, streams and environment."""
    argv, env = [script, *sys.argv[1:]], dict(os.environ)
    if startup(env, json.loads(defaults)) != json.loads(expected):
        os.execv(script, argv)
    replies = Replies(send_request(server, argv, env, os.getcwd(), [0, 1, 2]))
    pid = replies.next(None)["pid"]
    for sig in FORWARDED:  # Ctrl-C or a timeout's kill of the shell reaches the command
        signal.signal(sig, lambda number, _frame: os.kill(pid, number))
    code = os.waitstatus_to_exitcode(replies.next(None)["status"])
    if code < 0:  # killed by a signal: end the same way, as the shell would see it
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)
