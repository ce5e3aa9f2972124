"""How fast this machine runs Python at the moment, for the benchmarks' absolute figures.

On the shared 2-core host the same process runs a fixed workload up to ~1.5x slower in some
minutes than in others, while the load average stays low: the slowdown comes from outside the
machine. A figure in seconds or microseconds (the gate's latency, the agent backtest's wall
time) therefore says little without the host's speed beside it. This probe times a fixed
pure-Python loop, the kind of work the engine and the gate do, at the points a script samples
it; the scripts print its spread with their figures, so a reader can tell a quiet run from a
slow phase. Ratios against a peer timed in the same run need no probe."""

from __future__ import annotations

import statistics
import time

ITERATIONS = 2_000_000


def reference_s() -> float:
    """Wall time of a fixed loop of float arithmetic and dict stores (~0.2 s when quiet)."""
    started = time.perf_counter()
    total, table = 0.0, {}
    for i in range(ITERATIONS):
        total += i * 0.5
        table[i & 1023] = total
    return time.perf_counter() - started


class HostProbe:
    """The probe's samples over one benchmark run."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def sample(self) -> float:
        self.samples.append(reference_s())
        return self.samples[-1]

    def summary(self) -> str:
        low, high = min(self.samples), max(self.samples)
        return (
            f"host probe (a fixed pure-Python loop, {len(self.samples)} samples): min {low:.3f} / "
            f"median {statistics.median(self.samples):.3f} / max {high:.3f} s; slowest "
            f"{high / low:.2f}x the fastest (above ~1.15x the machine's speed changed during "
            "the run, and so did every absolute figure)"
        )
