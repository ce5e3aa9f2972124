"""The whole graph with the built-in offline model: no key, no network, real SQLite store, real
risk gate; decisions leave records, and a chat order waits for a person's approval, even across
a restart of the process that holds the thread."""

from __future__ import annotations

import sqlite3
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from agent.decide import decide, decision_prompt_version, system_prompt
from agent.graph import AgentDeps, build_graph, new_turn
from agent.model import OFFLINE_NOTICE, open_model
from agent.offline import OfflineModel
from agent.records import load_decisions, save_decisions
from config import load_settings
from core.errors import ConfigError
from execution.dry_run import DryRunExecutor
from market.sample import load_sample, sample_rules
from risk.desk import RiskDesk
from risk.limits import RiskLimits
from store import Store, open_store
from tools import MarketData, ToolEnv, chat_tools, decision_tools, flat_portfolio
from tools.trading import market_view

CASH = 10_000.0


@pytest.fixture(scope="module")
def market() -> MarketData:
    return MarketData({s: load_sample(s) for s in ("BTCUSDT", "ETHUSDT")}, "1m")


def make_deps(market: MarketData, store: Store, bar: int, *, chat: bool = False) -> AgentDeps:
    now = int(market.frames["BTCUSDT"]["close_time"].iloc[bar])
    env = ToolEnv(market=market, now_ms=now, rules=sample_rules(), portfolio=flat_portfolio(CASH))
    desk = RiskDesk(
        store,
        "offline",
        RiskLimits(),
        env.portfolio,
        lambda s: market_view(env, s),
        lambda: env.now_ms,
    )
    env.risk_state = lambda: desk.state
    return AgentDeps(
        model=OfflineModel(),
        tools=chat_tools() if chat else decision_tools(),
        env=env,
        system_prompt=system_prompt(),
        prompt_version=decision_prompt_version(),
        run_id="offline-test",
        gate=desk,
        executor=DryRunExecutor() if chat else None,
        recorder=lambda record: save_decisions(store, [record]),
        require_approval=chat,
    )


@pytest.fixture
def store(tmp_path: Path):
    opened = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    yield opened
    opened.close()


def test_offline_decisions_go_through_the_gate_and_are_recorded(
    market: MarketData, store: Store
) -> None:
    graph = build_graph()
    bars = range(120, 4_300, 90)
    states = [decide(graph, make_deps(market, store, bar), "BTCUSDT") for bar in bars]

    outcomes = Counter(s["record"]["outcome"] for s in states)
    assert outcomes["approved"] >= 1 and outcomes["hold"] >= 1
    records = load_decisions(store, "offline-test")
    assert len(records) == len(bars)
    for record in records:
        assert record.model == "offline" and record.base_url == "offline://rules"
        # The prompt carries the snapshot: one model call, straight to submit_signal.
        assert [c.name for c in record.tool_calls] == ["submit_signal"]
        assert len(record.llm_calls) == 1
        assert record.verdict is not None  # every signal met the gate
    buys = [r for r in records if r.outcome == "approved"]
    for record in buys:
        assert record.order["client_order_id"].startswith("agt-")
        assert float(record.order["stop_loss"]) < market_view_price(market, record.decided_ms)


def market_view_price(market: MarketData, now_ms: int) -> float:
    return float(market.candles("BTCUSDT", now_ms)["close"].iloc[-1])


def test_offline_model_is_deterministic(market: MarketData, store: Store) -> None:
    graph = build_graph()
    first = decide(graph, make_deps(market, store, 2_400), "BTCUSDT")
    second = decide(graph, make_deps(market, store, 2_400), "BTCUSDT")
    assert first["messages"] == second["messages"]
    assert first["record"]["inputs_sha256"] == second["record"]["inputs_sha256"]


def test_no_key_means_the_offline_model_and_one_notice(monkeypatch, tmp_path: Path) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AGENT_LLM__PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    notices: list[str] = []
    model = open_model(load_settings(data_dir=tmp_path), notices.append)
    assert model.model == "offline" and notices == [OFFLINE_NOTICE]

    monkeypatch.setenv("AGENT_LLM__PROVIDER", "openai")
    with pytest.raises(ConfigError, match="needs OPENAI_API_KEY"):
        open_model(load_settings(data_dir=tmp_path), notices.append)


