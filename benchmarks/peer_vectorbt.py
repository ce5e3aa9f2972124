"""vectorbt's side of bench_engine.py, run in the benchmark's own environment
(benchmarks/.venv-peer; vectorbt is never a project dependency). Loads the bars and the
strategy's signals once, then answers each `run` line on stdin with one timed
`Portfolio.from_signals` as JSON, so the parent can alternate it with our engine.

Same semantics as ours: a signal at bar t's close fills at bar t+1's open, all cash, no fees,
long only. A tz-naive index and a warmed JIT: vectorbt's best case."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd
import vectorbt as vbt


def main() -> None:
    data = np.load(sys.argv[1])
    index = pd.to_datetime(data["open_time"], unit="ms")
    open_ = pd.Series(data["open"], index=index)
    close = pd.Series(data["close"], index=index)
    # Shifted one bar: the order is placed at the next bar, at that bar's open.
    entries = pd.Series(np.r_[False, data["entries"][:-1]], index=index)
    exits = pd.Series(np.r_[False, data["exits"][:-1]], index=index)
    cash = float(data["cash"])

    def run() -> dict[str, float]:
        started = time.perf_counter()
        portfolio = vbt.Portfolio.from_signals(
            close, entries, exits, price=open_, init_cash=cash, fees=0.0, freq="1min"
        )
        trades = int(portfolio.trades.count())
        final = float(portfolio.final_value())
        return {"seconds": time.perf_counter() - started, "trades": trades, "final": final}

    run()  # compile the JIT before anything is timed
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "run":
            print(json.dumps(run()), flush=True)


if __name__ == "__main__":
    main()
