"""Relaxing Python's cyclic garbage collector around work that makes millions of small objects
and almost no reference cycles: a backtest's signals, verdicts, orders and fills, and the report
built from them. At the default thresholds a collection runs every 700 allocations and rescans
them, the bars and every loaded module's objects, freeing next to nothing: about half of a long
run's time. The collector is not turned off, since an agent's run makes cycles on its model-call
threads (clients, exceptions) that must still be freed: it runs every 100,000 allocations."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

RELAXED = (100_000, 50, 100)


@contextmanager
def imports_frozen() -> Iterator[None]:
    """Imports inside run with the collector paused, and what they made is frozen out of its
    reach after: modules make hundreds of thousands of long-lived objects and next to no
    garbage, which the collector would rescan while they load and again during the run
    (agent.cli.launch). A command's lazily chosen sub-command modules load the same way."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@contextmanager
def collector_relaxed() -> Iterator[None]:
    """Relaxed inside, its thresholds put back as they were found (so nesting is harmless),
    even on an error."""
    found = gc.get_threshold()
    gc.set_threshold(*RELAXED)
    try:
        yield
    finally:
        gc.set_threshold(*found)
