"""How the process asks the C library for memory."""

from __future__ import annotations

import sys
from functools import cache

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 128 << 10  # glibc's own starting value


@cache
def map_large_blocks() -> None:
    """glibc raises its mmap threshold each time a mapped block is freed, so after the first
    freed column every later one comes from the heap, where its space is reused only by a
    block that fits: a 1M-bar backtest then peaks ~30 MB higher (benchmarks/bench_data.py).
    Fixed at glibc's starting value, large blocks stay mapped and go back to the system when
    freed, for some page-fault time (~0.25 s of a 1M-bar run's 2.5 s CPU); so only work on
    large data asks for it. Other C libraries manage memory their own way."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # glibc's; musl has none
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
