"""`agent-backtest` end to end, as a user runs it: the real CLI as a subprocess, timed from the
outside (process start and imports included), against a loopback OpenAI-compatible server that
answers every call after a fixed server-side delay, with fresh data and cache directories.

Prints, for a one-day BTCUSDT run deciding every 15 min:
  - cold wall time (empty LLM cache) per --concurrency, against the ideal
    ceil(decisions / concurrency) x calls per decision x delay (the model's two calls of a
    decision are sequential) and the issue's ceil(model calls / concurrency) x delay;
  - the warm rerun (every answer cached, zero requests), process start included;
  - the offline-model run (no key, no base URL), on a fresh and on a filled data directory;
  - the peak RSS of each child process (os.wait4, KiB on Linux, shown in MiB).
Each figure is the median of --repeats runs, wall and CPU (user + system) time: the CPU time
moves less when something else shares the machine. No assertions: targets are printed along.

Run: .venv/bin/python benchmarks/bench_agent_backtest.py [--concurrency 8,16] [--delay-ms 300]"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from loopback_openai import LoopbackOpenAI, Scripted  # noqa: E402
from scripted_model import ScriptedModel, buy_an_uptrend  # noqa: E402

BIN = Path(sys.executable).parent
COLD_TARGET, WARM_TARGET, OFFLINE_TARGET = 1.2, 3.0, 3.0


@dataclasses.dataclass
class Run:
    wall_s: float
    cpu_s: float  # user + system of the child: steadier than wall on a shared machine
    returncode: int
    max_rss_kib: int
    stderr: str
    report: dict[str, Any] | None


CALLS_PER_DECISION = 1  # the prompt carries the snapshot: one call ends in submit_signal


class SlowModel:
    """The scripted model, each answer held back `delay_s` by the server (per request thread)."""

    def __init__(self, delay_s: float) -> None:
        self.model = ScriptedModel(buy_an_uptrend)
        self.delay_s = delay_s

    def __call__(self, request: dict[str, Any]) -> Scripted:
        return dataclasses.replace(self.model(request), delay_s=self.delay_s)


def child_env(data_dir: Path, home: Path, llm: dict[str, str] | None) -> dict[str, str]:
    """A fresh machine: our data dir only, no keys unless given, Binance unreachable."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "OPENAI_", "BINANCE_"))
    }
    env.pop("DATABASE_URL", None)
    env.update(
        AGENT_DATA_DIR=str(data_dir),
        AGENT_OFFLINE="true",
        AGENT_BINANCE__BASE_URL="http://127.0.0.1:9",
        AGENT_BINANCE__MAX_RETRIES="0",
        HOME=str(home),
        COLUMNS="160",
    )
    env.update(llm or {})
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path, report: Path) -> Run:
    """One child process; os.wait4 gives this child's own peak RSS (KiB on Linux)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [str(BIN / "agent-backtest"), *args, "--json", str(report)],
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    loaded = json.loads(report.read_text()) if report.exists() else None
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall, cpu, proc.returncode, usage.ru_maxrss, stderr, loaded)


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def check(run: Run, what: str) -> None:
    if run.returncode != 0:
        tail = "\n".join(run.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"{what} failed with exit code {run.returncode}:\n{tail}")


def walls(runs: list[Run]) -> str:
    """Median wall and CPU, then every wall, in seconds."""
    wall = statistics.median(r.wall_s for r in runs)
    cpu = statistics.median(r.cpu_s for r in runs)
    each = ", ".join(f"{r.wall_s:.2f}" for r in runs)
    return f"median {wall:.2f} s (cpu {cpu:.2f} s) of {len(runs)} [{each}]"


def bench_llm(
    root: Path, concurrency: int, delay_s: float, common: list[str], repeats: int
) -> None:
    server = LoopbackOpenAI(responder=SlowModel(delay_s)).start()
    try:
        llm = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench-loopback"}
        args = [*common, "--concurrency", str(concurrency), "--yes"]
        colds, sent = [], []
        for i in range(repeats):  # each cold run gets its own empty data dir and LLM cache
            work = root / f"llm-c{concurrency}-{i}"
            work.mkdir()
            before = len(server.requests)
            cold = run_cli(
                args, child_env(work / "data", work / "home", llm), work, work / "r.json"
            )
            check(cold, f"cold run (concurrency {concurrency})")
            colds.append(cold)
            sent.append(len(server.requests) - before)
        work = root / f"llm-c{concurrency}-0"
        env = child_env(work / "data", work / "home", llm)
        before = len(server.requests)
        warm = []
        for i in range(repeats):
            again = run_cli(args, env, work, work / f"warm{i}.json")
            check(again, "warm run")
            warm.append(again)
        resent = len(server.requests) - before
        same = all(
            (work / f"warm{i}.json").read_bytes() == (work / "r.json").read_bytes()
            for i in range(repeats)
        )
        assert colds[0].report is not None
        agent = colds[0].report["agent"]
        decisions, calls = agent["decisions"], agent["llm"]["model_calls"]
        ideal = math.ceil(decisions / concurrency) * CALLS_PER_DECISION * delay_s
        issue_ideal = math.ceil(calls / concurrency) * delay_s
        cold_wall = statistics.median(r.wall_s for r in colds)
        print(f"LLM (loopback, {delay_s * 1000:.0f} ms per call), concurrency {concurrency}:")
        print(
            f"  decisions: {decisions} ({agent['planned_decisions']} planned), model calls: "
            f"{calls} ({calls / max(decisions, 1):.2f} per decision, sequential), requests "
            f"sent per cold run: {sent}, peak in flight at the server: {server.max_in_flight}"
        )
        print(
            f"  ideal (calls-aware): ceil({decisions}/{concurrency}) x {CALLS_PER_DECISION} x "
            f"{delay_s:g} s = {ideal:.2f} s"
        )
        print(
            f"  ideal (issue's formula): ceil({calls}/{concurrency}) x {delay_s:g} s = "
            f"{issue_ideal:.2f} s"
        )
        print(f"  cold wall: {walls(colds)}")
        print(
            f"  cold / ideal: {cold_wall / ideal:.2f}x calls-aware, {cold_wall / issue_ideal:.2f}x "
            f"issue's (target <= {COLD_TARGET}x); above ideal: {cold_wall - ideal:.2f} s "
            "(start-up, data, report, and CPU not hidden behind the model's latency)"
        )
        print(
            f"  warm wall (fully cached, process start included): {walls(warm)} (target < "
            f"{WARM_TARGET:g} s); requests sent: {resent}; JSON identical to cold: {same}"
        )
        cold_rss = max(r.max_rss_kib for r in colds)
        print(f"  peak RSS: cold {mib(cold_rss)}, warm {mib(max(r.max_rss_kib for r in warm))}")
    finally:
        server.stop()


def bench_offline(root: Path, common: list[str], repeats: int) -> None:
    work = root / "offline"
    work.mkdir()
    env = child_env(work / "data", work / "home", None)
    runs = []
    for i in range(repeats + 1):
        run = run_cli(common, env, work, work / f"offline{i}.json")
        check(run, "offline run")
        runs.append(run)
    fresh, rest = runs[0], runs[1:]
    assert fresh.report is not None
    agent = fresh.report["agent"]
    same = all(
        (work / f"offline{i}.json").read_bytes() == (work / "offline0.json").read_bytes()
        for i in range(1, repeats + 1)
    )
    print(f"offline model (no key), {agent['decisions']} decisions:")
    print(
        f"  fresh data dir (sample imported into the store): {fresh.wall_s:.2f} s "
        f"(cpu {fresh.cpu_s:.2f} s)"
    )
    print(
        f"  filled data dir: {walls(rest)} (target < {OFFLINE_TARGET:g} s); "
        f"JSON identical across reruns: {same}"
    )
    print(f"  peak RSS: {mib(max(r.max_rss_kib for r in runs))}")


def bench_start(repeats: int) -> None:
    """The floor under every figure: starting Python and importing the command."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import agent.cli.backtest"], check=True)
        times.append(time.perf_counter() - started)
    floor = statistics.median(times)
    print(f"start-up floor (python -c 'import agent.cli.backtest'): median {floor:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="8,16", help="comma-separated (8,16)")
    parser.add_argument("--delay-ms", type=float, default=300.0, help="server delay per call")
    parser.add_argument("--days", default="1")
    parser.add_argument("--decide-every", default="15")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind (3)")
    parser.add_argument("--skip-llm", action="store_true")
    opts = parser.parse_args()
    common = [
        "--symbol",
        "BTCUSDT",
        "--days",
        opts.days,
        "--decide-every",
        opts.decide_every,
    ]
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    root = Path(tempfile.mkdtemp(prefix="bench-agent-backtest-"))
    try:
        bench_start(opts.repeats)
        bench_offline(root, common, opts.repeats)
        if not opts.skip_llm:
            for concurrency in (int(c) for c in opts.concurrency.split(",")):
                bench_llm(root, concurrency, opts.delay_ms / 1000, common, opts.repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
