"""Argument types the benchmark scripts share: a count or a list of sizes that is not a
positive whole number is refused by argparse (exit 2, naming the flag), not met by a traceback
halfway through a run."""

from __future__ import annotations

import argparse

from agent.cli.flags import positive_int

MIN_BARS = 1_000
"""Fewer bars than this time only the start-up (and the slowest SMA's warm-up)."""


count = positive_int
"""A whole number, at least 1: the same argument type as the commands' counts."""


def bar_counts(text: str) -> list[int]:
    """Comma-separated numbers of bars, each at least `MIN_BARS`."""
    sizes = [count(part) for part in text.split(",")]
    short = [size for size in sizes if size < MIN_BARS]
    if short:
        raise argparse.ArgumentTypeError(
            f"{short[0]:,} bars is fewer than {MIN_BARS:,}: it would time only the start-up"
        )
    return sizes
