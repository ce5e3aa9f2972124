"""Engine speed against backtesting.py's FractionalBacktest and vectorbt's
Portfolio.from_signals on the same 1m bars (the real BTCUSDT sample tiled forward), with
identical trades; peak RSS; and a 100-point sweep.

At each size (20k, 200k, 1M bars) every side runs once to warm up, then the sides alternate
--pairs times, so a busy machine slows both alike; min, median and max are printed with the
ratio of medians. vectorbt runs in its own environment (benchmarks/.venv-peer, created on the
first --vectorbt run; never a project dependency) as a child that times each run itself.
The host's speed (host.py) is sampled before each round and at the end: a ratio whose rounds
fell in different phases of a host that changed speed mid-run is not a quiet figure.

Run: python benchmarks/bench_engine.py [--sizes 20000,200000,1000000] [--pairs 5] [--vectorbt]
     [--fast 20 --slow 60] [--sweep-rows 100000 (0: none)] [--sweep-rounds 3]
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import peer_backtesting
from flags import bar_counts, count
from host import HostProbe
from tiling import tiled_sample

from backtest.config import BacktestConfig
from backtest.data import to_bar_arrays
from backtest.engine import BacktestResult, run_backtest
from backtest.report import compute_report_metrics
from backtest.strategies.sma_cross import SmaCross, SmaCrossParams
from backtest.sweep import SweepData, evaluate_row, plan, run_processes
from core.engine_build import BUILD
from execution.fees import FeeSchedule
from market.sample import sample_rules
from risk.limits import RiskLimits

# Same semantics on both sides: next-open fills, no fees, all equity, long-only (the gate
# refuses new shorts on spot), no circuit breakers (backtesting.py has none). 1,000 USDT keeps
# the compounding equity under BTCUSDT's real maxNotional (9M), which backtesting.py ignores.
CONFIG = BacktestConfig(cash=1_000, fees=FeeSchedule(maker=0, taker=0))
LIMITS = RiskLimits(max_daily_loss_pct=None, max_drawdown_pct=None)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours(frame: pd.DataFrame, fast: int, slow: int) -> tuple[float, list[tuple[int, int]], float]:
    took, result = _our_run(frame, fast, slow)
    closed = [(t.entry_bar, t.exit_bar) for t in result.trades if t.exit_reason != "end_of_data"]
    return took, closed, float(result.equity[-1])


def _our_run(frame: pd.DataFrame, fast: int, slow: int) -> tuple[float, BacktestResult]:
    started = time.perf_counter()
    bars, _ = to_bar_arrays({"BTCUSDT": frame})
    result = run_backtest(
        bars,
        SmaCross(SmaCrossParams(fast=fast, slow=slow)),
        sample_rules(),
        CONFIG,
        limits=LIMITS,
        keep_signals=False,  # as agent-backtest runs it: its report counts them
    )
    compute_report_metrics(result)  # backtesting.py's run() computes its stats too
    return time.perf_counter() - started, result


def theirs(frame: pd.DataFrame, fast: int, slow: int) -> tuple[float, list[tuple[int, int]], float]:
    data = pd.DataFrame(
        {
            "Open": frame["open"].to_numpy(),
            "High": frame["high"].to_numpy(),
            "Low": frame["low"].to_numpy(),
            "Close": frame["close"].to_numpy(),
            "Volume": frame["volume"].to_numpy(),
        },
        index=pd.to_datetime(frame["open_time"].to_numpy(), unit="ms"),
    )
    started = time.perf_counter()
    stats = peer_backtesting.run(data, fast, slow, CONFIG.cash)
    took = time.perf_counter() - started
    trades = stats["_trades"]
    closed = list(zip(trades["EntryBar"].tolist(), trades["ExitBar"].tolist(), strict=True))
    return took, closed, float(stats["Equity Final [$]"])


def sweep(rows: int, rounds: int) -> None:
    """100 grid points on 2 worker processes against the same points one after another here,
    alternating, with the CPU each side spends: on a busy machine the wall times say little,
    the CPU times say what the pool costs per point."""
    frame = tiled_sample("BTCUSDT", rows)
    bars, _ = to_bar_arrays({"BTCUSDT": frame})
    data = SweepData(bars, sample_rules())
    grid = {"fast": list(range(10, 101, 10)), "slow": list(range(110, 201, 10))}
    tasks, _ = plan("sma_cross", {}, grid, CONFIG, LIMITS)
    alone = [evaluate_row(task, data) for task in tasks]  # the warm-up, and the reference
    serial: list[tuple[float, float]] = []
    pooled: list[tuple[float, float, float]] = []
    for _ in range(rounds):
        started, cpu = time.perf_counter(), time.process_time()
        for task in tasks:
            evaluate_row(task, data)
        serial.append((time.perf_counter() - started, time.process_time() - cpu))
        children = _children_cpu()
        started, cpu = time.perf_counter(), time.process_time()
        rows_back = run_processes(tasks, data, workers=2)
        wall = time.perf_counter() - started
        pooled.append((wall, time.process_time() - cpu, _children_cpu() - children))
    serial_s = statistics.median(w for w, _ in serial)
    pooled_s = statistics.median(w for w, _, _ in pooled)
    serial_cpu = statistics.median(c for _, c in serial)
    parent_cpu = statistics.median(p for _, p, _ in pooled)
    workers_cpu = statistics.median(c for _, _, c in pooled)
    points = len(tasks)
    print(
        f"sweep of {points} points on {rows:,} bars, {rounds} alternating rounds: serial "
        f"{serial_s:.2f} s, 2 workers {pooled_s:.2f} s, speed-up {serial_s / pooled_s:.2f} "
        f"(target 1.8); identical rows: {rows_back == alone}"
    )
    print(
        f"  CPU: serial {serial_cpu / points * 1000:.1f} ms a point; 2 workers "
        f"{workers_cpu / points * 1000:.1f} ms a point (+{(workers_cpu - serial_cpu) / points * 1000:.2f} "
        f"ms: fork, index in, row out), parent {parent_cpu / points * 1000:.2f} ms a point; "
        f"bytes a point: {len(pickle.dumps(alone[0])):,} back; wall min/max serial "
        f"{min(w for w, _ in serial):.2f}/{max(w for w, _ in serial):.2f} s, pooled "
        f"{min(w for w, _, _ in pooled):.2f}/{max(w for w, _, _ in pooled):.2f} s"
    )
    bound = serial_cpu / max(workers_cpu / 2, parent_cpu)
    print(f"  speed-up the CPU times allow on 2 idle cores: {bound:.2f}")
    print(f"  machine: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


def _children_cpu() -> float:
    """User + system CPU of the reaped child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


