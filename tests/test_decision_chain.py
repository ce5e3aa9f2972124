"""A backtest steps the decision graph's nodes without LangGraph (agent/chain.py). Whatever the
model does (answers at once, calls tools first, rambles and is nudged, loops until max_steps,
sends bad JSON, signals another symbol, fails), both give the same final state and the same
decision record: tool calls, tokens, cache hits, signal, abstain. Only measured durations may
differ, so they are compared as present, not by value."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from decision_harness import deps_for, env_at
from loopback_openai import LoopbackOpenAI, Scripted
from scripted_model import (
    ScriptedModel,
    Turn,
    buy_an_uptrend,
    look_at_the_market,
    text,
    tool_call,
)

from agent.chain import DecisionChain
from agent.decide import decide
from agent.graph import AgentState, build_graph
from agent.llm import LLMClient
from agent.offline import OfflineModel
from config.settings import LLMSettings
from market.sample import load_sample
from tools import MarketData

GRAPH, CHAIN = build_graph(), DecisionChain()
TIMED = {"latency_ms", "duration_ms"}


@pytest.fixture(scope="module")
def market() -> MarketData:
    return MarketData({s: load_sample(s) for s in ("BTCUSDT", "ETHUSDT")}, "1m")


def timeless(value: Any) -> Any:
    """The state with every measured duration replaced by whether it was measured."""
    if isinstance(value, dict):
        return {k: (v > 0) if k in TIMED else timeless(v) for k, v in value.items()}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


@pytest.mark.parametrize("stateful", [False, True])
def test_the_offline_model_decides_the_same_over_a_day_of_bars(
    market: MarketData, stateful: bool
) -> None:
    model = OfflineModel()
    for bar in range(200, 1_640, 60):
        graph = decide(GRAPH, deps_for(model, env_at(market, bar, stateful=stateful)), "BTCUSDT")
        chain = decide(CHAIN, deps_for(model, env_at(market, bar, stateful=stateful)), "BTCUSDT")
        assert timeless(chain) == timeless(graph)
        assert chain["record"]["llm_calls"] and chain["record"]["tool_calls"]


def prose(_: list[dict[str, Any]]) -> dict[str, Any]:
    return text("The trend looks up, I would consider buying.")


def bad_json(_: list[dict[str, Any]]) -> dict[str, Any]:
    return tool_call("submit_signal", '{"symbol": "BTCUSDT", "action": ')


def candles_forever(_: list[dict[str, Any]]) -> dict[str, Any]:
    return tool_call("get_candles", {"symbol": "BTCUSDT", "interval": "5m", "limit": 3})


def other_symbol(_: list[dict[str, Any]]) -> dict[str, Any]:
    return tool_call("submit_signal", {"symbol": "ETHUSDT", "action": "buy", "size_pct": 0.1})


SCRIPTS: dict[str, tuple[Turn, ...]] = {
    "answers at once": (buy_an_uptrend,),
    "looks at the market first": (look_at_the_market, buy_an_uptrend),
    "rambles, is nudged, answers": (prose, buy_an_uptrend),
    "rambles twice": (prose,),
    "bad arguments": (bad_json,),
    "loops until max_steps": (candles_forever,),
    "signals another symbol": (other_symbol,),
}


@pytest.fixture
def serve() -> Iterator[list[LoopbackOpenAI]]:
    servers: list[LoopbackOpenAI] = []
    yield servers
    for server in servers:
        server.stop()


def client(server: LoopbackOpenAI, cache: Path, **llm: Any) -> LLMClient:
    return LLMClient(
        LLMSettings(model="gpt-4o-mini", max_retries=0, **llm),
        api_key="sk-test-loopback",
        base_url=server.base_url,
        cache_dir=cache,
    )


def both(model: LLMClient, market: MarketData) -> tuple[AgentState, AgentState]:
    env = env_at(market, 2_400)
    graph = decide(GRAPH, deps_for(model, env), "BTCUSDT")
    chain = decide(CHAIN, deps_for(model, env_at(market, 2_400)), "BTCUSDT")
    return graph, chain


@pytest.mark.parametrize("script", SCRIPTS, ids=list(SCRIPTS))
def test_a_model_over_the_wire_gives_the_same_state_cold_and_cached(
    script: str, market: MarketData, serve: list[LoopbackOpenAI], tmp_path: Path
) -> None:
    server = LoopbackOpenAI(responder=ScriptedModel(*SCRIPTS[script])).start()
    serve.append(server)
    live = client(server, tmp_path / "live", mode="live")
    graph, chain = both(live, market)
    live.close()
    assert timeless(chain) == timeless(graph)

    cached = client(server, tmp_path / "cache")
    decide(GRAPH, deps_for(cached, env_at(market, 2_400)), "BTCUSDT")  # fills the cache
    sent = len(server.requests)
    graph, chain = both(cached, market)
    cached.close()
    assert len(server.requests) == sent  # every call of both was a cache hit
    assert chain["record"]["llm_calls"] and all(c["cached"] for c in chain["record"]["llm_calls"])
    assert timeless(chain) == timeless(graph)


def test_a_failing_endpoint_abstains_the_same(
    market: MarketData, serve: list[LoopbackOpenAI], tmp_path: Path
) -> None:
    down = {"error": {"message": "upstream down", "type": "server_error"}}
    server = LoopbackOpenAI(responder=lambda _: Scripted(500, down)).start()
    serve.append(server)
    model = client(server, tmp_path / "cache")
    graph, chain = both(model, market)
    model.close()
    assert chain["abstain"]["cause"] == "server_error"
    assert timeless(chain) == timeless(graph)


def test_json_schema_decisions_are_the_same(
    market: MarketData, serve: list[LoopbackOpenAI], tmp_path: Path
) -> None:
    reply = {"symbol": "BTCUSDT", "action": "hold", "confidence": 0.4, "rationale": "flat"}
    server = LoopbackOpenAI(responder=ScriptedModel(lambda _: text(json.dumps(reply)))).start()
    serve.append(server)
    model = client(server, tmp_path / "cache", decision_format="json_schema", mode="live")
    graph, chain = both(model, market)
    model.close()
    assert chain["signal"]["action"] == "hold"
    assert timeless(chain) == timeless(graph)


def test_an_approval_is_refused_rather_than_skipped(market: MarketData) -> None:
    deps = deps_for(OfflineModel(), env_at(market, 2_400))
    deps.require_approval = True
    with pytest.raises(ValueError, match="approval"):
        decide(CHAIN, deps, "BTCUSDT")
