"""A scripted chat model for the loopback OpenAI server: each reply is chosen from the request's
conversation (so it is stateless, retry-safe and recordable) and wrapped in a real gpt-4o
completion envelope from the captures, so the client parses exactly what OpenAI sends."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loopback_openai import Scripted

from agent.briefing import read_snapshot

CAPTURES = Path(__file__).parent / "fixtures" / "openai" / "extracted_json"
_TEMPLATE = json.loads(
    (CAPTURES / "openai_chat_tool_call_single__gpt-4o_2025-05.json").read_text()
)["interactions"][0]["response_body"]
RATE_LIMITED = json.loads((CAPTURES / "openrouter_chat_error_429.json").read_text())[
    "interactions"
][0]

Reply = dict[str, Any]
Turn = Callable[[list[dict[str, Any]]], Reply]


def tool_call(name: str, arguments: dict[str, Any] | str) -> Reply:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"tool_calls": [(name, raw)]}


def text(content: str) -> Reply:
    return {"content": content}


def tool_results(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Tool name -> parsed content of its latest result, so a turn can read what it was given."""
    names = {c["id"]: c["function"]["name"] for m in messages for c in m.get("tool_calls") or []}
    return {
        names[m["tool_call_id"]]: json.loads(m["content"])
        for m in messages
        if m.get("role") == "tool"
    }


def completion(reply: Reply, request: dict[str, Any], turn: int) -> dict[str, Any]:
    body = copy.deepcopy(_TEMPLATE)
    body["id"] = f"chatcmpl-scripted-{turn}"
    body["model"] = request.get("model", body["model"])
    message = body["choices"][0]["message"]
    message["content"] = reply.get("content")
    calls = reply.get("tool_calls") or []
    message["tool_calls"] = [
        {
            "id": f"call_scripted_{turn}_{i}",
            "type": "function",
            "function": {"name": name, "arguments": raw},
        }
        for i, (name, raw) in enumerate(calls)
    ] or None
    body["choices"][0]["finish_reason"] = "tool_calls" if calls else "stop"
    prompt_tokens = len(json.dumps(request)) // 4
    completion_tokens = max(1, len(json.dumps(reply)) // 4)
    body["usage"].update(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )
    return body


class ScriptedModel:
    """Turn k answers the k-th model call of a conversation; the last turn repeats."""

    def __init__(self, *turns: Turn) -> None:
        self.turns = turns
        self.seen: list[list[dict[str, Any]]] = []

    def __call__(self, request: dict[str, Any]) -> Scripted:
        messages = request["messages"]
        self.seen.append(messages)
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        step = self.turns[min(turn, len(self.turns) - 1)]
        return Scripted(200, completion(step(messages), request, turn))


def rate_limited(retry_after_s: float) -> Scripted:
    """OpenRouter's real 429 body, with the Retry-After header a provider sends."""
    return Scripted(
        RATE_LIMITED["response_status"]["code"],
        RATE_LIMITED["response_body"],
        headers={"retry-after": f"{retry_after_s:g}"},
    )


def look_at_the_market(_: list[dict[str, Any]]) -> Reply:
    """A trend follower's first turn: the snapshot and five 15m candles, in one call."""
    return {
        "tool_calls": [
            ("get_market_snapshot", json.dumps({"symbol": "BTCUSDT"})),
            ("get_candles", json.dumps({"symbol": "BTCUSDT", "interval": "15m", "limit": 5})),
        ]
    }


def buy_an_uptrend(messages: list[dict[str, Any]]) -> Reply:
    """Its second turn (or its only one, reading the snapshot the prompt carries): buy 20% with
    a 0.5% stop when the fast SMA is above the slow, else hold."""
    snap = tool_results(messages).get("get_market_snapshot") or _prompt_snapshot(messages)
    if (snap.get("trend") or {}).get("sma_fast_above_slow"):
        price = snap["last_price"]
        return tool_call(
            "submit_signal",
            {
                "symbol": "BTCUSDT",
                "action": "buy",
                "size_pct": 0.2,
                "stop_loss": round(price * 0.995, 2),
                "confidence": 0.8,
                "rationale": "fast SMA above slow",
            },
        )
    return tool_call("submit_signal", {"symbol": "BTCUSDT", "action": "hold", "confidence": 0.5})


def _prompt_snapshot(messages: list[dict[str, Any]]) -> dict[str, Any]:
    asked = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
    return (read_snapshot(asked[0]) if asked else None) or {}
