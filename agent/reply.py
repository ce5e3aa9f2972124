"""Reading what a model answered, tolerant but never trusting: small local models write a tool
call into the content (`<tool_call>…</tool_call>`, or bare JSON) instead of the structured field.
Such a call is parsed and validated like a structured one; prose, an echo of the prompt, an
unknown tool or bad arguments become an explicit abstain with that cause, never a guess."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from agent.llm import ToolCall
from tools import SUBMIT_SIGNAL, ToolRegistry

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
ECHO_MIN_CHARS = 30  # a line this long found verbatim in the prompt is an echo, not an answer
SIGNAL_KEYS = frozenset({"action", "symbol"})
CONTENT_CALL_PREFIX = "call_content_"  # the id of a call read out of a reply's text


class Abstain(BaseModel):
    """Why a reply carries no usable call: prose, echo, empty, unknown_tool or bad_arguments."""

    cause: str
    message: str


def read_content(
    content: str | None, tools: ToolRegistry, prompt: list[dict[str, Any]], *, signal_only: bool
) -> list[ToolCall] | Abstain:
    """The tool calls a reply's text carries, each checked against `tools`; `signal_only` (a
    schema-constrained answer) reads a bare object as submit_signal's arguments."""
    text = (content or "").strip()
    if not text:
        return Abstain(cause="empty", message="the model returned no content and no tool call")
    blocks = _TAGGED.findall(text) or [_FENCE.sub(r"\1", text)]
    calls: list[ToolCall] = []
    for index, block in enumerate(blocks, start=1):
        parsed = _json_object(block)
        if parsed is None:
            if calls or _TAGGED.search(text) or block.lstrip().startswith("{"):
                return Abstain(
                    cause="bad_arguments",
                    message=f"unparseable JSON (cut by the token cap?): {_cut(block)}",
                )
            return _prose(text, prompt)
        call = _as_call(parsed, index, signal_only)
        if isinstance(call, Abstain):
            return call
        checked = check_call(call, tools)
        if checked is not None:
            return checked
        calls.append(call)
    return calls


def check_call(call: ToolCall, tools: ToolRegistry) -> Abstain | None:
    """The registry's own input model decides: pydantic bounds hold whatever the grammar let by."""
    tool = tools.get(call.name)
    if tool is None:
        return Abstain(
            cause="unknown_tool",
            message=f"the model called {call.name!r}; available: {', '.join(tools.names)}",
        )
    try:
        tool.input.model_validate_json(call.arguments)
    except ValidationError as exc:
        where = ", ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
            for e in exc.errors()[:3]
        )
        return Abstain(cause="bad_arguments", message=f"invalid {call.name} arguments: {where}")
    return None


def _as_call(parsed: dict[str, Any], index: int, signal_only: bool) -> ToolCall | Abstain:
    name, arguments = parsed.get("name"), parsed.get("arguments", parsed.get("parameters"))
    if isinstance(name, str) and arguments is not None:
        if isinstance(arguments, str):
            arguments = _json_object(arguments)
        if not isinstance(arguments, dict):
            return Abstain(cause="bad_arguments", message=f"{name}: arguments are not an object")
    elif signal_only or parsed.keys() >= SIGNAL_KEYS:
        name, arguments = SUBMIT_SIGNAL, parsed
    else:
        return Abstain(
            cause="bad_arguments", message=f"a JSON object naming no tool: {_cut(parsed)}"
        )
    raw = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
    return ToolCall(id=f"{CONTENT_CALL_PREFIX}{index}", name=name, arguments=raw)


def _prose(text: str, prompt: list[dict[str, Any]]) -> Abstain:
    said = "\n".join(str(m.get("content") or "") for m in prompt if m.get("role") != "assistant")
    lines = (line.strip() for line in text.splitlines())
    if any(len(line) >= ECHO_MIN_CHARS and line in said for line in lines):
        return Abstain(cause="echo", message=f"the model echoed its prompt: {_cut(text)}")
    return Abstain(cause="prose", message=f"the model answered without a signal: {_cut(text)}")


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _cut(value: Any) -> str:
    return str(value)[:200]
