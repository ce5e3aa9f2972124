"""A market-data socket that stays open but goes quiet is noticed, reopened, and the minutes it
missed are fetched over REST before the stream resumes: the loop decides exactly what an
unbroken stream would have let it decide, no minute skipped and none twice."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import signal
import subprocess
import time
from pathlib import Path

import pytest
from account_record import account_record, query
from conftest import BIN
from loopback_binance import LoopbackBinance

from agent.offline import OfflineModel
from agent.strategy import trading_agent
from agent.trading_loop import TradingLoop
from config.settings import BinanceSettings
from market.binance_rest import BinanceRestClient
from market.binance_ws import BinanceStream, rest_backfill
from market.replay_server import ReplayServer
from market.sample import load_sample, sample_rules
from store import open_store

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
HISTORY, BARS = 1_440, 90
STREAMS = [f"{s.lower()}@kline_1m" for s in SYMBOLS]


def _loop(path: Path) -> TradingLoop:
    frames = {s: load_sample(s) for s in SYMBOLS}
    return TradingLoop(
        account="w",
        symbols=SYMBOLS,
        store=open_store(f"sqlite:///{path}"),
        strategy=trading_agent(
            OfflineModel(), sample_rules(), account="w", decide_every=3, cash=10_000
        ),
        strategy_label="agent",
        rules=sample_rules(),
        history={s: f.iloc[:HISTORY] for s, f in frames.items()},
        cash=10_000,
        kill_switch=path.parent / "KILL",
    )


async def _trade(loop: TradingLoop, server: ReplayServer, stream: BinanceStream) -> str:
    last = server.open_time(SYMBOLS[0], HISTORY + BARS - 1)
    try:
        # a guard, not a timing: a stream that never resumes would otherwise hang the suite
        return await asyncio.wait_for(loop.run(stream, asyncio.Event(), end_open_time=last), 120)
    finally:
        await server.stop()
        await stream.aclose()


def _replay(speed: float, stall_after: int | None = None) -> ReplayServer:
    return ReplayServer(
        speed=speed, start_index=HISTORY, stop_index=HISTORY + BARS, stall_after=stall_after
    )


@pytest.mark.slow
def test_a_silent_stream_is_reopened_and_its_missed_bars_backfilled(tmp_path: Path) -> None:
    unbroken = _loop(tmp_path / "unbroken" / "agent.db")
    reason = asyncio.run(_run_unbroken(unbroken, _replay(math.inf)))
    assert reason == "the replay reached its last bar"

    rest = LoopbackBinance().start()
    client = BinanceRestClient(BinanceSettings(base_url=rest.base_url))
    stalled = _loop(tmp_path / "stalled" / "agent.db")
    server = _replay(2_400, stall_after=50)  # 25 ms a bar; silent after 25 bars of each socket
    try:
        reason = asyncio.run(_run_stalled(stalled, server, client))
    finally:
        client.close()
        rest.stop()
    assert reason == "the replay reached its last bar"

    assert server.stalled >= 1 and stalled.state.feed["reconnects"] >= 1
    assert rest.count("/api/v3/klines") >= 1  # the missed minutes came over REST
    assert "missing_bars" not in stalled.state.feed and "flat_bars" not in stalled.state.feed
    path = tmp_path / "stalled" / "agent.db"
    times = [t for (t,) in query(path, "SELECT time_ms FROM equity_points ORDER BY time_ms")]
    assert len(times) == BARS and all(b - a == 60_000 for a, b in itertools.pairwise(times))
    straight = account_record(tmp_path / "unbroken" / "agent.db")
    got = account_record(path)
    assert got["decisions"] and got["orders"]
    for part in straight:
        assert got[part] == straight[part], part


async def _run_unbroken(loop: TradingLoop, server: ReplayServer) -> str:
    await server.start()
    stream = BinanceStream(STREAMS, base_url=server.url)
    return await _trade(loop, server, stream)


async def _run_stalled(loop: TradingLoop, server: ReplayServer, client: BinanceRestClient) -> str:
    await server.start()
    stream = BinanceStream(
        STREAMS,
        base_url=server.url,
        backfill=rest_backfill(client),
        silence_s=0.4,
        clock_ms=server.market_now_ms,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
    )
    reason = await _trade(loop, server, stream)
    assert stream.stats.stalls >= 1 and stream.stats.backfilled_bars > 0
    return reason


@pytest.mark.slow
def test_sigterm_while_the_stream_reconnects_stops_cleanly(offline_env, cli, tmp_path) -> None:
    """A stop during the backoff between reconnection attempts finishes like any other: exit 0
    and the account recorded as stopped, with nothing left running."""
    rest = LoopbackBinance().start()
    env = {
        **offline_env,
        "AGENT_BINANCE__BASE_URL": rest.base_url,
        "AGENT_BINANCE__STREAM_URL": "ws://127.0.0.1:9",  # nothing listens: it keeps retrying
    }
    log = tmp_path / "stderr.txt"
    args = ("--feed", "binance", "--strategy", "sma_cross", "--symbol", "BTCUSDT")
    try:
        with log.open("w") as err:
            proc = subprocess.Popen([str(BIN / "agent-trade"), *args], env=env, stderr=err)
            deadline = time.monotonic() + 60
            while "reconnecting in" not in log.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        rest.stop()
    assert "Traceback" not in log.read_text()
    shown = json.loads(cli("agent-trade", "status", "--json", env=env).stdout)
    assert shown["status"] == "stopped" and shown["stop_reason"] == "stop requested"
