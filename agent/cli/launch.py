"""Console-script entry points. Each command's modules (pandas, SQLAlchemy, pydantic and ours)
are imported with the cyclic collector paused, then frozen out of its reach: imports make
hundreds of thousands of long-lived objects and next to no garbage, yet at the default
thresholds the collector rescans them all several times while they load and again during the
run, a quarter to a third of a short backtest's CPU. The collector stays on for what the
command itself makes.

numpy's OpenBLAS starts a thread per core when numpy is imported, and the threads spin while
the import goes on: 40-50 ms of CPU on two cores, a tenth of a 20k-bar backtest, and wall time
on a busy machine. No command does linear algebra, so they get one BLAS thread unless the
user's environment says otherwise (child processes, e.g. a sweep's workers, inherit it).
Likewise pydantic looks for plugins when it builds its first model by reading the metadata of
every installed distribution, 10-15 ms; the commands use none, so the search is off unless the
environment sets PYDANTIC_DISABLE_PLUGINS (empty turns plugins back on). And httpx's package
imports its own command-line client whenever click, pygments and rich happen to be installed
(13-15 ms of a first request's wait); no command runs it, so it is marked absent and httpx
keeps the stub it has for a machine without them.

Once a command has returned its exit code, Python's own teardown would take another 25-35 ms
to free every module and object one by one, memory the OS reclaims at once. The command exits
as soon as its output is flushed and the exit handlers (logging, temporary files, Ray) have
run, unless a thread of its own is still working: then Python's teardown waits for it."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from importlib import import_module

from core.collector import imports_frozen

ENVIRONMENT_DEFAULTS = {"OPENBLAS_NUM_THREADS": "1", "PYDANTIC_DISABLE_PLUGINS": "__all__"}
"""Set before a command's imports unless the user's environment says otherwise."""
UNUSED_MODULES = ("httpx._main",)
"""Imported by a dependency for a feature no command uses: absent, its import fails at once."""


def _launch(module: str) -> int:
    for name, value in ENVIRONMENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    for name in UNUSED_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    with imports_frozen():
        main = import_module(module).main
    code = main()
    _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """Exit with `code` without the interpreter's teardown, or return where that could lose
    anything: an exit code that is not a number, a thread still running (its work, and the
    executors Python joins at exit), or output that cannot be flushed (a closed pipe keeps
    Python's own report of it). What the exit handlers write is flushed too."""
    if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 255:
        return
    main = threading.main_thread()
    if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    run_handlers = getattr(atexit, "_run_exitfuncs", None)  # CPython's; elsewhere: Python's exit
    if run_handlers is not None and _flushed():
        run_handlers()
        if _flushed():
            os._exit(code)


def _flushed() -> bool:
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return False
    return True


def backtest() -> int:
    return _launch("agent.cli.backtest")


def data() -> int:
    return _launch("agent.cli.data")


def ui() -> int:
    return _launch("agent.cli.ui")


def trade() -> int:
    return _launch("agent.cli.trade")


def config() -> int:
    return _launch("agent.cli.config")


def server() -> int:
    return _launch("server.cli")


def arb() -> int:
    return _launch("agent.cli.arb")
