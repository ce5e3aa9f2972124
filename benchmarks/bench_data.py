"""Loading bars against pandas: a Binance kline CSV through the `--data` path (parse, validate,
bars) and the same bars from the SQLite store, each against `pandas.read_csv` plus
`pd.to_datetime` on the same file (the store's first load, through SQL, is printed apart: it
writes the columnar cache the later loads read); and the peak memory of the whole `agent-backtest
--strategy sma_cross --data FILE` process at the largest size, and of the peer as a process.

The files are the real BTCUSDT sample tiled forward in time. At each size both sides run
once to warm up, then alternate --pairs times, so a busy machine slows both alike; min, median
and max wall time are printed with the CPU time (all threads) and the ratio of medians.

Run: python benchmarks/bench_data.py [--sizes 20000,200000,1000000] [--pairs 5]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd
from flags import bar_counts, count
from tiling import tiled_sample

from backtest.data import to_bar_arrays
from market.csv_import import BINANCE_KLINE_HEADER
from market.source import load_csv_candles
from store import Store, open_store
from store.candles import load_candles, upsert_candles

BIN = Path(sys.executable).parent
OHLCV = ("open", "high", "low", "close", "volume")
PEER_SCRIPT = "import sys, pandas as pd; f = pd.read_csv(sys.argv[1]); pd.to_datetime(f['open_time'], unit='ms')"


def write_csv(rows: int, path: Path) -> pd.DataFrame:
    frame = tiled_sample("BTCUSDT", rows)
    out = frame.rename(columns={"trades": "count"}).assign(ignore=0)
    out.loc[:, list(BINANCE_KLINE_HEADER)].to_csv(path, index=False)
    return frame


def peer(path: Path) -> None:
    frame = pd.read_csv(path)
    pd.to_datetime(frame["open_time"], unit="ms")


def ours_csv(path: Path) -> None:
    """As `agent-backtest --data` reads it: the bars' columns only."""
    to_bar_arrays({"BTCUSDT": load_csv_candles(path, "1m", lambda _line: None, bars_only=True)})


def ours_store(store: Store, symbol: str) -> None:
    """The store's columnar cache maps its files, read on first touch: every page of the
    arrays the engine reads is touched here, so their reading is timed too."""
    bars, _ = to_bar_arrays({symbol: load_candles(store, symbol, "1m")})
    columns = [bars.open_time, bars.close_time]
    columns += [getattr(s, f) for s in bars.symbols.values() for f in OHLCV]
    sum(float(column.sum()) for column in columns)


def _timed(work: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(label: str, rows: int, sides: dict[str, Callable[[], object]], pairs: int) -> None:
    for work in sides.values():  # the warm-up: page cache, allocator, imports
        work()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for _ in range(pairs):
        for name, work in sides.items():
            times[name].append(_timed(work))
    medians = {name: statistics.median(w for w, _ in spent) for name, spent in times.items()}
    ours, theirs = medians["ours"], medians["pandas"]
    print(f"{label}, {rows:,} bars, {pairs} alternating pairs after a warm-up:")
    for name, spent in times.items():
        walls = [w for w, _ in spent]
        cpu = statistics.median(c for _, c in spent)
        print(
            f"  {name:7s} min {min(walls) * 1e3:.2f} / median {statistics.median(walls) * 1e3:.2f}"
            f" / max {max(walls) * 1e3:.2f} ms wall, median CPU {cpu * 1e3:.2f} ms"
        )
    print(f"  ours is {theirs / ours:.2f}x pandas' speed (target >= 1)")


# Launched from a small process: a child forked from this one (hundreds of MiB by now) would
# count this process's pages in its own peak.
PROBE = (
    "import os, subprocess, sys; child = subprocess.Popen(sys.argv[1:], "
    "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); _, status, usage = "
    "os.wait4(child.pid, 0); print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))"
)


def peak_rss_mb(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """The child's own peak RSS (os.wait4), in MiB, and its exit code."""
    probe = [sys.executable, "-c", PROBE, *args]
    kib, code = subprocess.run(probe, env=env, capture_output=True, text=True).stdout.split()
    return int(kib) / 1024, int(code)


def memory(path: Path, rows: int, scratch: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "DATABASE_URL"))}
    env.update(AGENT_DATA_DIR=str(scratch / "data"), AGENT_OFFLINE="true", HOME=str(scratch))
    whole = str(rows / 1440 + 1)  # days: every bar of the file
    command = [str(BIN / "agent-backtest"), "--strategy", "sma_cross", "--data", str(path)]
    print(f"peak RSS of the whole process (ru_maxrss of the child), {rows:,}-bar file:")
    for label, extra in (("the last 3 days (default)", []), ("every bar", ["--days", whole])):
        mb, code = peak_rss_mb([*command, *extra], env)
        print(
            f"  agent-backtest --strategy sma_cross --data FILE, {label}: {mb:.0f} MiB (exit {code})"
        )
    mb, _ = peak_rss_mb([sys.executable, "-c", PEER_SCRIPT, str(path)], env)
    print(
        f"  peer process (pandas.read_csv + to_datetime only): {mb:.0f} MiB (target: ours <= 250)"
    )


def main() -> None:
    # The harness's own imports (the store's SQLAlchemy among them) would make every cyclic
    # collection rescan them, at random moments of either side's timing; the agent commands
    # run with their imports frozen out of the collector's reach (core.collector), so both
    # sides are timed that way.
    gc.freeze()
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=bar_counts, default=[20_000, 200_000, 1_000_000])
    parser.add_argument("--pairs", type=count, default=5)
    args = parser.parse_args()
    sizes = args.sizes
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        store = open_store(f"sqlite:///{scratch / 'bench.db'}")
        for rows in sizes:
            path = scratch / f"btc_{rows}.csv"
            symbol = f"SYM{rows}USDT"
            upsert_candles(store, symbol, "1m", write_csv(rows, path))
            theirs = partial(peer, path)
            csv_sides = {"ours": partial(ours_csv, path), "pandas": theirs}
            compare("CSV --data path (parse, validate, bars)", rows, csv_sides, args.pairs)
            first = _timed(partial(ours_store, store, symbol))[0]
            print(f"SQLite store, first load of {rows:,} bars (SQL, then cached): {first:.3f} s")
            store_sides = {"ours": partial(ours_store, store, symbol), "pandas": theirs}
            compare("SQLite store into bars, against read_csv", rows, store_sides, args.pairs)
        store.close()
        memory(scratch / f"btc_{sizes[-1]}.csv", sizes[-1], scratch)
    print(f"machine: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
