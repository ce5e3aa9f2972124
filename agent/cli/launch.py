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
environment sets PYDANTIC_DISABLE_PLUGINS (empty turns plugins back on)."""

from __future__ import annotations

import os
from importlib import import_module

from core.collector import imports_frozen

ENVIRONMENT_DEFAULTS = {"OPENBLAS_NUM_THREADS": "1", "PYDANTIC_DISABLE_PLUGINS": "__all__"}
"""Set before a command's imports unless the user's environment says otherwise."""


def _launch(module: str) -> int:
    for name, value in ENVIRONMENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    with imports_frozen():
        main = import_module(module).main
    return main()


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
