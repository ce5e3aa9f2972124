"""Capability probe, decision formats and tolerant reading, against a loopback OpenAI-compatible
server that plays each kind of endpoint: one that takes tools, tool_choice=required and JSON
schemas; one that rejects some of them with a 400; and a model that writes its call into the
content, answers in prose, echoes its prompt or breaks the schema's bounds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from decision_harness import deps_for, env_at
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback_openai import LoopbackOpenAI, Scripted
from scripted_model import completion

from agent.capabilities import Capabilities
from agent.decide import decide
from agent.graph import AgentState, build_graph
from agent.llm import LLMClient
from agent.reply import Abstain, read_content
from config.settings import DecisionFormat, LLMSettings
from market.sample import load_sample
from tools import SUBMIT_SIGNAL, MarketData, decision_tools

BAR = 2_400  # an uptrend in the bundled BTCUSDT sample
Reply = Callable[[dict[str, Any]], dict[str, Any]]
SIGNAL = {
    "symbol": "BTCUSDT",
    "action": "buy",
    "size_pct": 0.1,
    "stop_loss": 106_000.0,
    "confidence": 0.8,
    "rationale": "uptrend",
}


class Endpoint:
    """A server that takes only some request fields (a 400 names the one it refuses) and a
    model whose decision reply is `reply(request)`; probes get honest answers."""

    def __init__(
        self, *, calls: bool, required: bool, schema: bool, reply: Reply | None = None
    ) -> None:
        self.calls, self.required, self.schema = calls, required, schema
        self.reply = reply or (lambda _: {"tool_calls": [(SUBMIT_SIGNAL, json.dumps(SIGNAL))]})

    def __call__(self, request: dict[str, Any]) -> Scripted:
        for field, taken in (("tool_choice", self.required), ("response_format", self.schema)):
            if field in request and not taken:
                return Scripted(400, {"error": {"message": f"{field} is not supported"}})
        names = [t["function"]["name"] for t in request.get("tools") or []]
        if names == ["probe_ping"]:
            call = self.calls or "tool_choice" in request
            reply = (
                {"tool_calls": [("probe_ping", '{"ok": true}')]} if call else {"content": "Sure!"}
            )
        elif "probe" in json.dumps(request.get("response_format") or {}):
            reply = {"content": '{"ok": true}'}
        else:
            reply = self.reply(request)
        return Scripted(200, completion(reply, request, 0))


@pytest.fixture(scope="module")
def market() -> MarketData:
    return MarketData({"BTCUSDT": load_sample("BTCUSDT")}, "1m")


@pytest.fixture
def serve() -> Iterator[Callable[[Endpoint], LoopbackOpenAI]]:
    started: list[LoopbackOpenAI] = []

    def start(endpoint: Endpoint) -> LoopbackOpenAI:
        server = LoopbackOpenAI(responder=endpoint).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def client(server: LoopbackOpenAI, form: DecisionFormat | str, tmp_path: Path) -> LLMClient:
    return LLMClient(
        LLMSettings(model="local", max_retries=0, decision_format=form),
        api_key=None,
        base_url=server.base_url,
        cache_dir=None,
        capabilities_file=tmp_path / "llm-capabilities.json",
    )


def run(model: LLMClient, market: MarketData) -> AgentState:
    return decide(build_graph(), deps_for(model, env_at(market, BAR)), "BTCUSDT")


@pytest.mark.parametrize(
    ("calls", "required", "schema", "expected"),
    [
        (True, True, True, "json_schema"),  # OpenAI, vLLM, a tool-calling model on llama.cpp
        (True, True, False, "required"),
        (True, False, False, "tools"),  # tool_choice=required refused with a 400
        (False, False, True, "json_schema"),  # SmolLM2 on llama.cpp: prose, but grammars work
        (False, False, False, "tools"),  # nothing better known: the tolerant path
    ],
)
def test_the_probe_picks_the_strongest_format_the_endpoint_has(
    serve: Callable[[Endpoint], LoopbackOpenAI],
    tmp_path: Path,
    calls: bool,
    required: bool,
    schema: bool,
    expected: str,
) -> None:
    server = serve(Endpoint(calls=calls, required=required, schema=schema))
    assert client(server, "probe", tmp_path).decision_format == expected
    assert len(server.requests) == 3
    # A later run with the same data dir asks nothing: the finding is kept per URL and model.
    assert client(server, "probe", tmp_path).decision_format == expected
    assert len(server.requests) == 3
    kept = json.loads((tmp_path / "llm-capabilities.json").read_text())
    assert Capabilities.model_validate(kept[f"{server.base_url}/|local"]).strongest() == expected
    assert (tmp_path / "llm-capabilities.json").stat().st_mode & 0o077 == 0


def test_a_kept_finding_of_the_wrong_shape_is_probed_again_not_a_crash(
    serve: Callable[[Endpoint], LoopbackOpenAI], tmp_path: Path
) -> None:
    server = serve(Endpoint(calls=True, required=True, schema=True))
    kept = tmp_path / "llm-capabilities.json"
    kept.write_text(json.dumps({f"{server.base_url}/|local": {"tools": "maybe"}}))
    assert client(server, "probe", tmp_path).decision_format == "json_schema"
    assert len(server.requests) == 3
    assert json.loads(kept.read_text())[f"{server.base_url}/|local"]["tools"] is True


def test_a_json_schema_decision_is_one_call_constrained_to_submit_signal(
    serve: Callable[[Endpoint], LoopbackOpenAI], market: MarketData, tmp_path: Path
) -> None:
    endpoint = Endpoint(
        calls=False, required=False, schema=True, reply=lambda _: {"content": json.dumps(SIGNAL)}
    )
    server = serve(endpoint)
    state = run(client(server, "json_schema", tmp_path), market)
    (request,) = [r.body for r in server.requests]
    assert "tools" not in request
    schema = request["response_format"]["json_schema"]
    assert schema["name"] == SUBMIT_SIGNAL
    # The grammar can only write the decision's own symbol and a known action.
    properties = schema["schema"]["properties"]
    assert properties["symbol"]["enum"] == ["BTCUSDT"]
    assert properties["action"]["enum"] == ["buy", "sell", "close", "hold"]
    assert "Snapshot: {" in request["messages"][1]["content"]  # the market is in the prompt
    assert state["signal"]["action"] == "buy" and state["signal"]["size_pct"] == 0.1
    assert state["record"]["outcome"] == "signal"


def test_required_sends_tool_choice_and_still_ends_in_one_call(
    serve: Callable[[Endpoint], LoopbackOpenAI], market: MarketData, tmp_path: Path
) -> None:
    server = serve(Endpoint(calls=True, required=True, schema=True))
    state = run(client(server, "required", tmp_path), market)
    (request,) = [r.body for r in server.requests]
    assert request["tool_choice"] == "required" and request["tools"]
    assert state["record"]["outcome"] == "signal"


TAGGED = f"<tool_call>\n{json.dumps({'name': SUBMIT_SIGNAL, 'arguments': SIGNAL})}\n</tool_call>"


@pytest.mark.parametrize(
    ("form", "content", "outcome", "cause"),
    [
        ("tools", TAGGED, "signal", None),
        (
            "tools",
            json.dumps({"name": SUBMIT_SIGNAL, "arguments": json.dumps(SIGNAL)}),
            "signal",
            None,
        ),
        ("tools", f"```json\n{json.dumps(SIGNAL)}\n```", "signal", None),
        ("json_schema", "I think Bitcoin looks strong today.", "abstain", "prose"),
        (
            "json_schema",
            "Decision time: 2025-10-30 20:23 UTC. Symbol: BTCUSDT, 1m bars.",
            "abstain",
            "echo",
        ),
        ("tools", TAGGED.replace(SUBMIT_SIGNAL, "buy_now"), "abstain", "unknown_tool"),
        # What SmolLM2 answered on the real server (tests/cassettes/test_real_model/): its
        # prompt echoed back in tools and required modes, and under the grammar a made-up symbol.
        (
            "required",
            "Decision time: 2025-10-30 20:23 UTC. Symbol: BTCUSDT, 1m bars. Holding: n/a",
            "abstain",
            "echo",
        ),
        (
            "json_schema",
            json.dumps({**SIGNAL, "symbol": "Binance-USDT-1m-bar-1.0.0.0"}),
            "abstain",
            "bad_arguments",
        ),
        # What the llama.cpp grammar let through in the llama README's trials: numbers out of bounds.
        ("json_schema", json.dumps({**SIGNAL, "size_pct": 5}), "abstain", "bad_arguments"),
        ("json_schema", json.dumps({**SIGNAL, "confidence": 1.2}), "abstain", "bad_arguments"),
        ("json_schema", json.dumps({**SIGNAL, "stop_loss": -1}), "abstain", "bad_arguments"),
        # Cut by the token cap mid-object:
        ("json_schema", json.dumps(SIGNAL)[:40], "abstain", "bad_arguments"),
        ("tools", "<tool_call>{not json</tool_call>", "abstain", "bad_arguments"),
        # Well-formed, but the tool refuses it (no data for that symbol): no second try.
        ("json_schema", json.dumps({**SIGNAL, "symbol": "XRPUSDT"}), "abstain", "bad_arguments"),
    ],
)
def test_each_quirk_of_a_small_model_has_its_documented_outcome(
    serve: Callable[[Endpoint], LoopbackOpenAI],
    market: MarketData,
    tmp_path: Path,
    form: DecisionFormat,
    content: str,
    outcome: str,
    cause: str | None,
) -> None:
    server = serve(
        Endpoint(calls=True, required=True, schema=True, reply=lambda _: {"content": content})
    )
    state = run(client(server, form, tmp_path), market)
    record = state["record"]
    assert record["outcome"] == outcome
    assert (record["abstain"] or {}).get("cause") == cause
    assert len(server.requests) == 1  # the quirk is judged on the first reply, not nudged away
    if outcome == "abstain":
        assert record["signal"] is None and record["abstain"]["message"]


def test_prose_in_tools_mode_still_gets_one_nudge(
    serve: Callable[[Endpoint], LoopbackOpenAI], market: MarketData, tmp_path: Path
) -> None:
    server = serve(
        Endpoint(calls=True, required=True, schema=True, reply=lambda _: {"content": "Hmm."})
    )
    state = run(client(server, "tools", tmp_path), market)
    assert len(server.requests) == 2
    assert state["record"]["abstain"]["cause"] == "prose"


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=300)
    | st.builds(
        json.dumps,
        st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=4),
    )
)
def test_any_content_is_validated_calls_or_an_abstain_with_a_cause(content: str) -> None:
    tools = decision_tools()
    found = read_content(content, tools, [], signal_only=False)
    if isinstance(found, Abstain):
        assert found.cause in {"empty", "prose", "echo", "unknown_tool", "bad_arguments"}
        return
    for call in found:  # nothing unvalidated gets through
        tool = tools.get(call.name)
        assert tool is not None
        tool.input.model_validate_json(call.arguments)
