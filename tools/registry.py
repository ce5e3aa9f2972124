"""Typed tools for the model: pydantic models in and out, turned into OpenAI tool schemas, and a
dispatcher that reports every model mistake back as a tool message instead of raising."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from core.config_model import number_only
from tools.env import ToolEnv

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)

MAX_ERRORS_SHOWN = 3


class ToolError(Exception):
    """A call the model can correct (unknown symbol, range outside the data): sent back to it."""


@dataclass(frozen=True)
class Tool(Generic[In, Out]):
    name: str
    description: str
    input: type[In]
    output: type[Out]
    handler: Callable[[ToolEnv, In], Out]

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": _compact_schema(self._parameters()),
            },
        }

    def _parameters(self) -> dict[str, Any]:
        """The input model's docstring is for us; the tool description already tells the model."""
        schema = self.input.model_json_schema()
        schema.pop("description", None)
        return schema


class ToolOutcome(BaseModel):
    """One executed call: what the model sent, what it got back, and whether that was an error."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    name: str
    arguments: str
    ok: bool
    content: str
    result: dict[str, Any] | None = None
    error: str | None = None
    duration_ms: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": self.call_id, "content": self.content}


class ToolRegistry:
    """The tools one agent may call; `schemas()` is what goes into every chat request."""

    def __init__(self, tools: Iterable[Tool[Any, Any]]) -> None:
        self._tools: dict[str, Tool[Any, Any]] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"tool {tool.name!r} registered twice")
            self._tools[tool.name] = tool

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> Tool[Any, Any] | None:
        return self._tools.get(name)

    def without(self, *names: str) -> ToolRegistry:
        """The same tools minus some (a backtest offers no order placement)."""
        return ToolRegistry(t for n, t in self._tools.items() if n not in names)

    def with_tools(self, *extra: Tool[Any, Any]) -> ToolRegistry:
        return ToolRegistry([*self._tools.values(), *extra])

    @cached_property
    def _schemas(self) -> tuple[dict[str, Any], ...]:
        return tuple(tool.schema() for tool in self._tools.values())

    def schemas(self) -> list[dict[str, Any]]:
        return list(self._schemas)

    @staticmethod
    def declined(call_id: str, name: str, arguments: str, why: str) -> ToolOutcome:
        """A call not run, answered to the model as an error saying why."""
        return ToolOutcome(
            call_id=call_id,
            name=name,
            arguments=arguments,
            ok=False,
            content=json.dumps({"error": why}, separators=(",", ":"), ensure_ascii=False),
            error=why,
        )

    def call(self, env: ToolEnv, call_id: str, name: str, arguments: str) -> ToolOutcome:
        """Run one tool call; the model's mistakes and ToolErrors come back as error content."""
        started = time.perf_counter()

        def outcome(ok: bool, payload: dict[str, Any], error: str | None = None) -> ToolOutcome:
            return ToolOutcome(
                call_id=call_id,
                name=name,
                arguments=arguments,
                ok=ok,
                content=json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
                result=payload if ok else None,
                error=error,
                duration_ms=(time.perf_counter() - started) * 1000,
            )

        def failed(message: str) -> ToolOutcome:
            return outcome(False, {"error": message}, message)

        tool = self._tools.get(name)
        if tool is None:
            return failed(f"unknown tool {name!r}; available tools: {', '.join(self._tools)}")
        try:
            raw = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            return failed(f"arguments are not valid JSON ({exc.msg} at char {exc.pos}); resend")
        if not isinstance(raw, dict):
            return failed("arguments must be a JSON object")
        unknown = sorted(set(raw) - set(tool.input.model_fields))
        if unknown:  # dropped, an argument such as leverage would look taken to the model
            takes = ", ".join(tool.input.model_fields) or "none"
            return failed(
                f"invalid arguments for {name}: {', '.join(unknown)}: not an argument it takes "
                f"(it takes: {takes})"
            )
        booleans = [k for k, v in raw.items() if isinstance(v, bool) and number_only(tool.input, k)]
        if booleans:  # pydantic would read true as 1: a confidence of 100%, all of the equity
            return failed(
                f"invalid arguments for {name}: {', '.join(booleans)}: a number, not true or false"
            )
        try:
            parsed = tool.input.model_validate(raw)
        except ValidationError as exc:
            return failed(f"invalid arguments for {name}: {_describe(exc)}")
        try:
            result = tool.handler(env, parsed)
        except ToolError as exc:
            return failed(str(exc))
        return outcome(True, result.model_dump(mode="json", exclude_none=True))


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:MAX_ERRORS_SHOWN]:
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - MAX_ERRORS_SHOWN
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _compact_schema(schema: Any) -> Any:
    """Fewer prompt tokens, same meaning: no pydantic `title`s, and an optional field is shown as
    its plain type (it is simply not required) instead of `anyOf [type, null]` with a null default."""
    if isinstance(schema, list):
        return [_compact_schema(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    options = schema.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        plain = next(o for o in options if o != {"type": "null"})
        rest = {
            k: v for k, v in schema.items() if k != "anyOf" and not (k == "default" and v is None)
        }
        return _compact_schema({**plain, **rest})
    return {
        k: _compact_schema(v)
        for k, v in schema.items()
        if not (k == "title" and isinstance(v, str))
    }
