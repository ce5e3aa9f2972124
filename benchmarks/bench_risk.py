"""Risk gate latency: `assess` on 100,000 random signals, median and p99 in microseconds, for
all of them and for approvals and vetoes apart, with the machine's load and speed (host.py)
beside them.
Run: python benchmarks/bench_risk.py [--signals 100000] [--seed 7]
Before/after on a busy machine: python benchmarks/bench_risk.py --against ../other-checkout
runs that checkout's gate and this one's alternately, in fresh processes, --rounds times."""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from flags import count
from host import HostProbe

from core.engine_build import BUILD
from market.sample import sample_rules
from risk import (
    Approved,
    MarketView,
    OrderType,
    PortfolioView,
    PositionView,
    RiskLimits,
    RiskState,
    SignalAction,
    SignalSource,
    TradeSignal,
    assess,
)

NOW = 1_761_782_400_000
PRICE = 65_000.0


def _signals(count: int, rng: np.random.Generator) -> list[TradeSignal]:
    """A realistic mix: mostly buys and exits, all order types, some garbage values."""
    actions = rng.choice(
        [SignalAction.BUY, SignalAction.SELL, SignalAction.CLOSE, SignalAction.HOLD],
        size=count,
        p=[0.6, 0.15, 0.15, 0.1],
    )
    types = rng.choice(list(OrderType), size=count, p=[0.55, 0.25, 0.1, 0.1])
    sources = rng.choice(list(SignalSource), size=count)
    garbage = [math.nan, math.inf, -1.0, 0.0]
    out = []
    for i in range(count):
        near = PRICE * (1 + rng.normal(0, 0.01))
        quantity = float(rng.uniform(0.0001, 2.0)) if rng.random() < 0.4 else None
        if rng.random() < 0.03:
            quantity = garbage[int(rng.integers(len(garbage)))]
        out.append(
            TradeSignal(
                decision_id=f"bench-{i}",
                source=sources[i],
                symbol="BTCUSDT",
                action=actions[i],
                order_type=types[i],
                quantity=quantity,
                size_pct=float(rng.uniform(0.01, 1.5)) if rng.random() < 0.4 else None,
                limit_price=near if types[i] in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
                stop_price=near if types[i] in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
                stop_loss=PRICE * (1 - rng.uniform(0.002, 0.05)) if rng.random() < 0.5 else None,
                take_profit=PRICE * (1 + rng.uniform(0.002, 0.1)) if rng.random() < 0.3 else None,
                confidence=float(rng.uniform(0.3, 1.0)),
                created_ms=NOW,
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--signals", type=count, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--against", type=Path, help="another checkout to compare, alternately")
    parser.add_argument("--rounds", type=count, default=3)
    args = parser.parse_args()
    if args.against is not None:
        _alternate(args)
        return
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cpus")
    print(f"engine: {BUILD}")
    rng = np.random.default_rng(args.seed)
    signals = _signals(args.signals, rng)
    rules = sample_rules()["BTCUSDT"]
    market = MarketView(
        symbol="BTCUSDT",
        last_price=PRICE,
        data_time_ms=NOW - 5_000,
        atr=60.0,
        best_bid=PRICE - 0.01,
        best_ask=PRICE,
        rules=rules,
    )
    portfolios = [
        PortfolioView(
            cash=10_000.0, equity=10_000.0, peak_equity=10_500.0, day_start_equity=10_100.0
        ),
        PortfolioView(
            cash=6_000.0,
            equity=12_500.0,
            peak_equity=13_000.0,
            day_start_equity=12_000.0,
            positions={
                "BTCUSDT": PositionView(quantity=0.1, avg_price=64_000.0),
                "ETHUSDT": PositionView(quantity=0.05, avg_price=3_900.0),
            },
        ),
    ]
    limits = RiskLimits()
    states = [RiskState(), RiskState(recent_orders_ms=(NOW - 90_000, NOW - 30_000))]

    gc.freeze()  # the 100,000 prepared signals are setup, not garbage the gate made
    host = HostProbe()
    host.sample()
    for signal in signals[:2_000]:  # warm up caches and the allocator
        assess(signal, portfolios[0], market, NOW, limits, states[0])
    timings: dict[str, list[int]] = {"approved": [], "vetoed": []}
    clock = time.perf_counter_ns
    for i, signal in enumerate(signals):
        portfolio, state = portfolios[i & 1], states[(i >> 1) & 1]
        start = clock()
        verdict = assess(signal, portfolio, market, NOW, limits, state)
        took = clock() - start
        timings["approved" if isinstance(verdict, Approved) else "vetoed"].append(took)
    host.sample()
    every = timings["approved"] + timings["vetoed"]
    print(f"risk gate latency over {len(every):,} random signals: {_figures(every)}")
    for kind, values in timings.items():
        print(f"  {kind} ({len(values):,}): {_figures(values)}")
    print(host.summary())


def _alternate(args: argparse.Namespace) -> None:
    """The other checkout's gate, then this one's, in turn: a busy machine's load drifts, so
    only figures taken side by side compare."""
    here = Path(__file__).resolve().parents[1]
    flags = ["--signals", str(args.signals), "--seed", str(args.seed)]
    for round_ in range(1, args.rounds + 1):
        for name, root in (("other", args.against.resolve()), ("this", here)):
            env = {**os.environ, "PYTHONPATH": str(root)}
            script = root / "benchmarks" / "bench_risk.py"
            run = subprocess.run(
                [sys.executable, str(script), *flags],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            print(f"round {round_} {name} ({root}):")
            print(run.stdout.rstrip())


def _figures(nanos: list[int]) -> str:
    micros = sorted(n / 1000 for n in nanos)
    p99 = micros[max(0, math.ceil(len(micros) * 0.99) - 1)]
    return f"median {statistics.median(micros):.1f} µs, p99 {p99:.1f} µs"


if __name__ == "__main__":
    main()