PEER = Path(__file__).resolve().parent / ".venv-peer"


class VectorbtPeer:
    """vectorbt in its own venv as a long-lived child: load once, warm the JIT, time on demand."""

    def __init__(self, frame: pd.DataFrame, fast: int, slow: int, scratch: Path) -> None:
        python = PEER / "bin" / "python"
        if not python.exists():
            print("creating benchmarks/.venv-peer with vectorbt (once; takes a few minutes)")
            subprocess.run([sys.executable, "-m", "venv", str(PEER)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "vectorbt"], check=True)
        bars, _ = to_bar_arrays({"BTCUSDT": frame})
        prepared = SmaCross(SmaCrossParams(fast=fast, slow=slow)).prepare(bars.symbols["BTCUSDT"])
        path = scratch / f"bars_{len(frame)}.npz"
        np.savez(
            path,
            open_time=bars.open_time,
            open=bars.symbols["BTCUSDT"].open,
            close=bars.symbols["BTCUSDT"].close,
            entries=prepared["cross_up"],
            exits=prepared["cross_down"],
            cash=CONFIG.cash,
        )
        script = Path(__file__).resolve().parent / "peer_vectorbt.py"
        self.proc = subprocess.Popen(
            [str(python), str(script), str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self._line())["ready"]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def run(self) -> tuple[float, int, float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        answer = json.loads(self._line())
        return answer["seconds"], answer["trades"], answer["final"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _spread(times: list[float]) -> str:
    return f"min {min(times):.3f} / median {statistics.median(times):.3f} / max {max(times):.3f} s"


def compare_at(rows: int, args: argparse.Namespace, scratch: Path, host: HostProbe) -> None:
    """Warm-up, then alternating pairs: ours, backtesting.py, vectorbt, ours, ..., the host
    probed before each round."""
    frame = tiled_sample("BTCUSDT", rows)
    sides: dict[str, Callable[[], tuple[float, object, float]]] = {
        "ours": lambda: ours(frame, args.fast, args.slow),
        "backtesting.py": lambda: theirs(frame, args.fast, args.slow),
    }
    peer = VectorbtPeer(frame, args.fast, args.slow, scratch) if args.vectorbt else None
    if peer is not None:
        sides["vectorbt"] = peer.run
    times: dict[str, list[float]] = {name: [] for name in sides}
    results = {name: run()[1:] for name, run in sides.items()}  # the warm-up run
    for _ in range(args.pairs):
        host.sample()
        for name, run in sides.items():
            times[name].append(run()[0])
    if peer is not None:
        peer.close()
    our_trades, our_equity = results["ours"]
    their_trades, their_equity = results["backtesting.py"]
    print(f"{rows:,} bars, {args.pairs} alternating rounds after a warm-up:")
    ours_median = statistics.median(times["ours"])
    for name, spent in times.items():
        median = statistics.median(spent)
        print(
            f"  {name:15s} {_spread(spent)} = {rows / median:>11,.0f} bars/s; "
            f"ours is {median / ours_median:5.2f}x its speed"
        )
    print(
        f"  backtesting.py: identical trades (entry and exit bars): {our_trades == their_trades}; "
        f"final equity differs by {abs(our_equity / their_equity - 1):.4%} (target: ours >= 10x)"
    )
    if peer is not None:
        vbt_trades, vbt_equity = results["vectorbt"]
        print(
            f"  vectorbt: {vbt_trades:,} trades (an open one included), ours "
            f"{len(our_trades):,} closed; final equity differs by "
            f"{abs(our_equity / vbt_equity - 1):.4%} (target: ours within 3x)"
        )
        # Every signal goes through the gate, is sealed, placed and filled, with the risk
        # state kept: what that costs a signal, against what 3x vectorbt's time leaves one.
        signals = sum(_our_run(frame, args.fast, args.slow)[1].signals_by_action.values())
        vbt_median = statistics.median(times["vectorbt"])
        print(
            f"  per signal ({signals:,} gated): ours {ours_median / signals * 1e6:.1f} us, "
            f"everything included; 3x vectorbt's time leaves "
            f"{3 * vbt_median / signals * 1e6:.1f} us (bench_risk.py times the gate alone)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=bar_counts, default=[20_000, 200_000, 1_000_000])
    parser.add_argument("--pairs", type=count, default=5)
    parser.add_argument("--vectorbt", action="store_true", help="add vectorbt (its own venv)")
    parser.add_argument("--fast", type=count, default=20)
    parser.add_argument("--slow", type=count, default=60)
    parser.add_argument(
        "--sweep-rows", type=int, default=100_000, help="bars per sweep point; 0: no sweep"
    )
    parser.add_argument("--sweep-rounds", type=count, default=3)
    args = parser.parse_args()
    if args.fast >= args.slow:
        parser.error(f"--fast ({args.fast}) must be less than --slow ({args.slow})")
    if args.sweep_rows < 0:
        parser.error(
            f"--sweep-rows must be 0 (no sweep) or a number of bars, got {args.sweep_rows}"
        )
    print(f"engine: {BUILD}")
    host = HostProbe()
    with tempfile.TemporaryDirectory() as scratch:
        for rows in args.sizes:
            compare_at(rows, args, Path(scratch), host)
        host.sample()
    print(f"peak RSS of the whole run: {peak_rss_mb():.0f} MB")
    print(host.summary())
    if args.sweep_rows:
        sweep(args.sweep_rows, args.sweep_rounds)


if __name__ == "__main__":
    main()
