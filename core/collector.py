"""Pausing Python's cyclic garbage collector around work that makes millions of small objects
and no reference cycles: a backtest's signals, verdicts, orders and fills, and the report built
from them. Each few hundred allocations trigger a collection that rescans them, the bars and
every loaded module's objects, again and again, freeing next to nothing: about half of a long
run's time. Reference counting still frees everything as usual meanwhile."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Paused inside, resumed as it was found (so nesting is harmless), even on an error; any
    cycle made meanwhile is collected once it runs again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
