"""Runs a console command as its own process, forked from `tests/forkserver.py` once that has
imported the libraries, or started afresh where the fork server could not run it as Python would
(an environment that changes how the interpreter or those libraries start). The README's
commands run as typed in bash, whose PATH finds a stand-in for each console script that forks
it the same way (`stand_ins`). The import-weight checks and the long-running loops start afresh,
so every command is also run from a cold interpreter somewhere in the suite."""

from __future__ import annotations

import atexit
import locale
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from fork_client import Replies, send_request, startup, write_stand_in

from agent.cli.launch import ENVIRONMENT_DEFAULTS, UNUSED_MODULES

SERVER = Path(__file__).with_name("forkserver.py")
_WORKER_ENV = dict(os.environ)  # as the worker started, before any test changes it


class ForkServer:
    def __init__(self) -> None:
        self._folder = tempfile.mkdtemp(prefix="forkserver-")
        self.path = os.path.join(self._folder, "socket")
        # the libraries load as in a command, with the defaults it sets before its imports
        env = {**ENVIRONMENT_DEFAULTS, **_WORKER_ENV}
        self._proc = subprocess.Popen(
            [sys.executable, str(SERVER), self.path, *UNUSED_MODULES],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self._proc.stdout is not None
        ready = self._proc.stdout.readline()
        if ready != b"ready\n":
            raise RuntimeError(f"the fork server did not start (exit {self._proc.wait()})")
        self._started_with = startup(env, ENVIRONMENT_DEFAULTS)
        self._stand_ins: Path | None = None

    def can_run(self, env: dict[str, str]) -> bool:
        return startup(env, ENVIRONMENT_DEFAULTS) == self._started_with

    def start(self, argv: list[str], env: dict[str, str], cwd: Path) -> ForkedProcess:
        # owned by the ForkedProcess, which reads them when the command has ended
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115
        with open(os.devnull, "rb") as stdin:
            fds = [stdin.fileno(), out.fileno(), err.fileno()]
            conn = send_request(self.path, argv, env, str(cwd), fds)
        return ForkedProcess(argv, conn, out, err)

    def stand_ins(self) -> Path:
        """A folder of stand-ins for the installed `agent-*` scripts (tests/fork_client.py), to
        put first on a PATH."""
        if self._stand_ins is None:
            self._stand_ins = Path(self._folder) / "bin"
            self._stand_ins.mkdir()
            for script in sorted(Path(sys.executable).parent.glob("agent-*")):
                write_stand_in(
                    self._stand_ins, script, self.path, ENVIRONMENT_DEFAULTS, self._started_with
                )
        return self._stand_ins

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=10)
        shutil.rmtree(self._folder, ignore_errors=True)


class ForkedProcess:
    """What the tests use of `subprocess.Popen` (pid, poll, wait, signals, communicate), for a
    command forked by the server; its output is kept in files and read when it has ended."""

    def __init__(self, args: list[str], conn: socket.socket, out, err) -> None:  # type: ignore[no-untyped-def]
        self.args = args
        self.returncode: int | None = None
        self._conn, self._out, self._err = conn, out, err
        self._replies = Replies(conn)
        self.pid: int = self._replies.next(timeout=10)["pid"]

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            try:
                status = self._replies.next(timeout)["status"]
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
            self.returncode = os.waitstatus_to_exitcode(status)
            self._conn.close()
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(timeout=0)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return _text(self._out), _text(self._err)

    def __del__(self) -> None:
        self._out.close()
        self._err.close()
        self._conn.close()


def _text(stream) -> str:  # type: ignore[no-untyped-def]
    """As `subprocess.run(text=True)` decodes: the locale's encoding, universal newlines."""
    stream.seek(0)
    data = stream.read().decode(locale.getpreferredencoding(False))
    return data.replace("\r\n", "\n").replace("\r", "\n")


_server: ForkServer | None = None


def _started() -> ForkServer:
    global _server
    if _server is None:
        _server = ForkServer()
        atexit.register(_server.close)
    return _server


def forks(env: dict[str, str]) -> bool:
    """Whether a command with this environment runs forked (else it starts afresh)."""
    return _started().can_run(env)


def stand_ins() -> Path:
    """A folder whose files run the console scripts forked when a shell runs them by name."""
    return _started().stand_ins()


def popen(argv: list[str], env: dict[str, str], cwd: Path | None = None):  # type: ignore[no-untyped-def]
    """A running command, as `subprocess.Popen(..., stdout=PIPE, stderr=PIPE, text=True)`."""
    if not forks(env):
        return subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd
        )
    assert _server is not None
    return _server.start(argv, env, cwd or Path.cwd())


def run_command(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    if not forks(env):
        return subprocess.run(
            argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
        )
    assert _server is not None
    proc = _server.start(argv, env, cwd)
    try:
        out, err = proc.communicate(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)  # reaped once its supervisor reports it
        out, err = proc.communicate()
        expired = subprocess.TimeoutExpired(argv, timeout, out, err)
        expired.pid = proc.pid  # type: ignore[attr-defined]
        raise expired from None
    return subprocess.CompletedProcess(argv, proc.wait(), out, err)
