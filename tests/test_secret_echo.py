"""An endpoint that echoes the API key back: the key is scrubbed before anything is written, so
it appears in no report, record, cache file or terminal line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from loopback_openai import LoopbackOpenAI, Scripted
from scripted_model import completion

KEY = "sk-echoed-0123456789abcdefXYZ"


def _echo(where: str) -> Callable[[dict], Scripted]:
    """Says the key in its text and in the signal's rationale, and in one more field of the
    reply (`where`): the tool call's id or name, the model's name, or the finish reason."""

    def answer(request: dict) -> Scripted:
        arguments = (
            '{"symbol": "BTCUSDT", "action": "hold", "confidence": 0.5, '
            f'"rationale": "my key is {KEY}"}}'
        )
        name = f"submit_signal {KEY}" if where == "name" else "submit_signal"
        reply = {"content": f"Authorization: Bearer {KEY}", "tool_calls": [(name, arguments)]}
        body = completion(reply, request, 0)
        choice = body["choices"][0]
        if where == "id":
            choice["message"]["tool_calls"][0]["id"] = f"call_{KEY}"
        elif where == "model":
            body["model"] = f"gpt-4o {KEY}"
        elif where == "finish_reason":
            choice["finish_reason"] = f"tool_calls {KEY}"
        return Scripted(200, body)

    return answer


@pytest.mark.slow
@pytest.mark.parametrize("where", ["text", "id", "name", "model", "finish_reason"])
def test_a_key_echoed_by_the_model_lands_in_no_file(cli, tmp_path: Path, where: str) -> None:
    server = LoopbackOpenAI(responder=_echo(where)).start()
    try:
        env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY}
        out, html = tmp_path / "run.json", tmp_path / "run.html"
        args = ("--symbol", "BTCUSDT", "--days", "1", "--yes", "--json", str(out))
        result = cli("agent-backtest", *args, "--html", str(html), env=env)
    finally:
        server.stop()

    assert result.returncode == 0, result.stderr
    headers = {k.lower(): v for k, v in server.requests[0].headers.items()}
    assert headers["authorization"] == f"Bearer {KEY}"  # the endpoint did know the key
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert out in written and html in written
    assert any("llm-cache" in p.parts for p in written)
    assert any(p.name == "agent.db" for p in written)
    leaking = [p for p in written if KEY.encode() in p.read_bytes()]
    assert leaking == []
    assert KEY not in result.stdout + result.stderr
    if where != "name":  # an unknown tool's call is refused, so no signal carries a rationale
        assert "my key is ***" in out.read_text()
