"""The whole command as a user runs it, process start and imports included:
`agent-backtest --strategy sma_cross --data FILE` against a backtesting.py user's script
(benchmarks/peer_backtesting.py: read the same CSV, FractionalBacktest, print the stats).

Both sides trade the same long-only SMA cross with all equity, 1,000 USDT and no fees or
slippage, over the whole file (the CSV is the real BTCUSDT sample tiled forward). At each size
every side runs once to warm the disk cache, then the sides alternate --pairs times, so a busy
machine slows both alike. Wall and CPU (user + system of the child) are printed as
min / median / max with the ratio of medians; CPU moves less when the machine is shared.

Run: .venv/bin/python benchmarks/bench_command.py [--sizes 20000,200000,1000000] [--pairs 5]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from flags import bar_counts, count
from tiling import tiled_sample

from core.engine_build import BUILD

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
COLUMNS = ["open_time", "open", "high", "low", "close", "volume", "close_time"]
TRADES = re.compile(r"# Trades\D+?(\d[\d,]*)")


@dataclass
class Timed:
    wall_s: float
    cpu_s: float
    trades: int | None


def timed(command: list[str], env: dict[str, str], cwd: Path) -> Timed:
    """One child process, timed from the outside; its own CPU time from os.wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        printed, complaint = out.read().decode(), err.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{command[0]} failed: {complaint[-2000:]}")
    found = TRADES.search(printed)
    return Timed(
        wall,
        usage.ru_utime + usage.ru_stime,
        int(found.group(1).replace(",", "")) if found else None,
    )


def _spread(values: list[float]) -> str:
    return (
        f"min {min(values):6.3f} / median {statistics.median(values):6.3f} / "
        f"max {max(values):6.3f} s"
    )


def compare_at(rows: int, pairs: int, scratch: Path) -> None:
    csv = scratch / f"btcusdt_{rows}.csv"
    tiled_sample("BTCUSDT", rows)[COLUMNS].to_csv(csv, index=False)
    days = rows / 1440 + 1  # the whole file
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "OPENAI_"))}
    env.update(
        AGENT_DATA_DIR=str(scratch / "data"),
        HOME=str(scratch / "home"),
        AGENT_BINANCE__BASE_URL="http://127.0.0.1:9",
        COLUMNS="200",
    )
    flags = ["--cash", "1000", "--fee-bps", "0", "--slippage-bps", "0", "--days", f"{days:g}"]
    sides = {
        "agent-backtest": [
            str(BIN / "agent-backtest"),
            *("--strategy", "sma_cross", "--data", str(csv)),
            *flags,
        ],
        "backtesting.py script": [sys.executable, str(HERE / "peer_backtesting.py"), str(csv)],
    }
    runs: dict[str, list[Timed]] = {name: [] for name in sides}
    warm = {name: timed(command, env, scratch) for name, command in sides.items()}
    for _ in range(pairs):
        for name, command in sides.items():
            runs[name].append(timed(command, env, scratch))
    print(f"{rows:,} bars, whole command, {pairs} alternating rounds after a warm-up:")
    ours = runs["agent-backtest"]
    ours_wall = statistics.median(r.wall_s for r in ours)
    ours_cpu = statistics.median(r.cpu_s for r in ours)
    for name, timings in runs.items():
        wall = [r.wall_s for r in timings]
        cpu = [r.cpu_s for r in timings]
        print(
            f"  {name:22s} wall {_spread(wall)}; cpu {_spread(cpu)}; "
            f"ours is {statistics.median(wall) / ours_wall:4.2f}x (wall) "
            f"{statistics.median(cpu) / ours_cpu:4.2f}x (cpu) its speed; "
            f"{warm[name].trades} trades"
        )
    print("  target: ours >= 2x at 20,000 bars and faster at every size")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=bar_counts, default=[20_000, 200_000, 1_000_000])
    parser.add_argument("--pairs", type=count, default=5)
    args = parser.parse_args()
    print(f"engine: {BUILD}")
    with tempfile.TemporaryDirectory() as scratch:
        for rows in args.sizes:
            compare_at(rows, args.pairs, Path(scratch))
    print(os.popen("uptime").read().strip())


if __name__ == "__main__":
    main()