def test_chat_order_waits_for_approval_and_survives_a_restart(
    market: MarketData, store: Store, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "threads.sqlite"
    config = {"configurable": {"thread_id": "chat-1"}}
    turn = new_turn("chat-1:1", "chat", "BTCUSDT", 0, "buy 10% BTC please")
    deps = make_deps(market, store, 2_400, chat=True)
    turn["decided_ms"] = deps.env.now_ms
    deps.env.decision_id = turn["decision_id"]

    with sqlite3.connect(checkpoints, check_same_thread=False) as conn:
        graph = build_graph(SqliteSaver(conn))
        paused = graph.invoke(turn, config, context=deps)
        (pending,) = paused["__interrupt__"]
        assert pending.value["kind"] == "approve_order"
        assert pending.value["order"]["side"] == "buy"
        assert load_decisions(store, "offline-test") == []  # nothing recorded or sent yet

    # A new process: a fresh graph and gate, the same checkpoint file.
    restarted = make_deps(market, store, 2_400, chat=True)
    restarted.env.decision_id = turn["decision_id"]
    with sqlite3.connect(checkpoints, check_same_thread=False) as conn:
        graph = build_graph(SqliteSaver(conn))
        done = graph.invoke(
            Command(resume={"approved": True, "by": "alice"}), config, context=restarted
        )

    assert done["approval"] == {"approved": True, "by": "alice"}
    assert done["execution"]["status"] == "not_sent_dry_run"
    sent = restarted.executor.orders
    assert len(sent) == 1 and sent[0].quantity <= Decimal(pending.value["order"]["quantity"])
    (record,) = load_decisions(store, "offline-test")
    assert record.outcome == "approved" and record.approval["by"] == "alice"
    assert "Approved, dry run" in done["answer"] and "was not sent" in done["answer"]


def test_rejected_chat_order_is_recorded_and_not_sent(market: MarketData, store: Store) -> None:
    deps = make_deps(market, store, 2_400, chat=True)
    turn = new_turn("chat-2:1", "chat", "BTCUSDT", deps.env.now_ms, "buy some ETH")
    deps.env.decision_id = turn["decision_id"]
    config = {"configurable": {"thread_id": "chat-2"}}
    graph = build_graph(InMemorySaver())
    graph.invoke(turn, config, context=deps)
    done = graph.invoke(Command(resume={"approved": False}), config, context=deps)

    assert deps.executor.orders == []
    (record,) = load_decisions(store, "offline-test")
    assert record.outcome == "rejected" and record.symbol == "ETHUSDT"
    assert done["answer"].startswith("Order not sent")


def _scaled(factor: float) -> MarketData:
    frame = load_sample("BTCUSDT")
    prices = ["open", "high", "low", "close"]
    return MarketData({"BTCUSDT": frame.assign(**{c: frame[c] * factor for c in prices})}, "1m")


@pytest.mark.slow
def test_a_coin_priced_below_a_millionth_gets_a_stop_above_zero(store: Store) -> None:
    """The offline model rounded a price under 1 to 6 decimals: a 1e-8 coin's stop was 0."""
    graph = build_graph()
    signals = [
        decide(graph, make_deps(_scaled(1e-13), store, bar), "BTCUSDT")["record"]["signal"]
        for bar in range(120, 4_300, 90)
    ]
    buys = [s for s in signals if s and s["action"] == "buy"]
    assert buys, "the sample's uptrends still read as uptrends at any scale"
    for buy in buys:
        assert 1e-8 < buy["stop_loss"] < buy["take_profit"] < 1.2e-8  # BTC near 110,000 x 1e-13


def test_flat_bars_say_their_atr_is_assumed_not_measured(store: Store) -> None:
    graph = build_graph()
    flat = load_sample("BTCUSDT").assign(open=100.0, high=100.0, low=100.0, close=100.0)
    market = MarketData({"BTCUSDT": flat}, "1m")
    record = decide(graph, make_deps(market, store, 600), "BTCUSDT")["record"]
    assert "ATR n/a, 0.5% assumed" in record["signal"]["rationale"]
