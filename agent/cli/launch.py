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
environment sets PYDANTIC_DISABLE_PLUGINS (empty turns plugins back on).

A command that is done exits without the interpreter's teardown: unloading a thousand modules
one dict at a time is 25-40 ms of CPU and changes nothing a user sees once the exit handlers
have run and the output is flushed."""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from importlib import import_module


def _launch(module: str) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    gc.disable()
    try:
        main = import_module(module).main
    finally:
        gc.freeze()
        gc.enable()
    return _exit(main())


def _exit(code: int) -> int:
    """Exit now with `code`, after the exit handlers (log flushes and the like) and the output
    buffers. A command that left a thread running, or whose reader has gone (a closed pipe),
    returns instead and gets the interpreter's ordinary exit."""
    if threading.active_count() > 1:
        return code
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        return code
    os._exit(code)


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
