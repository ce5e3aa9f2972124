"""`agent-trade` as a user runs it: real subprocesses, the bundled sample replayed through the
loopback WebSocket server and the real stream client, a real SQLite store, and signals."""

from __future__ import annotations

import itertools
import json
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from account_record import account_record, query
from conftest import BIN, database_url
from launcher import popen
from sqlalchemy.engine import make_url

from execution.ledger import Ledger
from execution.paper import fill_from_row

FAST = ("--feed", "replay", "--speed", "20000")
MINUTE_MS = 60_000


def db(offline_env: dict[str, str]) -> Path:
    return Path(offline_env["AGENT_DATA_DIR"]) / "agent.db"


def status(cli, *args: str, env: dict[str, str] | None = None) -> dict:
    result = cli("agent-trade", "status", "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def committed_bars(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        rows = query(path, "SELECT state_json FROM trading_loops")
    except sqlite3.OperationalError:  # the schema is still being created
        return 0
    return json.loads(rows[0][0])["paper"]["bars"] if rows else 0


def start(offline_env: dict[str, str], *args: str) -> subprocess.Popen:
    return popen([str(BIN / "agent-trade"), *args], offline_env)


def wait_for_bars(
    proc: subprocess.Popen, path: Path, bars: int, timeout_s: float = 60, poll_s: float = 0.05
) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = committed_bars(path)
        if done >= bars:
            return done
        assert proc.poll() is None, proc.communicate()
        time.sleep(poll_s)
    raise AssertionError(f"fewer than {bars} bars committed after {timeout_s} s")


def rebuilt_books(path: Path) -> tuple[float, float, dict[str, float]]:
    """Equity, cash and positions recomputed from nothing but the stored fills and marks."""
    state = json.loads(query(path, "SELECT state_json FROM trading_loops")[0][0])
    columns = [
        "order_id", "symbol", "side", "quantity", "price", "fee", "liquidity", "bar", "time_ms",
        "reason",
    ]  # fmt: skip
    rows = query(path, f"SELECT {', '.join(columns)} FROM paper_fills ORDER BY seq")
    ledger = Ledger(state["initial_cash"])
    for row in rows:
        ledger.apply(fill_from_row(dict(zip(columns, row, strict=True))))
    marks = state["paper"]["marks"]
    return ledger.equity(marks), ledger.cash, dict(ledger.held())


def assert_books_consistent(path: Path, shown: dict) -> None:
    """Cash + positions × price in `shown` (what `status --json` printed for the stopped account)
    equals the equity rebuilt from fills; no order went out twice; every minute was processed
    exactly once."""
    equity, cash, held = rebuilt_books(path)
    assert shown["equity"] == pytest.approx(equity, abs=0.01)
    # What the loop itself booked at its last bar, from its in-memory (restored) account:
    (loop_equity, loop_cash), *_ = query(
        path, "SELECT equity, cash FROM equity_points ORDER BY time_ms DESC LIMIT 1"
    )
    assert loop_equity == pytest.approx(equity, abs=1e-6) and loop_cash == pytest.approx(cash)
    value = sum(p["quantity"] * p["mark"] for p in shown["positions"])
    assert shown["cash"] + value == pytest.approx(equity, abs=0.02)
    assert {p["symbol"]: p["quantity"] for p in shown["positions"]} == pytest.approx(held)

    orders = query(path, "SELECT client_order_id, decision_id, order_json FROM paper_orders")
    entries = [o for o in orders if o[1]]
    assert len({o[1] for o in entries}) == len(entries)  # one order per decision at most
    filled = Counter()
    for order_id, quantity in query(path, "SELECT order_id, quantity FROM paper_fills"):
        filled[order_id] += Decimal(repr(quantity))
    for client_order_id, _, order_json in entries:
        assert filled[client_order_id] <= Decimal(json.loads(order_json)["quantity"])

    times = [t for (t,) in query(path, "SELECT time_ms FROM equity_points ORDER BY time_ms")]
    assert len(times) == len(set(times)) == shown["bars"]
    assert all(b - a == MINUTE_MS for a, b in itertools.pairwise(times))


@pytest.mark.slow
def test_replay_run_trades_and_status_shows_theaccount_record(cli, offline_env) -> None:
    result = cli("agent-trade", *FAST, "--max-bars", "120", "--decide-every", "5")
    assert result.returncode == 0, result.stderr
    assert "offline model" in result.stderr and "loopback WebSocket" in result.stderr
    assert "stopped — processed 120 bars" in result.stdout

    shown = status(cli)
    assert shown["bars"] == 120 and shown["trading_state"] == "ACTIVE"
    assert shown["decisions"] == 120 // 5 * 2  # both symbols at every 5th close
    assert shown["outcomes"].get("approved", 0) >= 1 and shown["fills"] >= 1
    assert shown["last_decision"]["symbol"] in ("BTCUSDT", "ETHUSDT")
    path = db(offline_env)
    assert_books_consistent(path, shown)
    stored = query(path, "SELECT COUNT(*) FROM decisions WHERE run_id = 'trade-paper'")
    assert stored[0][0] == shown["decisions"]


@pytest.mark.slow
def test_sigkill_mid_run_then_restart_resumes_without_duplicates(cli, offline_env) -> None:
    path = db(offline_env)
    proc = start(offline_env, "--feed", "replay", "--speed", "3000", "--decide-every", "3")
    wait_for_bars(proc, path, 80)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    killed = status(cli)
    assert killed["status"].startswith("not running (ended without a clean stop")
    assert_books_consistent(path, killed)
    decisions_before = killed["decisions"]

    resumed = cli("agent-trade", *FAST, "--decide-every", "3", "--max-bars", "60")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming account 'paper' after the bar of {killed['last_bar']}" in resumed.stderr
    after = status(cli)
    assert after["bars"] == killed["bars"] + 60
    assert after["decisions"] >= decisions_before + 60 // 3 * 2 - 2
    assert_books_consistent(path, after)


KILL_SEED = 16


@pytest.mark.slow
def test_ten_random_sigkills_repeat_the_uninterrupted_run(cli, offline_env, tmp_path) -> None:
    """SIGKILLed at ten seeded random points (a bar count, then a moment inside the next step)
    and restarted each time, the account is the uninterrupted one: the same decisions, orders
    and client ids, fills, gate verdicts, risk state and equity at every bar."""
    # ETHUSDT has no bundled depth capture: paper fills that walk a replayed order book depend
    # on which depth messages arrived before a bar, and a restart rebuilds the book from a
    # snapshot, so those fills are not a restart's to repeat.
    path, total, every = db(offline_env), 100, ("--decide-every", "2", "--symbol", "ETHUSDT")
    rng = random.Random(KILL_SEED)
    points = sorted(rng.sample(range(5, total - 5), 10))
    pauses = [round(rng.uniform(0, 0.04), 3) for _ in points]
    print(f"seed {KILL_SEED}: SIGKILL after bars {points}, then {pauses} s")
    reached = []
    for point, pause in zip(points, pauses, strict=True):
        proc = start(offline_env, "--feed", "replay", "--speed", "3000", *every)
        wait_for_bars(proc, path, point, poll_s=0.01)
        time.sleep(pause)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL, f"seed {KILL_SEED}: ended before kill"
        reached.append(committed_bars(path))
    assert reached == sorted(reached) and reached[-1] < total, (KILL_SEED, points, reached)
    rest = str(total - committed_bars(path))
    assert cli("agent-trade", *FAST, *every, "--max-bars", rest).returncode == 0
    straight_env = {"AGENT_DATA_DIR": str(tmp_path / "straight")}
    straight = cli("agent-trade", *FAST, *every, "--max-bars", str(total), env=straight_env)
    assert straight.returncode == 0, straight.stderr

    killed, uninterrupted = account_record(path), account_record(tmp_path / "straight" / "agent.db")
    assert len(killed["decisions"]) == total // 2 and killed["orders"]
    assert len(killed["equity"]) == total
    for part in killed:
        assert killed[part] == uninterrupted[part], (f"seed {KILL_SEED}, kills {reached}", part)


@pytest.mark.slow
def test_sigterm_finishes_the_step_and_records_the_stop(offline_env, cli) -> None:
    path = db(offline_env)
    proc = start(offline_env, "--feed", "replay", "--speed", "1500")
    wait_for_bars(proc, path, 20)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "SIGTERM: finishing the current step, then stopping" in err
    shown = status(cli)
    assert shown["status"] == "stopped" and shown["stop_reason"] == "stop requested"
    assert_books_consistent(path, shown)


@pytest.mark.slow
def test_halt_stops_new_orders_until_resumed(cli, offline_env) -> None:
    path = db(offline_env)
    first = cli("agent-trade", *FAST, "--max-bars", "60", "--decide-every", "3")
    assert first.returncode == 0, first.stderr
    before = status(cli)

    halted = cli("agent-trade", "halt", "--reason", "test halt")
    assert halted.returncode == 0 and "halted 'paper': test halt" in halted.stdout
    second = cli("agent-trade", *FAST, "--max-bars", "60", "--decide-every", "3")
    assert second.returncode == 0, second.stderr
    during = status(cli)
    assert during["trading_state"] == "HALTED" and during["kill_switch_file"]
    assert "kill switch: test halt" in during["locks"][0]
    assert during["decisions"] == before["decisions"]  # no model call while halted
    assert during["orders"] == before["orders"]

    assert cli("agent-trade", "resume").returncode == 0
    third = cli("agent-trade", *FAST, "--max-bars", "60", "--decide-every", "3")
    assert third.returncode == 0, third.stderr
    after = status(cli)
    assert after["trading_state"] == "ACTIVE" and after["decisions"] > during["decisions"]
    assert_books_consistent(path, after)


@pytest.mark.slow
def test_kill_switch_file_halts_a_running_loop(cli, offline_env) -> None:
    path = db(offline_env)
    proc = start(offline_env, "--feed", "replay", "--speed", "1500", "--decide-every", "1")
    wait_for_bars(proc, path, 10)
    (Path(offline_env["AGENT_DATA_DIR"]) / "KILL-paper").write_text("operator\n")
    halted_at = wait_for_bars(proc, path, committed_bars(path) + 3)
    orders_then = query(path, "SELECT COUNT(*) FROM paper_orders WHERE decision_id != ''")[0][0]
    wait_for_bars(proc, path, halted_at + 20)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    shown = status(cli)
    assert shown["trading_state"] == "HALTED"
    assert any("kill-switch file" in lock for lock in shown["locks"])
    orders_now = query(path, "SELECT COUNT(*) FROM paper_orders WHERE decision_id != ''")[0][0]
    assert orders_now == orders_then


@pytest.mark.slow
def test_resume_lets_a_running_loop_trade_again(cli, offline_env) -> None:
    path = db(offline_env)
    proc = start(offline_env, "--feed", "replay", "--speed", "1500", "--decide-every", "1")
    wait_for_bars(proc, path, 5)
    assert cli("agent-trade", "halt").returncode == 0
    wait_for_bars(proc, path, committed_bars(path) + 3)
    decisions = json.loads(query(path, "SELECT state_json FROM trading_loops")[0][0])["decisions"]
    assert cli("agent-trade", "resume").returncode == 0
    # Six bars after the resume is on record: at this speed the command's own start-up lets
    # as many bars go by as the test used to count from the halt.
    wait_for_bars(proc, path, committed_bars(path) + 6)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    shown = status(cli)
    assert shown["trading_state"] == "ACTIVE" and shown["decisions"] > decisions


@pytest.mark.slow
def test_llm_failures_enter_safe_mode_and_the_loop_keeps_running(cli, failing_llm) -> None:
    env = failing_llm.env
    refused = cli("agent-trade", *FAST, "--max-bars", "30", env=env)
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    assert "decisions per day" in refused.stderr and failing_llm.server.requests == []
    args = ("--max-bars", "30", "--decide-every", "5", "--budget-usd", "1")
    result = cli("agent-trade", *FAST, *args, env=env)
    assert result.returncode == 0, result.stderr
    shown = status(cli, env=env)
    assert shown["bars"] == 30
    assert shown["outcomes"] == {"abstain": 12} and shown["orders"] == 0
    assert shown["trading_state"] == "REDUCING"
    assert any("consecutive LLM failures: safe mode" in lock for lock in shown["locks"])
    assert "abstained" in shown["last_error"]


@pytest.mark.slow
def test_live_mode_needs_the_confirmation_and_a_live_feed(cli) -> None:
    result = cli("agent-trade", "--mode", "live")
    assert result.returncode == 2
    assert "LIVE_TRADING_CONFIRM=yes" in result.stderr and "Traceback" not in result.stderr
    replayed = cli("agent-trade", "--mode", "live", env={"LIVE_TRADING_CONFIRM": "yes"})
    assert replayed.returncode == 2 and "--mode live needs --feed binance" in replayed.stderr


@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_2(cli) -> None:
    for args, message in [
        (("--symbol", "BTC-USD"), "invalid symbol 'BTC-USD'"),
        (("--symbol", "SOLUSDT"), "--feed replay has no SOLUSDT"),
        (("--speed", "0"), "invalid --speed 0"),
        (("--decide-every", "0"), "invalid --decide-every 0"),
        (("--feed", "binance"), "--feed binance cannot load the last day of bars"),
    ]:
        result = cli("agent-trade", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
    missing = cli("agent-trade", "status", "--account", "nobody")
    assert missing.returncode == 2 and "no trading account 'nobody'" in missing.stderr


@pytest.mark.slow
def test_dropped_sockets_lose_no_bar(cli, offline_env) -> None:
    result = cli("agent-trade", *FAST, "--max-bars", "200", "--drop-every", "40")
    assert result.returncode == 0, result.stderr
    shown = status(cli)
    assert shown["feed"]["reconnects"] >= 2 and "missing_bars" not in shown["feed"]
    assert "flat_bars" not in shown["feed"]  # every minute stepped with both symbols' real bars
    assert_books_consistent(db(offline_env), shown)


def test_metrics_endpoint_exposes_equity_decisions_and_lag(tmp_path: Path) -> None:
    import socket

    import httpx

    from agent.loop_metrics import LoopMetrics
    from agent.offline import OfflineModel
    from agent.strategy import trading_agent
    from agent.trading_loop import TradingLoop
    from market.binance_ws import bars_from_frame
    from market.sample import load_sample, sample_rules
    from store import open_store

    symbols = ["BTCUSDT", "ETHUSDT"]
    frames = {s: load_sample(s) for s in symbols}
    metrics = LoopMetrics()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics.serve(port)
    loop = TradingLoop(
        account="m",
        symbols=symbols,
        store=open_store(f"sqlite:///{tmp_path / 'agent.db'}"),
        strategy=trading_agent(
            OfflineModel(), sample_rules(), account="m", decide_every=5, cash=10_000
        ),
        strategy_label="agent",
        rules=sample_rules(),
        history={s: f.iloc[:1440] for s, f in frames.items()},
        cash=10_000,
        kill_switch=tmp_path / "KILL",
        observers=[metrics],
    )
    bars = {s: bars_from_frame(f.iloc[1440:1470], s, "1m", "stream") for s, f in frames.items()}
    for i in range(30):
        loop.step(bars["BTCUSDT"][i].open_time, {s: bars[s][i] for s in symbols})
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    listening = Path("/proc/net/tcp").read_text()  # bound to loopback, not every interface
    assert f"0100007F:{port:04X}" in listening and f"00000000:{port:04X}" not in listening
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples["agent_bars_total"] == 30
    assert samples["agent_equity_usdt"] == pytest.approx(loop.venue.equity())
    decided = sum(v for k, v in samples.items() if k.startswith("agent_decisions_total{"))
    assert decided == loop.state.decisions == 12
    assert samples["agent_feed_lag_seconds"] > 0
    assert samples["agent_llm_latency_seconds_count"] >= decided
    assert samples["agent_stalled_seconds"] == 0  # it moves

    quiet_since = int(time.time() * 1000) - 10 * 60_000  # no progress for ten minutes
    loop.state = loop.state.model_copy(
        update={"wall_updated_ms": quiet_since, "bar_every_ms": 60_000}
    )
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    stalled = next(line for line in text.splitlines() if line.startswith("agent_stalled_seconds"))
    assert float(stalled.split(" ")[1]) > 60


@pytest.mark.slow
def test_testnet_mode_trades_on_the_exchange_and_restarts_without_duplicates(cli) -> None:
    from loopback_exchange import API_KEY, API_SECRET, ExchangeFault, LoopbackExchange

    exchange = LoopbackExchange(prices={"BTCUSDT": "110000", "ETHUSDT": "3900"}).start()
    # The first order fills but its reply is a 503: the executor asks, and the fills are booked.
    exchange.script(ExchangeFault(status=503, after_accept=True))
    env = {
        "BINANCE_API_KEY": API_KEY,
        "BINANCE_API_SECRET": API_SECRET,
        "AGENT_BINANCE__TRADE_URL": exchange.base_url,
        "AGENT_BINANCE__MAX_RETRIES": "2",
    }
    args = ("--mode", "testnet", "--account", "tn", *FAST, "--decide-every", "3")
    try:
        first = cli("agent-trade", *args, "--max-bars", "90", env=env)
        assert first.returncode == 0, first.stderr
        assert "orders: Binance testnet, reconciled" in first.stderr
        assert "key permissions: not checked on testnet (Binance's testnet has no" in first.stderr
        assert exchange.count("GET", "/sapi/v1/account/apiRestrictions") == 0
        again = cli("agent-trade", *args, "--max-bars", "30", env=env)
        assert again.returncode == 0, again.stderr
        # Each symbol's rules were asked for once: the restart read them from the store.
        assert exchange.count("GET", "/api/v3/exchangeInfo") == 2
        shown = status(cli, "--account", "tn", env=env)
        placed = [o for o in exchange.orders if o["clientOrderId"].startswith("agt-")]
        assert placed and shown["orders"] == len(placed)
        ids = [o["clientOrderId"] for o in placed]
        assert len(ids) == len(set(ids))  # nothing sent twice, across the restart
        # The ledger booked exactly what the exchange did, fees in the base asset included.
        usdt, _ = exchange.balance("USDT")
        assert shown["cash"] == pytest.approx(float(usdt), abs=0.01)
        held = {p["symbol"]: p["quantity"] for p in shown["positions"]}
        for symbol, asset in (("BTCUSDT", "BTC"), ("ETHUSDT", "ETH")):
            assert held.get(symbol, 0.0) == pytest.approx(float(exchange.balance(asset)[0]))
        assert shown["mode"] == "testnet" and shown["bars"] == 120
        clash = cli("agent-trade", "--account", "tn", *FAST, "--max-bars", "1", env=env)
        assert clash.returncode == 2 and "trades in testnet mode, not paper" in clash.stderr
    finally:
        exchange.stop()


@pytest.mark.slow
def test_testnet_mode_needs_keys_and_refuses_a_shortaccount_record(cli) -> None:
    missing = cli("agent-trade", "--mode", "testnet", *FAST, "--max-bars", "1")
    assert missing.returncode == 2 and "BINANCE_API_KEY" in missing.stderr

    from loopback_exchange import API_KEY, API_SECRET, LoopbackExchange

    exchange = LoopbackExchange(balances={"USDT": "500"}).start()
    env = {
        "BINANCE_API_KEY": API_KEY,
        "BINANCE_API_SECRET": API_SECRET,
        "AGENT_BINANCE__TRADE_URL": exchange.base_url,
    }
    try:
        short = cli("agent-trade", "--mode", "testnet", *FAST, "--max-bars", "1", env=env)
    finally:
        exchange.stop()
    assert short.returncode == 2
    assert "the ledger has 10,000.00 USDT but Binance holds 500" in short.stderr
    assert exchange.count("POST", "/api/v3/order") == 0


@pytest.mark.slow
def test_sizing_by_agreement_is_refused_where_the_model_is_asked_once(cli) -> None:
    refused = cli(
        "agent-trade", *FAST, "--max-bars", "1", env={"AGENT_RISK__SIZE_BY_AGREEMENT": "true"}
    )
    assert refused.returncode == 2
    assert "risk.size_by_agreement has nothing to act on in agent-trade" in refused.stderr


@pytest.mark.slow
def test_kill_while_an_order_is_in_flight_settles_it_by_asking(cli, offline_env) -> None:
    """The order reached the exchange and filled, but the process died before the reply: the
    restart asks Binance about the written-ahead order instead of sending it again."""
    from loopback_exchange import API_KEY, API_SECRET, ExchangeFault, LoopbackExchange

    exchange = LoopbackExchange(prices={"BTCUSDT": "110000", "ETHUSDT": "3900"}).start()
    exchange.script(ExchangeFault(after_accept=True, delay_s=60))  # the first order's reply
    env = {
        **offline_env,
        "BINANCE_API_KEY": API_KEY,
        "BINANCE_API_SECRET": API_SECRET,
        "AGENT_BINANCE__TRADE_URL": exchange.base_url,
    }
    args = ("--mode", "testnet", "--feed", "replay", "--decide-every", "3")
    try:
        proc = start(env, *args, "--speed", "3000")
        deadline = time.monotonic() + 60
        while not any(o["clientOrderId"].startswith("agt-") for o in exchange.orders):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        (in_flight,) = [o["clientOrderId"] for o in exchange.orders]
        rows = query(db(offline_env), "SELECT status FROM paper_orders")
        assert rows == [("accepted",)]  # written ahead, outcome unknown to the account

        restarted = cli("agent-trade", *args, *FAST[2:], "--max-bars", "30", env=env)
        assert restarted.returncode == 0, restarted.stderr
        assert len(exchange.orders_with(in_flight)) == 1  # asked about, never sent again
        shown = status(cli, env=env)
        usdt, _ = exchange.balance("USDT")
        assert shown["cash"] == pytest.approx(float(usdt), abs=0.01)
        settled = query(db(offline_env), f"SELECT status FROM paper_orders WHERE "
                        f"client_order_id = '{in_flight}'")  # fmt: skip
        assert settled == [("filled",)]
    finally:
        exchange.stop()


@pytest.mark.slow
def test_a_classic_strategy_trades_on_the_exchange_through_the_same_loop(cli) -> None:
    from loopback_exchange import API_KEY, API_SECRET, LoopbackExchange

    exchange = LoopbackExchange(prices={"BTCUSDT": "110000", "ETHUSDT": "3900"}).start()
    env = {
        "BINANCE_API_KEY": API_KEY,
        "BINANCE_API_SECRET": API_SECRET,
        "AGENT_BINANCE__TRADE_URL": exchange.base_url,
    }
    strategy = ("--strategy", "sma_cross", "--fast", "3", "--slow", "8", "--size", "20")
    try:
        run = cli(
            "agent-trade", "--mode", "testnet", "--account", "sma", *FAST, *strategy,
            "--max-bars", "60", env=env,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "strategy: sma_cross fast=3 slow=8" in run.stderr
        placed = [o for o in exchange.orders if o["clientOrderId"].startswith("agt-")]
        shown = status(cli, "--account", "sma", env=env)
        assert placed and shown["orders"] == len(placed)
        assert shown["cash"] == pytest.approx(float(exchange.balance("USDT")[0]), abs=0.01)
    finally:
        exchange.stop()


@pytest.mark.slow
def test_flags_that_do_not_apply_say_why(cli) -> None:
    for args, message in [
        (("--strategy", "sma_cross", "--decide-every", "5"), "--decide-every does not apply"),
        (("--fast", "5"), "--fast does not apply to the agent"),
        (("--size", "20"), "--size does not apply to the agent"),
        (("--strategy", "sma_cross", "--budget-usd", "1"), "--budget-usd does not apply"),
        (("--mode", "testnet", "--fee-bps", "5"), "--fee-bps is for paper accounts"),
        (("--feed", "binance", "--data", "x.csv"), "--data is replayed"),
        (("--speed", "fast"), "invalid --speed fast"),
        (("--strategy", "golden_goose"), "unknown strategy 'golden_goose'"),
    ]:
        result = cli("agent-trade", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_bars_from_a_live_feed_are_kept_in_the_store(tmp_path: Path) -> None:
    """What the loop collected shows in `agent-data list` (the store's summary)."""
    from agent.trading_loop import TradingLoop
    from backtest.strategies.sma_cross import SmaCross, SmaCrossParams
    from market.binance_ws import bars_from_frame
    from market.sample import load_sample, sample_rules
    from store import open_store
    from store.candles import summarize

    frame = load_sample("BTCUSDT")
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    loop = TradingLoop(
        account="live-feed",
        symbols=["BTCUSDT"],
        store=store,
        strategy=SmaCross(SmaCrossParams()),
        strategy_label="sma_cross fast=20 slow=60",
        rules=sample_rules(),
        history={"BTCUSDT": frame.iloc[:1_440]},
        cash=10_000,
        kill_switch=tmp_path / "KILL",
        realtime=True,
    )
    stream = bars_from_frame(frame.iloc[1_440:1_470], "BTCUSDT", "1m", "stream")
    for bar in stream:
        loop.step(bar.open_time, {"BTCUSDT": bar})
    (series,) = summarize(store, "BTCUSDT")
    assert series.rows == 30
    assert (series.first_open_ms, series.last_open_ms) == (
        stream[0].open_time,
        stream[-1].open_time,
    )


def test_a_missing_account_on_postgresql_is_named_without_the_database_password(cli) -> None:
    url = database_url("postgresql")
    result = cli("agent-trade", "status", "--account", "nobody", env={"DATABASE_URL": url})
    assert result.returncode == 2 and "no trading account 'nobody'" in result.stderr
    password = make_url(url).password
    assert password and f":{password}@" not in result.stderr and ":***@" in result.stderr


@pytest.mark.slow
def test_a_halt_names_an_account_the_store_holds_and_account_names_stay_in_the_data_dir(
    cli, offline_env, tmp_path
) -> None:
    """A mistyped name used to report a halt while the real account traded on; a name with a
    path in it wrote its kill-switch file outside the data directory."""
    first = cli("agent-trade", *FAST, "--max-bars", "5", "--account", "sma")
    assert first.returncode == 0, first.stderr
    typo = cli("agent-trade", "halt", "--account", "smaa", "--reason", "stop now")
    assert typo.returncode == 2 and "no trading account 'smaa'" in typo.stderr
    assert "(accounts: sma)" in typo.stderr and "nothing was halted" in typo.stderr
    data = Path(offline_env["AGENT_DATA_DIR"])
    assert not (data / "KILL-smaa").exists()
    for name in ("x/../../escape", "a/b", "", "..", "n" * 65):
        bad = cli("agent-trade", "halt", "--account", name)
        assert bad.returncode == 2 and "is not an account name" in bad.stderr, (name, bad.stderr)
    assert not (tmp_path / "escape").exists() and not (data / "KILL-a").exists()
    both = cli("agent-trade", "resume", "--chat", "--account", "sma")
    assert both.returncode == 2 and "give one of them" in both.stderr
    assert cli("agent-trade", "halt", "--account", "sma").returncode == 0
    assert status(cli, "--account", "sma")["trading_state"] == "HALTED"


def test_a_command_refuses_the_flags_it_would_ignore(cli) -> None:
    """`status --mode live` showed the paper account as if nothing were said; every flag a
    command cannot act on is now named and refused, as agent-backtest refuses its own."""
    for args, message in [
        (("status", "--mode", "live"), "--mode: not for `agent-trade status` (only for running"),
        (("fills", "--speed", "max"), "--speed: not for `agent-trade fills`"),
        (("resume", "--fee-bps", "5"), "--fee-bps: not for `agent-trade resume`"),
        (("halt", "--json"), "--json: not for `agent-trade halt`"),
        (("ledger", "--reason", "x"), "--reason: not for `agent-trade ledger`"),
        (("--max-bars", "1", "--json"), "--json is for status, fills and ledger"),
    ]:
        result = cli("agent-trade", *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)


@pytest.mark.slow
def test_a_spent_budget_puts_the_account_in_safe_mode_on_record(cli) -> None:
    """The help says "--budget-usd: then safe mode (exits only)", yet a spent budget left the
    account ACTIVE with no lock while no decision was asked any more."""
    from loopback_openai import LoopbackOpenAI, Scripted
    from scripted_model import completion, tool_call

    def hold(request: dict) -> Scripted:
        symbol = "ETHUSDT" if "Symbol: ETHUSDT" in str(request["messages"]) else "BTCUSDT"
        call = tool_call("submit_signal", {"symbol": symbol, "action": "hold", "confidence": 0.5})
        return Scripted(200, completion(call, request, 0))

    server = LoopbackOpenAI(responder=hold).start()
    try:
        env = {
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": "sk-test-loopback",
            "AGENT_LLM__PRICES_HOST": "127.0.0.1",  # priced as the paid model it stands in for
        }
        args = ("--max-bars", "60", "--decide-every", "5", "--budget-usd", "0.0005")
        result = cli("agent-trade", *FAST, *args, env=env)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    shown = status(cli, env=env)
    assert shown["trading_state"] == "REDUCING"
    assert any("budget is spent" in lock and "safe mode" in lock for lock in shown["locks"])
