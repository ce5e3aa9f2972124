"""An endpoint that echoes the API key back: the key is scrubbed before anything is written, so
it appears in no report, record, cache file or terminal line."""

from __future__ import annotations

from pathlib import Path

import pytest
from loopback_openai import LoopbackOpenAI, Scripted
from scripted_model import completion

KEY = "sk-echoed-0123456789abcdefXYZ"


def _echo(request: dict) -> Scripted:
    """Says the key in its text and in the signal's rationale."""
    arguments = (
        '{"symbol": "BTCUSDT", "action": "hold", "confidence": 0.5, '
        f'"rationale": "my key is {KEY}"}}'
    )
    reply = {
        "content": f"Authorization: Bearer {KEY}",
        "tool_calls": [("submit_signal", arguments)],
    }
    return Scripted(200, completion(reply, request, 0))


@pytest.mark.slow
def test_a_key_echoed_by_the_model_lands_in_no_file(cli, tmp_path: Path) -> None:
    server = LoopbackOpenAI(responder=_echo).start()
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
    assert "my key is ***" in out.read_text()
