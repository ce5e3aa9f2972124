"""backtesting.py's side of the engine and whole-command benchmarks: the long-only SMA cross
that matches `agent-backtest --strategy sma_cross` (next-open fills, all equity, no fees), and,
run as a script, what a backtesting.py user runs on a CSV: read it, backtest, print the stats.

Run: python benchmarks/peer_backtesting.py FILE.csv [--fast 20 --slow 60 --cash 1000]"""

from __future__ import annotations

import argparse
import warnings

import pandas as pd
from backtesting import Strategy
from backtesting.lib import FractionalBacktest, crossover
from backtesting.test import SMA


def sma_cross(fast: int, slow: int) -> type[Strategy]:
    """Buy when the fast SMA crosses above the slow one, close when it crosses below."""

    class LongOnlySmaCross(Strategy):
        def init(self) -> None:
            self.fast_sma = self.I(SMA, self.data.Close, fast)
            self.slow_sma = self.I(SMA, self.data.Close, slow)

        def next(self) -> None:
            if crossover(self.fast_sma, self.slow_sma):
                self.buy()
            elif crossover(self.slow_sma, self.fast_sma):
                self.position.close()

    return LongOnlySmaCross


def run(data: pd.DataFrame, fast: int, slow: int, cash: float) -> pd.Series:
    """FractionalBacktest's stats for OHLCV columns named as backtesting.py wants them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FractionalBacktest(data, sma_cross(fast, slow), cash=cash, commission=0).run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("--fast", type=int, default=20)
    parser.add_argument("--slow", type=int, default=60)
    parser.add_argument("--cash", type=float, default=1_000)
    args = parser.parse_args()
    frame = pd.read_csv(args.csv)
    data = pd.DataFrame(
        {
            "Open": frame["open"],
            "High": frame["high"],
            "Low": frame["low"],
            "Close": frame["close"],
            "Volume": frame["volume"],
        }
    )
    data.index = pd.to_datetime(frame["open_time"], unit="ms")
    print(run(data, args.fast, args.slow, args.cash))


if __name__ == "__main__":
    main()
