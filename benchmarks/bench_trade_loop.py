"""The trading loop on the real path (replay server → WebSocket → stream client → loop → store):
feed-to-decision latency without the LLM, and memory over a simulated 24 h replay.

Run: python benchmarks/bench_trade_loop.py [--bars 1440]"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from flags import count

from agent.offline import OfflineModel
from agent.records import DecisionRecord
from agent.strategy import trading_agent
from agent.trading_loop import TradingLoop
from market.binance_ws import BinanceStream
from market.replay_server import ReplayServer, sample_backfill
from market.sample import load_sample, sample_rules
from store import open_store

SYMBOLS = ("BTCUSDT", "ETHUSDT")
DAY_BARS = 1_440


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Probe:
    """Per bar: the step's wall time, minus the model's own time on decision bars."""

    def __init__(self, warm_after: int) -> None:
        self.warm_after = warm_after
        self.decision_ms: list[float] = []
        self.plain_ms: list[float] = []
        self.model_ms = 0.0
        self.decided = False
        self.rss_warm = float("nan")
        self.bars = 0

    def on_decision(self, record: DecisionRecord) -> None:
        self.decided = True
        self.model_ms += sum(call.latency_ms for call in record.llm_calls)

    def on_bar(self, loop: TradingLoop, seconds: float) -> None:
        self.bars += 1
        if self.decided:
            self.decision_ms.append(seconds * 1000 - self.model_ms)
        else:
            self.plain_ms.append(seconds * 1000)
        self.decided, self.model_ms = False, 0.0
        if self.bars == self.warm_after:
            self.rss_warm = rss_mb()


async def replay(loop: TradingLoop, start_ms: int, bars: int, speed: float) -> float:
    started = time.perf_counter()
    async with ReplayServer(speed=speed, start_time_ms=start_ms) as server:
        stream = BinanceStream(
            [f"{s.lower()}@kline_1m" for s in SYMBOLS],
            base_url=server.url,
            backfill=sample_backfill,
        )
        try:
            await loop.run(stream, asyncio.Event(), max_bars=bars)
        finally:
            await server.stop()
            await stream.aclose()
    return time.perf_counter() - started


def make_loop(folder: Path, decide_every: int, probe: Probe) -> tuple[TradingLoop, int]:
    frames = {s: load_sample(s) for s in SYMBOLS}
    start = int(frames[SYMBOLS[0]]["open_time"].iloc[DAY_BARS])
    loop = TradingLoop(
        account="bench",
        symbols=SYMBOLS,
        store=open_store(f"sqlite:///{folder / 'agent.db'}"),
        strategy=trading_agent(
            OfflineModel(), sample_rules(), account="bench", decide_every=decide_every, cash=10_000
        ),
        strategy_label="agent",
        rules=sample_rules(),
        history={s: f[f["open_time"] < start].tail(DAY_BARS) for s, f in frames.items()},
        cash=10_000,
        kill_switch=folder / "KILL",
        observers=[probe],
    )
    return loop, start


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=count, default=DAY_BARS, help="bars in the memory run")
    bars = parser.parse_args().bars

    with tempfile.TemporaryDirectory() as tmp:
        probe = Probe(warm_after=10)
        loop, start = make_loop(Path(tmp), decide_every=1, probe=probe)
        # 120 bars at 20 bars/s: every bar arrives into an idle loop, as a live 1m feed does.
        asyncio.run(replay(loop, start, 120, speed=1_200))
        d = probe.decision_ms
        print(
            f"feed-to-decision (bar in → {len(SYMBOLS)} decisions gated and committed, LLM time "
            f"excluded): median {statistics.median(d):.1f} ms, p95 {pct(d, 0.95):.1f} ms, "
            f"max {max(d):.1f} ms over {len(d)} bars"
        )

    with tempfile.TemporaryDirectory() as tmp:
        probe = Probe(warm_after=100)
        loop, start = make_loop(Path(tmp), decide_every=15, probe=probe)
        before = rss_mb()
        wall = asyncio.run(replay(loop, start, bars, speed=float("inf")))
        after = rss_mb()
        hours = bars / 60
        print(
            f"{hours:.0f} h replay at full speed: {bars:,} bars, {loop.state.decisions} decisions "
            f"in {wall:.1f} s ({bars / wall:,.0f} bars/s)"
        )
        print(
            f"bar without a decision (fills, risk, commit): median "
            f"{statistics.median(probe.plain_ms):.2f} ms, p95 {pct(probe.plain_ms, 0.95):.2f} ms"
        )
        print(
            f"RSS: {before:.0f} MB at start, {probe.rss_warm:.0f} MB after 100 bars, "
            f"{after:.0f} MB at the end: growth {after - probe.rss_warm:+.1f} MB after warm-up "
            "(target < 50 MB)"
        )


if __name__ == "__main__":
    main()
