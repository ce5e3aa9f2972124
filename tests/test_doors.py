"""Only the gate can make an order a venue accepts, and nothing rebuilds one behind its back:
each former side door (the simulator's unsealed place path, the paper queue, a mint anyone
could call, a sealed order read back from the store) now raises or is refused."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from loopback_exchange import API_KEY, API_SECRET, LoopbackExchange
from test_binance_executor import approve

import risk.approval
from agent.trading_loop import TradingLoop
from backtest.strategies.sma_cross import SmaCross, SmaCrossParams
from execution.binance_executor import BinanceExecutor
from execution.binance_venue import BinanceVenue
from execution.paper import GrowingFeed, PaperExecutor
from market.binance_ws import bars_from_frame
from market.sample import load_sample, sample_rules
from risk.approval import UnapprovedOrderError, claim_mint
from store import open_store


def test_nothing_but_the_gate_can_seal_an_order() -> None:
    assert not hasattr(risk.approval, "_issue")
    with pytest.raises(UnapprovedOrderError, match="only the risk gate seals orders"):
        claim_mint()


def test_the_paper_venue_takes_orders_only_through_the_seal() -> None:
    venue = PaperExecutor(sample_rules(), GrowingFeed(["BTCUSDT"]), cash=10_000)
    order = approve("door-paper")
    for forged in (order.model_copy(update={"quantity": Decimal(5)}), order.model_dump()):
        with pytest.raises(UnapprovedOrderError):
            venue.execute(forged)  # type: ignore[arg-type]
    assert not hasattr(venue, "queued") and not hasattr(venue.sim, "place_accepted")
    venue.execute(order)
    assert isinstance(venue.sim.accepted, tuple)  # a view: appending to it is impossible


def test_the_binance_venue_checks_the_seal_before_it_journals() -> None:
    journal: list = []
    exchange = LoopbackExchange().start()
    try:
        executor = BinanceExecutor(API_KEY, API_SECRET, base_url=exchange.base_url)
        venue = BinanceVenue(
            executor, sample_rules(), GrowingFeed(["BTCUSDT"]), cash=10_000, journal=journal.append
        )
        forged = approve("door-binance").model_copy(update={"quantity": Decimal(2)})
        with pytest.raises(UnapprovedOrderError):
            venue.execute(forged)
        assert journal == [] and not exchange.orders
    finally:
        exchange.stop()


def loop(tmp_path: Path, history: int) -> TradingLoop:
    frame = load_sample("BTCUSDT")
    tmp_path.mkdir(exist_ok=True)
    return TradingLoop(
        account="doors",
        symbols=["BTCUSDT"],
        store=open_store(f"sqlite:///{tmp_path / 'agent.db'}"),
        strategy=SmaCross(SmaCrossParams(fast=2, slow=5)),
        strategy_label="sma_cross fast=2 slow=5",
        rules=sample_rules(),
        history={"BTCUSDT": frame.iloc[:history]},
        cash=10_000,
        kill_switch=tmp_path / "KILL",
    )


def step_until_an_order_waits(tmp_path: Path) -> tuple[int, dict]:
    """Step bars until one ends with an order accepted for the next open; stop there, as a
    kill -9 after that bar's commit would."""
    frame = load_sample("BTCUSDT")
    first = loop(tmp_path, 1_440)
    bars = bars_from_frame(frame.iloc[1_440:1_640], "BTCUSDT", "1m", "stream")
    for offset, bar in enumerate(bars):
        first.step(bar.open_time, {"BTCUSDT": bar})
        if first.state.paper.queued:
            return 1_440 + offset + 1, first.state.paper.queued[0]
    raise AssertionError("sma_cross 2/5 placed no order in 200 bars")


def restart_and_step(tmp_path: Path, resume_at: int) -> TradingLoop:
    frame = load_sample("BTCUSDT")
    again = loop(tmp_path, resume_at)
    (bar,) = bars_from_frame(frame.iloc[resume_at : resume_at + 1], "BTCUSDT", "1m", "stream")
    again.step(bar.open_time, {"BTCUSDT": bar})
    return again


def test_a_restart_regates_the_waiting_order_and_fills_it_as_an_unbroken_run(tmp_path) -> None:
    resume_at, waiting = step_until_an_order_waits(tmp_path / "killed")
    again = restart_and_step(tmp_path / "killed", resume_at)
    straight = loop(tmp_path / "straight", 1_440)
    frame = load_sample("BTCUSDT")
    for bar in bars_from_frame(frame.iloc[1_440 : resume_at + 1], "BTCUSDT", "1m", "stream"):
        straight.step(bar.open_time, {"BTCUSDT": bar})
    cid = waiting["order"]["client_order_id"]
    assert again.venue.orders[cid].status == straight.venue.orders[cid].status == "filled"
    assert again.venue.ledger.cash == straight.venue.ledger.cash
    assert again.venue.ledger.held() == straight.venue.ledger.held()


def test_a_forged_row_in_the_store_is_refused_on_restart(tmp_path) -> None:
    resume_at, waiting = step_until_an_order_waits(tmp_path)
    with sqlite3.connect(tmp_path / "agent.db") as db:  # an edit behind the loop's back
        (raw,) = db.execute("SELECT state_json FROM trading_loops").fetchone()
        state = json.loads(raw)
        state["paper"]["queued"][0]["order"]["quantity"] = "9.99999"
        db.execute("UPDATE trading_loops SET state_json = ?", (json.dumps(state),))
    again = restart_and_step(tmp_path, resume_at)
    cid = waiting["order"]["client_order_id"]
    refused = again.venue.orders[cid]
    assert refused.status == "rejected" and "refused on restart" in (refused.reason or "")
    assert not again.venue.ledger.held() and again.venue.ledger.cash == pytest.approx(
        again.venue.ledger.initial_cash + sum(t.pnl for t in again.venue.ledger.trades)
    )
