"""The browser UI, launched in-process on loopback with the offline model and the bundled sample:
an API client chats and backtests, and a real headless Chromium buys, approves and sees the
decision recorded."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"

from gradio_client import Client

from agent.offline import OfflineModel
from agent.records import load_decisions
from agent.ui import RISK_SCOPE, build_app
from config import load_settings
from risk.records import load_state, save_state
from risk.state import clear_kill
from store import Store, open_store

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Running:
    def __init__(self, url: str, store: Store, banner: str) -> None:
        self.url, self.store, self.banner = url, store, banner


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    data_dir = tmp_path_factory.mktemp("ui-data")
    settings = load_settings(data_dir=data_dir)
    store = open_store(f"sqlite:///{data_dir / 'agent.db'}")
    app = build_app(settings, store, model=OfflineModel())
    port = _free_port()
    app.launch(
        prevent_thread_lock=True,
        server_name="127.0.0.1",
        server_port=port,
        quiet=True,
        ssr_mode=False,
    )
    banner = next(b.value for b in app.blocks.values() if getattr(b, "elem_id", "") == "banner")
    try:
        yield Running(f"http://127.0.0.1:{port}/", store, banner)
    finally:
        app.close()
        app.chat_service.close()
        store.close()


def _titles(history: list[dict[str, Any]]) -> list[str]:
    return [(m.get("metadata") or {}).get("title") or "" for m in history]


def test_banner_names_the_model_the_sample_and_the_dry_run(ui: Running) -> None:
    assert "offline" in ui.banner
    assert "bundled Binance sample" in ui.banner and "2025-11-01" in ui.banner
    assert "orders are dry-run, nothing is sent" in ui.banner


def test_api_chat_shows_tool_steps_and_backtest_returns_metrics(ui: Running) -> None:
    client = Client(ui.url, verbose=False)
    history, _box, thread, *_ = client.predict("analyse ETH", [], "api-thread", api_name="/chat")
    assert thread == "api-thread"
    steps = [
        m
        for m in history
        if "get_market_snapshot" in ((m.get("metadata") or {}).get("title") or "")
    ]
    assert steps and steps[0]["metadata"]["status"] == "done"
    assert "ETHUSDT" in str(steps[0]["content"])
    answer = str(history[-1]["content"])  # the readable answer, after the steps
    assert "RSI" in answer and "Ask me to buy or sell" in answer

    status, metrics, _plot, _trades, json_file, html_file = client.predict(
        "sma_cross", "BTCUSDT", 1, "fast=10, slow=40", "all", api_name="/backtest"
    )
    names = [row[0] for row in metrics["data"]]
    assert "Return [%]" in names and "Max. Drawdown [%]" in names
    assert "Saved as backtest run" in status
    assert Path(json_file).read_text().startswith("{") and "plotly" in Path(html_file).read_text()

    for symbol, days, expected in (
        ("DOGEUSDT", 1, "no data for DOGEUSDT"),
        ("BTCUSDT", -1, "days"),
    ):
        status, *_ = client.predict("sma_cross", symbol, days, "", "all", api_name="/backtest")
        assert status.startswith("**Error:**") and expected in status and "Traceback" not in status


def test_browser_buy_approve_and_record(ui: Running) -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium "
            "(apt-get install -y chromium fonts-noto-color-emoji; .ci/run does this)"
        )
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.set_default_timeout(20_000)
            page.goto(ui.url)
            expect(page.locator("#banner")).to_contain_text("nothing is sent")
            box = page.locator("#chat-input textarea")
            box.fill("buy 10% BTC")
            box.press("Enter")
            chat = page.locator("#chatbot")
            expect(chat).to_contain_text("get_market_snapshot")
            expect(chat).to_contain_text("place_order")
            proposal = page.locator("#proposal")
            expect(proposal).to_contain_text("Order proposal")
            expect(proposal).to_contain_text("BUY")
            expect(proposal).to_contain_text("Risk verdict: approved")
            page.locator("#approve").click()
            expect(chat).to_contain_text("Approved and sent")
            expect(chat).to_contain_text("Recorded decision")
            expect(chat).to_contain_text("(by user)")
            expect(page.locator("#approve")).to_be_hidden()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ui-approve.png"), full_page=True)
        finally:
            browser.close()

    approved = [r for r in load_decisions(ui.store) if r.outcome == "approved"]
    assert len(approved) == 1
    assert approved[0].approval == {"approved": True, "by": "user"}
    assert approved[0].execution["status"] == "not_sent_dry_run"


def test_kill_switch_halts_and_the_next_order_is_vetoed(ui: Running) -> None:
    client = Client(ui.url, verbose=False)
    try:
        state, _decisions = client.predict(api_name="/kill_switch")
        assert "Trading state: **HALTED**" in state and "KILL_SWITCH" in state
        history, *_ = client.predict("buy 10% BTC", [], "after-kill", api_name="/chat")
        answer = str(history)
        assert "vetoed" in answer and "KILL_SWITCH" in answer
        _state, decisions = client.predict(api_name="/trading")
        assert "vetoed" in [row[4] for row in decisions["data"]]
    finally:  # other tests on this app expect an active account
        save_state(ui.store, clear_kill(load_state(ui.store, RISK_SCOPE)), 0, RISK_SCOPE)
