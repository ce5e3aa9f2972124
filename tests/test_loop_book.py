"""The loop's book is the runner's: a replayed depth stream reaches the gate through the one
market view, so a tight spread limit vetoes entries `WIDE_SPREAD` on paper, and a loose one
lets the same entries through. The real replay server, stream client, snapshots and loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.trading_loop import TradingLoop
from backtest.strategies.sma_cross import SmaCross, SmaCrossParams
from config.settings import BinanceSettings
from market.binance_rest import BinanceRestClient
from market.binance_ws import BinanceStream, depth_stream
from market.books import Books, rest_snapshots
from market.replay_server import ReplayServer, sample_backfill
from market.sample import load_sample, sample_rules
from risk.limits import RiskLimits
from risk.records import load_verdicts
from store import open_store

BARS = 120


def run_loop(tmp_path: Path, limits: RiskLimits) -> TradingLoop:
    frame = load_sample("BTCUSDT")
    start = int(frame["open_time"].iloc[1_440])
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")

    async def replay() -> TradingLoop:
        async with ReplayServer(speed=6_000, start_time_ms=start) as server:
            client = BinanceRestClient(BinanceSettings(base_url=server.http_url, max_retries=0))
            books = Books(rest_snapshots(client, limit=100))
            loop = TradingLoop(
                account="book",
                symbols=["BTCUSDT"],
                store=store,
                strategy=SmaCross(SmaCrossParams(fast=2, slow=5)),
                strategy_label="sma_cross fast=2 slow=5",
                rules=sample_rules(),
                history={"BTCUSDT": frame.iloc[:1_440]},
                cash=10_000,
                kill_switch=tmp_path / "KILL",
                limits=limits,
                books=books,
            )
            stream = BinanceStream(
                ["btcusdt@kline_1m", depth_stream("BTCUSDT")],
                base_url=server.url,
                backfill=sample_backfill,
                backoff_base_s=0.05,
            )
            try:
                await loop.run(stream, asyncio.Event(), max_bars=BARS)
            finally:
                await server.stop()
                await stream.aclose()
                client.close()
            return loop

    return asyncio.run(replay())


def entries(tmp_path: Path, limits: RiskLimits) -> list[tuple[bool, str]]:
    """Each entry the gate judged: (did it see a book?, its verdict or first veto code)."""
    loop = run_loop(tmp_path, limits)
    judged = []
    for record in load_verdicts(loop.store, loop.scope):
        if record.signal.action.value != "buy":
            continue
        verdict = record.verdict
        outcome = "approved" if verdict.kind == "approved" else verdict.reasons[0].code.value
        judged.append((record.market.best_bid is not None, outcome))
    return judged


@pytest.mark.slow
def test_a_tight_spread_limit_vetoes_every_entry_that_sees_the_book(tmp_path) -> None:
    judged = entries(tmp_path, RiskLimits(max_spread_bps=0.01))
    with_book = [outcome for booked, outcome in judged if booked]
    assert with_book and set(with_book) == {"WIDE_SPREAD"}
    # Where no synced book was known at the bar, the check does not apply: said, not guessed.
    assert all(outcome != "WIDE_SPREAD" for booked, outcome in judged if not booked)


@pytest.mark.slow
def test_a_loose_spread_limit_lets_the_same_entries_through(tmp_path) -> None:
    judged = entries(tmp_path, RiskLimits(max_spread_bps=500))
    assert any(booked and outcome == "approved" for booked, outcome in judged)
    assert all(outcome != "WIDE_SPREAD" for _, outcome in judged)
