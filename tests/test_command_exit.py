"""A command that has returned its exit code leaves without Python's teardown (agent.cli.launch):
nothing it wrote, registered or started may be lost on the way out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _exit_with(code: str, body: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """A process that runs `body`, then leaves as a command does once its main returned `code`;
    its output is buffered, as a user's is by default."""
    script = f"from agent.cli.launch import _exit_now\n{body}\n_exit_now({code})\nprint('teardown')"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )


def test_output_and_exit_handlers_are_complete_and_the_code_is_kept(tmp_path: Path) -> None:
    body = (
        "import atexit, logging\n"
        "logging.basicConfig(filename='run.log', format='%(message)s')\n"
        "logging.warning('logged before the exit')\n"
        "atexit.register(lambda: print('handler ran', end=''))\n"
        "print('x' * 1_000_000, end='')"
    )
    done = _exit_with("3", body, tmp_path)
    assert done.returncode == 3
    # all of it, then what the handler wrote (unterminated, still flushed), and no teardown
    assert done.stdout == "x" * 1_000_000 + "handler ran"
    assert (tmp_path / "run.log").read_text() == "logged before the exit\n"


def test_a_thread_still_working_is_waited_for(tmp_path: Path) -> None:
    body = (
        "import threading, time\n"
        "def work():\n"
        "    time.sleep(0.3)\n"
        "    open('done', 'w').write('written')\n"
        "threading.Thread(target=work).start()"
    )
    done = _exit_with("0", body, tmp_path)
    assert done.returncode == 0
    assert (tmp_path / "done").read_text() == "written"
    assert done.stdout == "teardown\n"  # Python's own exit, after the thread


@pytest.mark.parametrize("code", ["None", "'a message'", "True", "300"])
def test_an_exit_that_is_not_a_status_leaves_as_python_does(code: str, tmp_path: Path) -> None:
    done = _exit_with(code, "", tmp_path)
    assert done.returncode == 0 and done.stdout == "teardown\n"
