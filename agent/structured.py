"""The schema-constrained decision: submit_signal's arguments as a `response_format` JSON
schema, so a server that turns schemas into grammars (llama.cpp, Ollama, vLLM, OpenAI) can only
emit an object of that shape. The symbol is an enum of the decision's own symbol(s), so a tiny
model cannot spend the call on a made-up ticker. Shape, not bounds: the reply is still validated
by pydantic and then judged by the gate."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from tools import SUBMIT_SIGNAL, ToolRegistry

# Small models fill a long free-text field until the token cap cuts the JSON; a short rationale
# in the grammar (pydantic still allows 600) and a cap that fits it keep the object whole.
RATIONALE_CHARS = 120
MAX_TOKENS = 300


def signal_response_format(tools: ToolRegistry, symbols: Sequence[str]) -> dict[str, Any]:
    tool = tools.get(SUBMIT_SIGNAL)
    if tool is None:
        raise ValueError("a schema-constrained decision needs submit_signal in the registry")
    schema = copy.deepcopy(tool.schema()["function"]["parameters"])
    schema["properties"]["symbol"] = {"type": "string", "enum": list(symbols)}
    schema["properties"]["rationale"]["maxLength"] = RATIONALE_CHARS
    schema["additionalProperties"] = False
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": SUBMIT_SIGNAL, "schema": schema},
        },
        "max_tokens": MAX_TOKENS,
    }
