"""Engine speed against backtesting.py's FractionalBacktest on the same 1,000,000 1m bars (the
real BTCUSDT sample tiled forward), with identical trades; peak RSS; and a 100-point sweep.

Run: python benchmarks/bench_engine.py [--rows 1000000] [--fast 20 --slow 60] [--sweep-rows 100000]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings

import pandas as pd
from tiling import tiled_sample

from backtest.config import BacktestConfig
from backtest.data import to_bar_arrays
from backtest.engine import run_backtest
from backtest.report import compute_report_metrics
from backtest.strategies.sma_cross import SmaCross, SmaCrossParams
from backtest.sweep import SweepData, evaluate, plan, run_processes
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
    started = time.perf_counter()
    bars, _ = to_bar_arrays({"BTCUSDT": frame})
    result = run_backtest(
        bars, SmaCross(SmaCrossParams(fast=fast, slow=slow)), sample_rules(), CONFIG, limits=LIMITS
    )
    compute_report_metrics(result)  # backtesting.py's run() computes its stats too
    took = time.perf_counter() - started
    closed = [(t.entry_bar, t.exit_bar) for t in result.trades if t.exit_reason != "end_of_data"]
    return took, closed, float(result.equity[-1])


def theirs(frame: pd.DataFrame, fast: int, slow: int) -> tuple[float, list[tuple[int, int]], float]:
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest, crossover
    from backtesting.test import SMA

    class LongOnlySmaCross(Strategy):
        def init(self) -> None:
            self.fast_sma = self.I(SMA, self.data.Close, fast)
            self.slow_sma = self.I(SMA, self.data.Close, slow)

        def next(self) -> None:
            if crossover(self.fast_sma, self.slow_sma):
                self.buy()
            elif crossover(self.slow_sma, self.fast_sma):
                self.position.close()

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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backtest = FractionalBacktest(data, LongOnlySmaCross, cash=CONFIG.cash, commission=0)
        stats = backtest.run()
    took = time.perf_counter() - started
    trades = stats["_trades"]
    closed = list(zip(trades["EntryBar"].tolist(), trades["ExitBar"].tolist(), strict=True))
    return took, closed, float(stats["Equity Final [$]"])


def sweep(rows: int) -> None:
    """100 grid points in parallel against the same 100 runs one after another."""
    frame = tiled_sample("BTCUSDT", rows)
    bars, _ = to_bar_arrays({"BTCUSDT": frame})
    data = SweepData(bars, sample_rules())
    grid = {"fast": list(range(10, 101, 10)), "slow": list(range(110, 201, 10))}
    tasks, _ = plan("sma_cross", {}, grid, CONFIG, LIMITS)
    started = time.perf_counter()
    for task in tasks:
        evaluate(task, data)
    serial = time.perf_counter() - started
    cores = os.cpu_count() or 1
    started = time.perf_counter()
    run_processes(tasks, data)
    parallel = time.perf_counter() - started
    ideal = serial / cores
    print(
        f"sweep of {len(tasks)} points on {rows:,} bars: {parallel:.2f} s with {cores} processes; "
        f"single runs one after another {serial:.2f} s, / {cores} cores = {ideal:.2f} s; "
        f"ratio {parallel / ideal:.2f} (target < 2)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--fast", type=int, default=20)
    parser.add_argument("--slow", type=int, default=60)
    parser.add_argument("--sweep-rows", type=int, default=100_000)
    args = parser.parse_args()

    frame = tiled_sample("BTCUSDT", args.rows)
    print(
        f"data: {len(frame):,} BTCUSDT 1m bars (the real sample tiled), peak RSS {peak_rss_mb():.0f} MB"
    )
    our_time, our_trades, our_equity = ours(frame, args.fast, args.slow)
    print(
        f"ours:            {our_time:6.2f} s = {args.rows / our_time:>9,.0f} bars/s, "
        f"{len(our_trades):,} trades, final equity {our_equity:,.2f}; "
        f"peak RSS {peak_rss_mb():.0f} MB (data + engine)"
    )
    their_time, their_trades, their_equity = theirs(frame, args.fast, args.slow)
    print(
        f"backtesting.py:  {their_time:6.2f} s = {args.rows / their_time:>9,.0f} bars/s, "
        f"{len(their_trades):,} trades, final equity {their_equity:,.2f} (FractionalBacktest)"
    )
    same = our_trades == their_trades
    first_diff = next(
        (i for i, (a, b) in enumerate(zip(our_trades, their_trades, strict=False)) if a != b), None
    )
    print(
        f"ratio: {their_time / our_time:.2f}x backtesting.py's bars/s (target >= 3); "
        f"identical trades (entry and exit bars): {same}"
        + ("" if same else f", first difference at trade {first_diff}")
        + f"; final equity differs by {abs(our_equity / their_equity - 1):.4%}"
    )
    print(f"peak RSS of the whole run: {peak_rss_mb():.0f} MB")
    sweep(args.sweep_rows)


if __name__ == "__main__":
    main()
