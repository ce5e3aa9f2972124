"""What the scorecard adds to a warm `agent-backtest --symbol BTCUSDT --days 1`: the offline
agent runs once over the bundled sample's last day, then, --repeats times, (a) what the report
did before the scorecard (the three rule strategies at their defaults, with their metrics) and
(b) the scorecard (buy-and-hold, the rule strategies and five random seeds through the gate,
the bootstrap, the veto ledger, calibration), rendered for the terminal and serialised. Prints
the medians and their difference, against the target (0.2 s).

Run: .venv/bin/python benchmarks/bench_scorecard.py [--repeats 7]"""

from __future__ import annotations

import argparse
import io
import statistics
import time

from flags import count
from rich.console import Console

from agent.offline import OfflineModel
from agent.report import stated
from agent.strategy import AgentParams, AgentStrategy
from backtest import run_backtest
from backtest.config import BacktestConfig
from backtest.data import to_bar_arrays
from backtest.report import compute_report_metrics
from backtest.scorecard import scorecard
from backtest.strategies import STRATEGIES
from backtest.terminal import render_scorecard
from market.sample import load_sample, sample_rules
from risk.limits import RiskLimits
from tools import MarketData

TARGET_S = 0.2
DAY_BARS = 1_440


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=count, default=7)
    args = parser.parse_args()
    frames = {"BTCUSDT": load_sample("BTCUSDT").tail(DAY_BARS).reset_index(drop=True)}
    bars, _ = to_bar_arrays(frames)
    rules = {"BTCUSDT": sample_rules()["BTCUSDT"]}
    config = BacktestConfig()
    strategy = AgentStrategy(
        AgentParams(),
        model=OfflineModel(),
        market=MarketData(frames, config.interval),
        close_time=bars.close_time,
        rules=rules,
        cash=config.cash,
        run_id="bench",
        limits=RiskLimits(),
    )
    started = time.perf_counter()
    result = run_backtest(bars, strategy, rules, config, limits=RiskLimits())
    agent_s = time.perf_counter() - started
    records = [strategy.records[k] for k in sorted(strategy.records)]
    said = stated(records)
    before, after = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        for cls in STRATEGIES.values():
            compute_report_metrics(run_backtest(bars, cls(cls.Params()), rules, config))
        before.append(time.perf_counter() - started)
        started = time.perf_counter()
        card = scorecard(result, rules, said, 0.0)
        dumped = card.model_dump(mode="json")
        Console(file=io.StringIO(), width=100).print(render_scorecard(dumped))
        card.model_dump_json()
        after.append(time.perf_counter() - started)
    old, new = statistics.median(before), statistics.median(after)
    print(f"agent run (offline model, {len(records)} decisions): {agent_s:.2f} s")
    print(f"rule-strategy baselines as before: median {old:.3f} s over {args.repeats}")
    print(f"scorecard: median {new:.3f} s (min {min(after):.3f}, max {max(after):.3f})")
    print(f"scorecard added: {new - old:.3f} s; target <= {TARGET_S} s")


if __name__ == "__main__":
    main()
