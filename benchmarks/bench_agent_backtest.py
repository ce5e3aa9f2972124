"""`agent-backtest` end to end, as a user runs it: the real CLI as a subprocess, timed from the
outside (process start and imports included), against a loopback OpenAI-compatible server that
answers every call after a fixed server-side delay, with fresh data and cache directories.

Prints, for a one-day BTCUSDT run deciding every 15 min, each figure beside its target:
  - the offline-model run (no key, no base URL) on a filled data directory (target <= 1.5 s);
  - cold wall time (empty LLM cache) per --concurrency, against the ideal
    ceil(decisions / concurrency) x calls per decision x delay (target <= 1.2x), and where the
    time above it goes: from process start to the first model call, the calls themselves beyond
    the ideal (the hand-offs between one answer and the next request), and from the last answer
    to exit;
  - the warm rerun (every answer cached, zero requests), process start included (target <= 1 s);
  - the peak RSS of each child process (os.wait4, KiB on Linux, shown in MiB).
Each figure is the median of --repeats runs, wall and CPU (user + system) time: the CPU time
moves less when something else shares the machine. The load average is printed beside each
section and the host's speed (host.py) at the end. --against DIR runs a second source tree
(e.g. `git archive main | tar -x -C DIR`) in alternating pairs with this one, so both see the
same load. No assertions.

Run: .venv/bin/python benchmarks/bench_agent_backtest.py [--concurrency 8] [--against DIR]"""

from __future__ import annotations

import argparse
import compileall
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

from flags import count  # noqa: E402
from host import HostProbe  # noqa: E402
from loopback_openai import LoopbackOpenAI, Scripted  # noqa: E402
from scripted_model import ScriptedModel, buy_an_uptrend  # noqa: E402

BIN = Path(sys.executable).parent
COLD_TARGET, WARM_TARGET, OFFLINE_TARGET = 1.2, 1.0, 1.5


@dataclasses.dataclass
class Run:
    started: float  # time.monotonic() at launch
    wall_s: float
    cpu_s: float  # user + system of the child: steadier than wall on a shared machine
    returncode: int
    max_rss_kib: int
    stderr: str
    report: dict[str, Any] | None


CALLS_PER_DECISION = 1  # the prompt carries the snapshot: one call ends in submit_signal


@dataclasses.dataclass(frozen=True)
class Code:
    """A source tree to time: None is this checkout as installed; a path goes first on
    PYTHONPATH, so the same console script runs that tree's code."""

    name: str
    path: Path | None = None

    def env(self, env: dict[str, str]) -> dict[str, str]:
        return env if self.path is None else {**env, "PYTHONPATH": str(self.path)}

    def compile(self) -> None:
        """Write every package's bytecode first. With PYTHONDONTWRITEBYTECODE set (as on CI),
        a tree that was never compiled compiles each module at every start: an unpacked
        `--against` tree then started ~85 ms slower than this one with no code changed."""
        root = self.path or TESTS.parent
        for package in root.iterdir():
            if (package / "__init__.py").is_file():
                compileall.compile_dir(package, quiet=1)


class SlowModel:
    """The scripted model, each answer held back `delay_s` by the server (per request thread);
    `arrivals` are the monotonic times requests reached the server."""

    def __init__(self, delay_s: float) -> None:
        self.model = ScriptedModel(buy_an_uptrend)
        self.delay_s = delay_s
        self.arrivals: list[float] = []

    def __call__(self, request: dict[str, Any]) -> Scripted:
        self.arrivals.append(time.monotonic())
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
        launched = time.monotonic()
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
    return Run(launched, wall, cpu, proc.returncode, usage.ru_maxrss, stderr, loaded)


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


