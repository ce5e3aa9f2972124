"""What an endpoint and model can do for a decision: structured tool calls, tool_choice=required,
and response_format with a JSON schema. Learnt once per base_url and model by three tiny probe
calls (or taken from llm.decision_format), and kept in the data dir so later runs send none."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from config.settings import DecisionFormat
from core.errors import ConfigError
from core.security import private_file

if TYPE_CHECKING:
    from agent.llm import LLMClient, LLMResponse

PROBE_VERSION = "capability-probe-1"  # part of each probe call's cache key
_PING = "probe_ping"
_TOOL = {
    "type": "function",
    "function": {
        "name": _PING,
        "description": "Answer the probe.",
        "parameters": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
        },
    },
}
_ASK = [{"role": "user", "content": f"Call {_PING} with ok set to true."}]
_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "probe",
        "schema": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
            "additionalProperties": False,
        },
    },
}
_REPLY_TOKENS = 40  # enough for the call or the object; a model that rambles is cut short
_lock = threading.Lock()


class Capabilities(BaseModel):
    """What the probe saw: a structured call of the probe tool, or a schema-valid object."""

    tools: bool
    tool_choice_required: bool
    json_schema: bool

    def strongest(self) -> DecisionFormat:
        """A grammar beats a forced call, which beats a call the model may skip."""
        if self.json_schema:
            return "json_schema"
        return "required" if self.tool_choice_required else "tools"


def probe(client: LLMClient) -> Capabilities:
    """Three calls; a 400 means the server does not take that field, prose means the model
    does not use it: either way that path is not used for decisions."""
    tools = _calls_the_tool(client, {"max_tokens": _REPLY_TOKENS})
    required = _calls_the_tool(client, {"tool_choice": "required", "max_tokens": _REPLY_TOKENS})
    schema = _answer(client, None, {"response_format": _SCHEMA, "max_tokens": _REPLY_TOKENS})
    return Capabilities(
        tools=tools, tool_choice_required=required, json_schema=_is_probe_object(schema)
    )


def resolve_format(client: LLMClient, file: Path | None) -> DecisionFormat:
    """The strongest format for this endpoint and model, probed at most once per data dir."""
    key = f"{client.base_url}|{client.model}"
    with _lock:
        known = _read(file)
        if key in known:
            try:
                return Capabilities.model_validate(known[key]).strongest()
            except ValidationError:
                pass  # an entry of the wrong shape (edited by hand): probe again, rewrite it
        found = probe(client)
        if file is not None:
            private_file(file)
            file.write_text(json.dumps({**known, key: found.model_dump()}, indent=1) + "\n")
        return found.strongest()


def _calls_the_tool(client: LLMClient, options: dict[str, Any]) -> bool:
    response = _answer(client, [_TOOL], options)
    return response is not None and any(c.name == _PING for c in response.message.tool_calls)


def _answer(
    client: LLMClient, tools: list[dict[str, Any]] | None, options: dict[str, Any]
) -> LLMResponse | None:
    from agent.llm import LLMError

    try:
        return client.complete(
            _ASK, tools, prompt_version=PROBE_VERSION, options=options, probe=True
        )
    except LLMError as exc:
        if exc.cause == "bad_request":
            return None
        if exc.cause == "cache_miss":
            raise ConfigError(
                "config error: llm.decision_format=probe has not probed this endpoint yet and "
                "llm.mode=replay sends nothing; run once with llm.mode=cache, or set "
                "AGENT_LLM__DECISION_FORMAT to tools, required or json_schema"
            ) from None
        raise


def _is_probe_object(response: LLMResponse | None) -> bool:
    if response is None or response.message.tool_calls:
        return False
    try:
        _Ping.model_validate_json(response.message.content or "")
    except ValidationError:
        return False
    return True


class _Ping(BaseModel, extra="forbid", strict=True):
    ok: bool


def _read(file: Path | None) -> dict[str, Any]:
    if file is None or not file.exists():
        return {}
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # unreadable: probe again and rewrite it
    return data if isinstance(data, dict) else {}
