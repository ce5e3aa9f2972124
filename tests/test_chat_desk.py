"""The chat as a trading desk: a persisted paper account that a real `agent-ui` buys into, keeps
across a restart and sells out of; the offline assistant's answers to a desk's requests; live
bars from a loopback Binance moving the chat's clock; and the alerts a trader sees."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN, FIXTURES
from loopback_binance import LoopbackBinance

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"

from gradio_client import Client

from agent.alerts import AlertWatch
from agent.loop_state import halt_account
from agent.notify import Courier, channels_from, webhook
from agent.offline import CAN_DO, OfflineModel
from agent.ui import build_app, proposal_markdown
from config import load_settings
from config.settings import AlertSettings
from core.clock import FixedClock
from core.errors import ConfigError
from core.logging import setup_logging
from market.sample import load_sample
from store import open_store

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
        return Client(f"http://127.0.0.1:{port}/", verbose=False)

    def __exit__(self, *_: object) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)


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


def test_live_bars_move_the_chat_clock_and_fill_at_the_next_open(tmp_path: Path) -> None:
    server = LoopbackBinance().start()
    try:
        btc = load_sample("BTCUSDT")
        clock = FixedClock(int(btc["close_time"].iloc[3000]) + 30_000)
        settings = load_settings(data_dir=tmp_path / "data", binance={"base_url": server.base_url})
        store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
        app = build_app(settings, store, model=OfflineModel(), clock=clock)
        chat = app.chat_service
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
        app.chat_service.close()
        store.close()
    finally:
        server.stop()


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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

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