def target(runs: list[Run], limit_s: float) -> str:
    """The median wall beside its target, and whether the CPU time alone would meet it."""
    wall = statistics.median(r.wall_s for r in runs)
    cpu = statistics.median(r.cpu_s for r in runs)
    verdict = (
        "met"
        if wall <= limit_s
        else ("not met (cpu alone within)" if cpu <= limit_s else "not met")
    )
    return f"target <= {limit_s:g} s: {verdict}"


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_llm(
    root: Path,
    concurrency: int,
    delay_s: float,
    common: list[str],
    repeats: int,
    codes: list[Code],
) -> None:
    slow = SlowModel(delay_s)
    server = LoopbackOpenAI(responder=slow).start()
    try:
        llm = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench-loopback"}
        args = [*common, "--concurrency", str(concurrency), "--yes"]
        colds: dict[str, list[Run]] = {c.name: [] for c in codes}
        sent: dict[str, list[int]] = {c.name: [] for c in codes}
        first: dict[str, list[float]] = {c.name: [] for c in codes}
        calling: dict[str, list[float]] = {c.name: [] for c in codes}
        tail: dict[str, list[float]] = {c.name: [] for c in codes}
        print(
            f"LLM (loopback, {delay_s * 1000:.0f} ms per call), concurrency {concurrency}, "
            f"{load()}:"
        )
        for i in range(repeats):  # each cold run gets its own empty data dir and LLM cache
            for code in codes:
                work = root / f"llm-{code.name}-c{concurrency}-{i}"
                work.mkdir()
                before = len(slow.arrivals)
                env = code.env(child_env(work / "data", work / "home", llm))
                cold = run_cli(args, env, work, work / "r.json")
                check(cold, f"{code.name} cold run (concurrency {concurrency})")
                arrived = slow.arrivals[before:]
                colds[code.name].append(cold)
                sent[code.name].append(len(arrived))
                first[code.name].append(arrived[0] - cold.started)
                calling[code.name].append(arrived[-1] + delay_s - arrived[0])
                tail[code.name].append(cold.started + cold.wall_s - (arrived[-1] + delay_s))
        warm: dict[str, list[Run]] = {c.name: [] for c in codes}
        resent: dict[str, int] = {}
        for i in range(repeats):
            for code in codes:
                work = root / f"llm-{code.name}-c{concurrency}-0"
                env = code.env(child_env(work / "data", work / "home", llm))
                before = len(slow.arrivals)
                again = run_cli(args, env, work, work / f"warm{i}.json")
                check(again, f"{code.name} warm run")
                warm[code.name].append(again)
                resent[code.name] = resent.get(code.name, 0) + len(slow.arrivals) - before
        for code in codes:
            _llm_figures(
                code,
                root,
                concurrency,
                delay_s,
                repeats,
                colds[code.name],
                sent[code.name],
                first[code.name],
                calling[code.name],
                tail[code.name],
                warm[code.name],
                resent[code.name],
            )
        print(f"  ({load()} at the end)")
    finally:
        server.stop()


def _llm_figures(
    code: Code,
    root: Path,
    concurrency: int,
    delay_s: float,
    repeats: int,
    colds: list[Run],
    sent: list[int],
    first: list[float],
    calling: list[float],
    tail: list[float],
    warm: list[Run],
    resent: int,
) -> None:
    work = root / f"llm-{code.name}-c{concurrency}-0"
    same = all(
        (work / f"warm{i}.json").read_bytes() == (work / "r.json").read_bytes()
        for i in range(repeats)
    )
    assert colds[0].report is not None
    agent = colds[0].report["agent"]
    decisions, calls = agent["decisions"], agent["llm"]["model_calls"]
    ideal = math.ceil(decisions / concurrency) * CALLS_PER_DECISION * delay_s
    cold_wall = statistics.median(r.wall_s for r in colds)
    print(
        f"  [{code.name}] decisions: {decisions}, model calls: {calls} "
        f"({calls / max(decisions, 1):.2f} per decision), requests per cold run: {sent}"
    )
    print(
        f"  [{code.name}] ideal: ceil({decisions}/{concurrency}) x {CALLS_PER_DECISION} x "
        f"{delay_s:g} s = {ideal:.2f} s"
    )
    print(f"  [{code.name}] cold wall: {walls(colds)}")
    print(
        f"  [{code.name}] cold / ideal: {cold_wall / ideal:.2f}x (target <= {COLD_TARGET}x: "
        f"{'met' if cold_wall / ideal <= COLD_TARGET else 'not met'}); above ideal "
        f"{cold_wall - ideal:.2f} s (medians): start to first call "
        f"{statistics.median(first):.2f} s, calls beyond the ideal "
        f"{statistics.median(calling) - ideal:.2f} s, last answer to exit "
        f"{statistics.median(tail):.2f} s"
    )
    print(
        f"  [{code.name}] warm (fully cached, process start included): {walls(warm)} "
        f"({target(warm, WARM_TARGET)}); requests sent: {resent}; JSON identical to cold: {same}"
    )
    print(
        f"  [{code.name}] peak RSS: cold {mib(max(r.max_rss_kib for r in colds))}, "
        f"warm {mib(max(r.max_rss_kib for r in warm))}"
    )


