"""The chat as a trading desk: a persisted paper account that a real `agent-ui` buys into, keeps
across a restart and sells out of; the offline assistant's answers to a desk's requests; live
bars from a loopback Binance moving the chat's clock; and the alerts a trader sees."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN, FIXTURES, UI_GROUP, stop
from loopback_binance import LoopbackBinance
from loopback_exchange import API_KEY, API_SECRET, LoopbackExchange
from loopback_thread import serving_thread
from script_strategy import Script, order

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"

from gradio_client import Client
from loopback_ui import ui_client

from agent.alerts import AlertWatch
from agent.loop_state import halt_account, kill_switch_path
from agent.notify import Courier, channels_from, webhook
from agent.offline import CAN_DO, OfflineModel
from agent.trading_loop import TradingLoop
from backtest.strategies.sma_cross import SmaCross, SmaCrossParams
from config import load_settings
from config.settings import AlertSettings
from core.clock import FixedClock
from core.errors import ConfigError, UserError
from core.logging import setup_logging
from execution.paper_records import accounts, load_account, load_equity
from market.binance_ws import bars_from_frame
from market.models import iso_ms
from market.sample import load_sample, sample_rules
from risk.limits_text import limit_lines
from risk.models import SignalAction, SignalSource
from store import open_store

pytestmark = [UI_GROUP, pytest.mark.slow]  # each starts a Gradio app
RUNNING = "Running on local URL"
UPTREND_OFFSET = 6  # with the sample cut here, the chat's first bar has every BTC flag up


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AgentUI:
    """`agent-ui` as a user runs it: a subprocess on loopback, offline, in one data dir."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd, self.log = env, cwd, cwd / "agent-ui.log"

    def __enter__(self) -> Client:
        port = _free_port()
        with self.log.open("w") as sink:
            self.proc = subprocess.Popen(
                [str(BIN / "agent-ui"), "--port", str(port)],
                env={**self.env, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1"},
                cwd=self.cwd,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while RUNNING not in self.log.read_text():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)
        return ui_client(f"http://127.0.0.1:{port}/")

    def __exit__(self, *_: object) -> None:
        stop(self.proc)


def _said(history: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content")) for m in history)


def _fills(offline_env: dict[str, str], tmp_path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(BIN / "agent-trade"), "fills", "--account", "chat", "--json"],
        env=offline_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_buy_survives_a_restart_then_sell_goes_flat_with_the_fills_pnl(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    ui = AgentUI(offline_env, tmp_path)
    with ui as client:
        history, *_ = client.predict("buy 10% BTC", [], "desk", api_name="/chat")
        history, *_ = client.predict(history, "desk", api_name="/approve")
        assert re.search(r"Paper venue: buy 0\.\d+ BTCUSDT filled: 0\.\d+ at", _said(history))
    assert "Binance unreachable" in ui.log.read_text() and "frozen" in ui.log.read_text()
    (buy,) = _fills(offline_env, tmp_path)
    assert buy["side"] == "buy" and buy["symbol"] == "BTCUSDT"
    value = buy["quantity"] * buy["price"]
    assert 990 < value < 1_001  # 10 % of 10,000 USDT, less the fee the cash must also cover

    with ui as client:  # a new process: the position is still there, and sells
        history, *_ = client.predict("portfolio", [], "after-restart", api_name="/chat")
        assert f"BTCUSDT {buy['quantity']:g}" in _said(history)
        history, *_ = client.predict("sell BTC", history, "after-restart", api_name="/chat")
        history, *_ = client.predict(history, "after-restart", api_name="/approve")
        assert "Paper venue: sell" in _said(history)
        history, *_ = client.predict("portfolio", history, "after-restart", api_name="/chat")
        answer = str(history[-1]["content"])
    assert "holding nothing" in answer
    bought, sold = _fills(offline_env, tmp_path)
    assert sold["side"] == "sell" and sold["quantity"] == bought["quantity"]
    assert sold["time"] > bought["time"]
    realised = (sold["price"] - bought["price"]) * bought["quantity"]
    assert f"Realised PnL {realised:+,.2f} USDT" in answer
    assert f"fees {bought['fee'] + sold['fee']:,.2f}" in answer


@pytest.fixture
def desk_app(tmp_path: Path) -> Iterator[Any]:
    """The UI in-process on the sample cut where BTC trends up at the chat's first bar."""
    from agent.ui import build_app  # UI_GROUP: loaded by its worker only

    settings = load_settings(data_dir=tmp_path / "data", offline=True)
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    frames = {s: load_sample(s).iloc[UPTREND_OFFSET:] for s in ("BTCUSDT", "ETHUSDT")}
    app = build_app(settings, store, model=OfflineModel(), frames=frames)
    app.store, app.settings = store, settings
    yield app
    app.chat_service.close()
    store.close()


def _turn(chat: Any, thread: str, text: str) -> tuple[list[str], str]:
    answer = ""
    for node, update in chat.send(thread, text):
        if node == "agent" and isinstance(update, dict):
            answer = "\n".join(
                [answer, *[m.get("content") or "" for m in update.get("messages", [])]]
            )
    calls = [c["name"] for c in chat.snapshot(thread).values.get("tool_calls", [])]
    return calls, answer


def test_the_offline_assistant_answers_a_desks_requests(desk_app: Any) -> None:
    from agent.ui import proposal_markdown

    chat = desk_app.chat_service
    calls, answer = _turn(chat, "a", "show me BTCUSDT indicators and propose a trade")
    assert calls == ["get_market_snapshot", "get_portfolio", "place_order"]
    assert "| indicator | value | reading |" in answer and "| rsi_14 |" in answer
    pending = chat.pending("a")
    assert pending["order"]["side"] == "buy" and pending["order"]["symbol"] == "BTCUSDT"
    shown = proposal_markdown(pending, chat.desk)
    value = float(pending["order"]["quantity"]) * chat.desk.view("BTCUSDT").last_price
    assert f"≈ **{value:,.2f} USDT**" in shown and "of equity** (10,000.00 USDT)" in shown
    assert re.search(r"\| stop_loss \| [\d,.]+ \(-\d\.\d\d%, \d+\.\d ATR\) \|", shown)
    assert "Limits that shaped it:" in shown and "`STEP_SIZE`" in shown
    for _ in chat.resume("a", False, "me"):
        pass

    calls, answer = _turn(chat, "b", "buy 200 USDT of ETH")
    assert calls == ["get_market_snapshot", "place_order"]
    order = chat.pending("b")["order"]
    assert 199 < float(order["quantity"]) * chat.desk.view("ETHUSDT").last_price <= 200
    for _ in chat.resume("b", False, "me"):
        pass

    assert _turn(chat, "c", "what's up?") == ([], f"\n{CAN_DO}")
    assert _turn(chat, "d", "portfolio")[0] == ["get_portfolio"]
    calls, answer = _turn(chat, "e", "cancel agt-000000000000")
    assert calls == ["cancel_order"] and "no order agt-000000000000 on this account" in answer
    calls, answer = _turn(chat, "f", "backtest sma on BTC")
    assert calls == ["run_backtest"] and "sma_cross on BTCUSDT" in answer


def test_fills_and_a_halt_reach_the_notification_feed(desk_app: Any) -> None:
    chat = desk_app.chat_service
    watch = AlertWatch(desk_app.store, desk_app.settings)
    _turn(chat, "a", "buy 10% BTC")
    for _ in chat.resume("a", True, "me"):
        pass
    (fill,) = watch.poll()
    assert fill.kind == "fill" and fill.text.startswith("chat: bought 0.00")
    assert "BTCUSDT at" in fill.text
    assert watch.poll() == []  # told once
    halt_account(desk_app.store, desk_app.settings.data_dir, "chat", "test", chat.now_ms, "me")
    (halt,) = watch.poll()
    assert (halt.kind, halt.text) == ("halt", "chat: HALTED")
    assert "chat: HALTED" in watch.markdown() and "chat: bought" in watch.markdown()


def test_an_order_approved_after_a_halt_is_not_sent(desk_app: Any) -> None:
    """The gate approved the proposal, then the kill switch was pulled while it waited for a
    person: the yes is judged again as of now, and the halt vetoes it."""
    chat = desk_app.chat_service
    _turn(chat, "a", "buy 10% BTC")
    assert chat.pending("a") is not None
    halt_account(desk_app.store, desk_app.settings.data_dir, "chat", "stop it", chat.now_ms, "me")
    updates = dict(chat.resume("a", True, "me"))
    assert "KILL_SWITCH" in updates["finish"]["record"]["answer"], updates["finish"]
    assert load_account(desk_app.store, "chat").fills == []
    assert chat.desk.portfolio().positions == {}


def test_proposals_a_person_rejects_do_not_use_up_the_rate_limits(desk_app: Any) -> None:
    """Only an order a person approved counts towards the orders-per-minute limit: rejected
    proposals are previews, and on the frozen sample no minute passes to forget them."""
    chat = desk_app.chat_service
    per_minute = chat.desk.risk.limits.for_source(SignalSource.AI).max_orders_per_minute
    for n in range(per_minute + 1):
        _turn(chat, f"no-{n}", "buy 10% BTC")
        assert chat.pending(f"no-{n}") is not None, f"proposal {n} was vetoed"
        for _ in chat.resume(f"no-{n}", False, "me"):
            pass
    _turn(chat, "yes", "buy 10% BTC")
    for _ in chat.resume("yes", True, "me"):
        pass
    (fill,) = load_account(desk_app.store, "chat").fills
    assert fill.side == 1


def test_a_second_order_in_one_reply_is_refused_to_the_model_not_dropped(tmp_path: Path) -> None:
    """A model that proposes two orders in one reply used to hear "proposed" for both while
    only the first reached the gate and the person: the second is now refused to it, saying
    why, so it neither believes it placed it nor loses it silently."""
    from loopback_openai import LoopbackOpenAI, Scripted
    from scripted_model import completion, text

    from agent.llm import LLMClient
    from agent.ui import build_app
    from config.settings import LLMSettings

    two = {
        "tool_calls": [
            (
                "place_order",
                json.dumps(
                    {"symbol": "BTCUSDT", "action": "buy", "size_pct": 0.05, "confidence": 0.9}
                ),
            ),
            (
                "place_order",
                json.dumps(
                    {"symbol": "ETHUSDT", "action": "buy", "size_pct": 0.2, "confidence": 0.9}
                ),
            ),
        ]
    }

    def reply(request: dict[str, Any]) -> Scripted:
        answered = any(m["role"] == "tool" for m in request["messages"])
        return Scripted(200, completion(text("ok") if answered else two, request, int(answered)))

    server = LoopbackOpenAI(responder=reply).start()
    model = LLMClient(
        LLMSettings(max_retries=0), api_key="sk-loopback", base_url=server.base_url, cache_dir=None
    )
    settings = load_settings(data_dir=tmp_path / "data", offline=True)
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    frames = {s: load_sample(s).iloc[UPTREND_OFFSET:] for s in ("BTCUSDT", "ETHUSDT")}
    app = build_app(settings, store, model=model, frames=frames)
    try:
        chat = app.chat_service
        replies = [
            json.loads(m["content"])
            for node, update in chat.send("two", "buy both")
            if node == "tools"
            for m in update["messages"]
        ]
        assert replies[0].get("status") == "proposed", replies
        assert "one order per message" in replies[1]["error"], replies[1]
        assert chat.pending("two")["order"]["symbol"] == "BTCUSDT"
    finally:
        app.chat_service.close()
        store.close()
        model.close()
        server.stop()


# The books' streams (Binance depth, Bybit) on a closed loopback port: they retry, never reach out.
CLOSED_PORT_WS = "ws://127.0.0.1:9"
CLOSED_BYBIT = {"base_url": "http://127.0.0.1:9", "stream_url": CLOSED_PORT_WS}


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[Any]:
    """The UI in-process on a loopback Binance whose last closed bar is the sample's 3001st;
    the app's `clock` moves only when a test advances it."""
    from agent.ui import build_app

    server = LoopbackBinance().start()
    btc = load_sample("BTCUSDT")
    clock = FixedClock(int(btc["close_time"].iloc[3000]) + 30_000)
    settings = load_settings(
        data_dir=tmp_path / "data",
        binance={"base_url": server.base_url, "stream_url": CLOSED_PORT_WS},
        bybit=CLOSED_BYBIT,
    )
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    app = build_app(settings, store, model=OfflineModel(), clock=clock)
    app.store, app.settings, app.clock, app.btc = store, settings, clock, btc
    yield app
    app.chat_service.close()
    store.close()
    server.stop()


def test_live_bars_move_the_chat_clock_and_fill_at_the_next_open(live_app: Any) -> None:
    chat, clock, btc = live_app.chat_service, live_app.clock, live_app.btc
    assert chat.source.live and chat.now_ms == int(btc["close_time"].iloc[3000])
    _turn(chat, "live", "buy 10% BTC")
    for node, update in chat.resume("live", True, "me"):
        if node == "execute":
            assert update["execution"]["status"] == "accepted"  # no next bar yet
    assert chat.desk.portfolio().positions["BTCUSDT"].quantity > 0  # counted as pending
    assert chat.desk.venue.ledger.held() == []

    clock.advance_to(clock.now_ms() + 120_000)
    assert chat.refresh() == 2
    (fill,) = chat.desk.venue.sim.fills
    assert fill.time_ms == int(btc["open_time"].iloc[3001])  # the next bar's open
    assert chat.desk.venue.ledger.held() == [("BTCUSDT", fill.quantity)]


def test_a_halt_cancels_an_approved_order_still_waiting_for_its_open(live_app: Any) -> None:
    chat, clock, store = live_app.chat_service, live_app.clock, live_app.store
    _turn(chat, "live", "buy 10% BTC")
    for _ in chat.resume("live", True, "me"):
        pass
    (waiting,) = chat.desk.book().open_orders
    halt_account(store, live_app.settings.data_dir, "chat", "flash crash", chat.now_ms, "me")

    clock.advance_to(clock.now_ms() + 120_000)
    assert chat.refresh() == 2  # the next open came and went: nothing filled at it
    assert chat.desk.venue.sim.fills == [] and chat.desk.book().open_orders == []
    assert chat.desk.portfolio().positions == {}
    (stored,) = load_account(store, "chat").orders
    assert stored.client_order_id == waiting.client_order_id
    assert stored.status == "cancelled"
    assert stored.reason.startswith("cancelled: halted (KILL_SWITCH: ")
    assert "flash crash" in stored.reason


class Recorder:
    """An HTTP server on 127.0.0.1 that keeps each POST: Telegram (answering with a real
    sendMessage reply), a webhook, or, with `status` 500, a channel that is down."""

    def __init__(self, status: int = 200, body: bytes = b"{}") -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                recorder.posts.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        serving_thread(self.server).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_alerts_reach_telegram_and_a_webhook_and_a_dead_channel_blocks_nothing(
    desk_app: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    token = "123456:TEST-not-a-real-token"
    planted = load_settings(alerts={"telegram_bot_token": token, "telegram_chat_id": "1"})
    setup_logging("DEBUG", json_lines=False, secrets=planted.secret_values())  # as agent-ui
    bot = Recorder(body=(FIXTURES / "telegram" / "sendMessage_ok.json").read_bytes())
    hook, dead = Recorder(), Recorder(status=500)
    try:
        settings = AlertSettings(
            webhook_url=f"{hook.url}/hook",
            telegram_url=bot.url,
            telegram_bot_token=token,
            telegram_chat_id="-1001234567890",
        )
        channels = [*channels_from(settings), webhook(f"{dead.url}/down", 5.0)]
        naps: list[float] = []
        courier = Courier(channels, attempts=3, sleep=naps.append)
        watch = AlertWatch(desk_app.store, desk_app.settings, [courier])
        chat = desk_app.chat_service
        _turn(chat, "a", "buy 10% BTC")
        for _ in chat.resume("a", True, "me"):
            pass
        halt_account(desk_app.store, desk_app.settings.data_dir, "chat", "bed", chat.now_ms, "me")
        sent = watch.poll()  # returns at once: delivery runs on the courier's thread
        courier.close()
    finally:
        for server in (bot, hook, dead):
            server.close()
        logged = capfd.readouterr().err
        logging.getLogger().handlers.clear()
    assert [a.kind for a in sent] == ["fill", "halt"]
    assert [path for path, _ in bot.posts] == [f"/bot{token}/sendMessage"] * 2
    assert [body["text"] for _, body in bot.posts] == [a.text for a in sent]
    assert {body["chat_id"] for _, body in bot.posts} == {"-1001234567890"}
    assert [body for _, body in hook.posts] == [a.model_dump() for a in sent]
    assert len(dead.posts) == 6 and naps == [1.0, 2.0] * 2  # 3 tries each, backing off
    assert courier.failed == 2 and "alert not delivered after 3 attempts" in logged
    assert token not in logged


def test_a_telegram_token_without_a_chat_id_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="alerts"):
        load_settings(alerts={"telegram_bot_token": "1:x"})


def _sma_loop(store: Any, data_dir: Path, account: str, bars: int) -> str:
    """`agent-trade` with a classic strategy for `bars` minutes on BTC; returns its last bar."""
    frame = load_sample("BTCUSDT")
    loop = TradingLoop(
        account=account,
        symbols=["BTCUSDT"],
        store=store,
        strategy=SmaCross(SmaCrossParams()),
        strategy_label="sma_cross fast=20 slow=60",
        rules=sample_rules(),
        history={"BTCUSDT": frame.iloc[:1_440]},
        cash=5_000,
        kill_switch=kill_switch_path(data_dir, account),
    )
    for bar in bars_from_frame(frame.iloc[1_440 : 1_440 + bars], "BTCUSDT", "1m", "stream"):
        loop.step(bar.open_time, {"BTCUSDT": bar})
    loop.finish("stopped", "asked to stop")
    return iso_ms(int(frame["open_time"].iloc[1_440 + bars - 1]))


def test_the_assistant_tells_the_limits_in_force_and_how_much_is_used(desk_app: Any) -> None:
    chat = desk_app.chat_service
    calls, answer = _turn(chat, "a", "what are my limits?")
    assert calls == ["get_limits"]
    for line in limit_lines(desk_app.settings.risk, SignalSource.AI):
        assert f"- {line}" in answer
    assert "daily loss 0% of 10%" in answer and "orders in the last hour 0 of 20 orders" in answer
    assert "Trading state ACTIVE; no locks" in answer

    _turn(chat, "b", "buy 10% BTC")
    for _ in chat.resume("b", True, "me"):
        pass
    halt_account(desk_app.store, desk_app.settings.data_dir, "chat", "lunch", chat.now_ms, "me")
    calls, answer = _turn(chat, "c", "show my risk limits")
    assert calls == ["get_limits"]
    assert "orders in the last hour 1 of 20 orders" in answer
    assert "Trading state HALTED; KILL_SWITCH: " in answer and "lunch" in answer


def test_the_chat_account_trades_with_the_configured_paper_fee_slippage_and_cash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chat's paper account is agent-trade's: a profile's fee and slippage and the
    environment's cash, not the defaults (10 bps, 2 bps, 10,000)."""
    from agent.ui import build_app, proposal_markdown

    profile = tmp_path / "desk.toml"
    profile.write_text("[trading]\npaper_fee_bps = 30\npaper_slippage_bps = 5\n")
    monkeypatch.setenv("AGENT_TRADING__CASH", "1000")
    settings = load_settings(str(profile), data_dir=tmp_path / "data", offline=True)
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    frames = {s: load_sample(s).iloc[UPTREND_OFFSET:] for s in ("BTCUSDT", "ETHUSDT")}
    chat = build_app(settings, store, model=OfflineModel(), frames=frames).chat_service
    try:
        _turn(chat, "a", "buy 10% BTC")
        assert "of equity** (1,000.00 USDT)" in proposal_markdown(chat.pending("a"), chat.desk)
        for _ in chat.resume("a", True, "me"):
            pass
    finally:
        chat.close()
    (fill,) = load_account(store, "chat").fills
    store.close()
    btc = frames["BTCUSDT"]
    bar_open = float(btc.loc[btc["open_time"] == fill.time_ms, "open"].iloc[0])
    assert fill.price == pytest.approx(bar_open * 1.0005)
    assert fill.fee == pytest.approx(fill.quantity * fill.price * 0.003)
    assert 90 < fill.quantity * fill.price <= 100  # 10 % of 1,000 USDT


def test_the_chats_backtest_tool_runs_with_the_backtest_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`backtest sma on BTC` in the chat pays backtest.fee_bps, as agent-backtest does: the
    same trades cost more at 50 bps than at the default 10."""
    from agent.ui import build_app

    frames = {s: load_sample(s).iloc[UPTREND_OFFSET:] for s in ("BTCUSDT", "ETHUSDT")}

    def chat_backtest(name: str) -> tuple[float, int]:
        settings = load_settings(data_dir=tmp_path / name, offline=True)
        store = open_store(f"sqlite:///{tmp_path / name / 'agent.db'}")
        chat = build_app(settings, store, model=OfflineModel(), frames=frames).chat_service
        try:
            calls, answer = _turn(chat, "a", "backtest sma on BTC")
        finally:
            chat.close()
            store.close()
        assert calls == ["run_backtest"]
        found = re.search(r"return (-?[\d.]+)% vs buy & hold .*, (\d+) trades", answer)
        assert found, answer
        return float(found[1]), int(found[2])

    default_return, default_trades = chat_backtest("default")
    monkeypatch.setenv("AGENT_BACKTEST__FEE_BPS", "50")
    dear_return, dear_trades = chat_backtest("fee50")
    assert dear_trades == default_trades > 0
    assert dear_return < default_return


def test_the_assistant_reports_the_loops_state_from_the_store(desk_app: Any) -> None:
    chat, store, data_dir = desk_app.chat_service, desk_app.store, desk_app.settings.data_dir
    calls, answer = _turn(chat, "a", "how is the loop doing?")
    assert calls == ["get_loop_status"]
    assert "I could not read the loop: no autonomous loop has run yet" in answer

    first = _sma_loop(store, data_dir, "bot-1", 20)
    last = _sma_loop(store, data_dir, "bot-2", 30)
    calls, answer = _turn(chat, "b", "loop status")
    assert calls == ["get_loop_status"]
    assert "Loop `bot-2` (paper): stopped (asked to stop); trading state ACTIVE" in answer
    assert f"last bar {last} UTC after 30 bars" in answer
    assert "Equity 5,000.00 USDT, PnL +0.00 (+0.000%)" in answer
    assert "Other loops: bot-1." in answer

    halt_account(store, data_dir, "bot-1", "news at 14:00", chat.now_ms, "me")
    calls, answer = _turn(chat, "c", "status of account bot-1")
    assert "Loop `bot-1` (paper): stopped (asked to stop); trading state HALTED" in answer
    assert "news at 14:00" in answer and f"last bar {first} UTC after 20 bars" in answer
    calls, answer = _turn(chat, "d", "status of account nobody")
    assert "I could not read the loop: no loop account 'nobody': the loops are bot-1, bot-2" in (
        answer
    )


MIDNIGHT = 2_618  # the sample's bar that opens 2025-10-31 00:00 UTC
MIDNIGHT_MS = 1_761_868_800_000


def test_large_vetoes_and_one_daily_summary_per_day_reach_telegram_and_the_webhook(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data", offline=True, alerts={"large_veto_usdt": 2_000}
    )
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    frame = load_sample("BTCUSDT")
    plan = {
        2_603: [lambda ctx: order(ctx, SignalAction.CLOSE)],  # nothing held: a veto, no size
        2_604: [lambda ctx: order(ctx, SignalAction.SELL, quantity=0.02)],  # ≈2,200 USDT
        2_605: [lambda ctx: order(ctx, SignalAction.SELL, quantity=0.01, tag="small")],
        2_606: [lambda ctx: order(ctx, quantity=0.01)],  # fills at the next open, 23:49
    }
    loop = TradingLoop(
        account="night",
        symbols=["BTCUSDT"],
        store=store,
        strategy=Script(plan),
        strategy_label="script",
        rules=sample_rules(),
        history={"BTCUSDT": frame.iloc[:2_600]},
        cash=10_000,
        kill_switch=tmp_path / "KILL",
    )
    stream = bars_from_frame(frame.iloc[2_600 : MIDNIGHT + 30], "BTCUSDT", "1m", "stream")

    def step(upto: int) -> None:
        for bar in stream[loop.bars_this_run : upto - 2_600]:
            loop.step(bar.open_time, {"BTCUSDT": bar})

    bot = Recorder(body=(FIXTURES / "telegram" / "sendMessage_ok.json").read_bytes())
    hook = Recorder()
    channels = channels_from(
        AlertSettings(
            webhook_url=f"{hook.url}/hook",
            telegram_url=bot.url,
            telegram_bot_token="1:x",
            telegram_chat_id="7",
        )
    )
    try:
        courier = Courier(channels, attempts=1)
        watch = AlertWatch(store, settings, [courier])
        step(2_610)
        before_midnight = watch.poll()
        step(MIDNIGHT + 30)
        after_midnight = watch.poll()
        assert watch.poll() == []
        restarted = AlertWatch(store, settings, [courier])  # agent-ui started again
        step_again = restarted.poll()
        courier.close()
    finally:
        bot.close()
        hook.close()
    assert [a.kind for a in before_midnight] == ["fill", "large_veto"]
    veto = before_midnight[1].text
    assert veto.startswith("night: vetoed sell BTCUSDT asking ≈2,")
    assert "SHORT_NOT_ALLOWED: spot is long-only" in veto

    (summary,) = after_midnight
    closing = next(e for t, e, _ in reversed(load_equity(store, "night")) if t < MIDNIGHT_MS)
    pnl = closing - 10_000
    assert summary.kind == "daily_summary"
    assert summary.text == (
        f"night: 2025-10-30 UTC day: equity {closing:,.2f} USDT, PnL {pnl:+,.2f} "
        f"({pnl / 100:+.2f}%), 1 fills (1 buys, 0 sells), vetoes: SHORT_NOT_ALLOWED ×2, "
        "NO_POSITION ×1"
    )
    assert step_again == []  # the day was summarised before the restart: not again
    sent = [*before_midnight, *after_midnight]
    assert [body["text"] for _, body in bot.posts] == [a.text for a in sent]
    assert [body for _, body in hook.posts] == [a.model_dump() for a in sent]
    store.close()


@pytest.fixture
def testnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Binance's market data and its spot testnet on loopback, with the testnet's keys in the
    environment, as a user sets them."""
    market, exchange = LoopbackBinance().start(), LoopbackExchange(prices=TESTNET_PRICES).start()
    monkeypatch.setenv("BINANCE_API_KEY", API_KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", API_SECRET)
    btc = load_sample("BTCUSDT")
    settings = load_settings(
        data_dir=tmp_path / "data",
        binance={
            "base_url": market.base_url,
            "trade_url": exchange.base_url,
            "stream_url": CLOSED_PORT_WS,
        },
        bybit=CLOSED_BYBIT,
    )
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    clock = FixedClock(int(btc["close_time"].iloc[3000]) + 30_000)
    yield settings, store, clock, exchange
    store.close()
    market.stop()
    exchange.stop()


TESTNET_PRICES = {"BTCUSDT": "110000", "ETHUSDT": "3900"}


def test_testnet_mode_sends_the_approved_chat_orders_to_the_exchange(testnet: Any) -> None:
    from agent.ui import build_app, proposal_markdown

    settings, store, clock, exchange = testnet
    app = build_app(settings, store, model=OfflineModel(), clock=clock, mode="testnet")
    chat = app.chat_service
    banner = next(b.value for b in app.blocks.values() if getattr(b, "elem_id", "") == "banner")
    assert "Binance spot **testnet** account `chat`" in banner
    _turn(chat, "t", "buy 10% BTC")
    shown = proposal_markdown(chat.pending("t"), chat.desk)
    assert "approving sends a market order to the testnet at once" in shown
    assert exchange.orders == []  # nothing is sent before a person approves
    executed = [u["execution"] for n, u in chat.resume("t", True, "me") if n == "execute"]
    assert [e["status"] for e in executed] == ["filled"]
    sent, *protection = exchange.orders
    assert sent["clientOrderId"] == executed[0]["client_order_id"] and sent["side"] == "BUY"
    # The proposal's stop and target now rest at the exchange as one OCO, holding the coins.
    assert [(o["type"], o["side"]) for o in protection] == [
        ("STOP_LOSS_LIMIT", "SELL"),
        ("LIMIT_MAKER", "SELL"),
    ]
    (held,) = chat.desk.venue.ledger.held()
    assert held[1] == pytest.approx(float(sum(exchange.balance("BTC"))))  # less the BTC fee

    _turn(chat, "t2", "sell BTC")
    for _ in chat.resume("t2", True, "me"):
        pass
    assert [(o["type"], o["side"], o["status"]) for o in exchange.orders] == [
        ("MARKET", "BUY", "FILLED"),
        ("STOP_LOSS_LIMIT", "SELL", "CANCELED"),  # our own exit cancels the protection first
        ("LIMIT_MAKER", "SELL", "CANCELED"),
        ("MARKET", "SELL", "FILLED"),
    ]
    assert chat.desk.venue.ledger.cash == pytest.approx(float(exchange.balance("USDT")[0]))
    dust = chat.desk.venue.ledger.quantity("BTCUSDT")  # the buy's fee was taken in BTC
    assert dust == pytest.approx(float(exchange.balance("BTC")[0]))
    assert 0 <= dust < float(chat.desk.rules["BTCUSDT"].min_qty)
    chat.close()
    with pytest.raises(UserError, match="trades in testnet mode, not paper"):
        build_app(settings, store, model=OfflineModel(), clock=clock)


@pytest.mark.slow
def test_testnet_mode_without_keys_or_live_bars_stops_and_never_trades_on_paper(
    testnet: Any, monkeypatch: pytest.MonkeyPatch, offline_env: dict[str, str], tmp_path: Path
) -> None:
    from agent.ui import build_app

    settings, store, clock, exchange = testnet
    monkeypatch.delenv("BINANCE_API_KEY")
    no_keys = load_settings(data_dir=settings.data_dir, binance=settings.binance.model_dump())
    with pytest.raises(UserError, match="set BINANCE_API_KEY and BINANCE_API_SECRET"):
        build_app(no_keys, store, model=OfflineModel(), clock=clock, mode="testnet")
    assert accounts(store) == [] and exchange.received == []

    out = subprocess.run(
        [str(BIN / "agent-ui"), "--mode", "testnet"],
        env={**offline_env, "BINANCE_API_KEY": API_KEY, "BINANCE_API_SECRET": API_SECRET},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "error: --mode testnet trades at Binance's last closed bar, but the chat has only the "
        "bundled sample (offline, or Binance market data unreachable): nothing was sent"
    )