def bench_offline(root: Path, common: list[str], repeats: int, codes: list[Code]) -> None:
    print(f"offline model (no key), {load()}:")
    runs: dict[str, list[Run]] = {c.name: [] for c in codes}
    for i in range(repeats + 1):  # the first run of each fills a fresh data dir
        for code in codes:
            work = root / f"offline-{code.name}"
            work.mkdir(exist_ok=True)
            env = code.env(child_env(work / "data", work / "home", None))
            run = run_cli(common, env, work, work / f"offline{i}.json")
            check(run, f"{code.name} offline run")
            runs[code.name].append(run)
    for code in codes:
        work = root / f"offline-{code.name}"
        fresh, rest = runs[code.name][0], runs[code.name][1:]
        assert fresh.report is not None
        same = all(
            (work / f"offline{i}.json").read_bytes() == (work / "offline0.json").read_bytes()
            for i in range(1, repeats + 1)
        )
        print(
            f"  [{code.name}] {fresh.report['agent']['decisions']} decisions; fresh data dir "
            f"(sample imported into the store): {fresh.wall_s:.2f} s (cpu {fresh.cpu_s:.2f} s)"
        )
        print(
            f"  [{code.name}] filled data dir: {walls(rest)} ({target(rest, OFFLINE_TARGET)}); "
            f"JSON identical across reruns: {same}"
        )
        print(f"  [{code.name}] peak RSS: {mib(max(r.max_rss_kib for r in runs[code.name]))}")
    print(f"  ({load()} at the end)")


def bench_start(repeats: int, codes: list[Code]) -> None:
    """The floor under every figure: starting Python and importing the command."""
    times: dict[str, list[float]] = {c.name: [] for c in codes}
    for _ in range(repeats):
        for code in codes:
            env = code.env(dict(os.environ))
            started = time.perf_counter()
            probe = "import agent.cli.backtest, agent.cli.agent_backtest"
            subprocess.run([sys.executable, "-c", probe], check=True, env=env)
            times[code.name].append(time.perf_counter() - started)
    for code in codes:
        floor = statistics.median(times[code.name])
        print(
            f"[{code.name}] start-up floor (python -c 'import the agent command'): "
            f"median {floor:.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="8", help="comma-separated (8, the default)")
    parser.add_argument("--delay-ms", type=float, default=300.0, help="server delay per call")
    parser.add_argument("--days", default="1")
    parser.add_argument("--decide-every", default="15")
    parser.add_argument("--repeats", type=count, default=3, help="runs of each kind (3)")
    parser.add_argument("--skip-llm", action="store_true")
    parser.add_argument("--against", type=Path, help="a second source tree, run alternately")
    opts = parser.parse_args()
    common = [
        "--symbol",
        "BTCUSDT",
        "--days",
        opts.days,
        "--decide-every",
        opts.decide_every,
    ]
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {load()}")
    codes = [Code("this")] + ([Code("against", opts.against.resolve())] if opts.against else [])
    for code in codes:
        code.compile()
    root = Path(tempfile.mkdtemp(prefix="bench-agent-backtest-"))
    host = HostProbe()
    try:
        host.sample()
        bench_start(opts.repeats, codes)
        host.sample()
        bench_offline(root, common, opts.repeats, codes)
        host.sample()
        if not opts.skip_llm:
            for concurrency in (int(c) for c in opts.concurrency.split(",")):
                bench_llm(root, concurrency, opts.delay_ms / 1000, common, opts.repeats, codes)
                host.sample()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(host.summary())


if __name__ == "__main__":
    main()
