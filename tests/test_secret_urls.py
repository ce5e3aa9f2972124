"""URLs that carry a credential, as a user configures them: an LLM proxy's login in
OPENAI_BASE_URL, and an alert webhook (a Slack or Discord webhook URL is the credential). The
secret is shown masked where the URL is shown, and is found in no output, log, report or file."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback_openai import LoopbackOpenAI
from scripted_model import ScriptedModel, buy_an_uptrend, look_at_the_market

from config import load_settings
from core.logging import setup_logging

PASSWORD = "proxy-PASS-7781"
HOOK_SECRET = "hOoKsEcReT4242"
HOOK = f"https://hooks.slack.com/services/T000/B000/{HOOK_SECRET}"


@pytest.fixture
def model_server() -> Iterator[LoopbackOpenAI]:
    server = LoopbackOpenAI(responder=ScriptedModel(look_at_the_market, buy_an_uptrend)).start()
    yield server
    server.stop()


def _files_holding(folder: Path, secret: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.slow
def test_a_proxy_password_in_the_llm_url_is_in_no_output_report_or_store(
    cli, offline_env: dict[str, str], tmp_path: Path, model_server: LoopbackOpenAI
) -> None:
    """Was printed on the cost n/a line, written to both reports and to each decision's
    record, and keyed the capabilities file."""
    url = model_server.base_url.replace("http://", f"http://proxyuser:{PASSWORD}@")
    env = {"OPENAI_BASE_URL": url, "OPENAI_API_KEY": "sk-test-loopback", "AGENT_LOG_LEVEL": "DEBUG"}
    reports = tmp_path / "reports"
    reports.mkdir()
    json_out, html_out = reports / "run.json", reports / "run.html"
    args = ("--symbol", "BTCUSDT", "--days", "1", "--yes", "--json", str(json_out))
    ran = cli("agent-backtest", *args, "--html", str(html_out), env=env)
    assert ran.returncode == 0, ran.stderr
    assert model_server.requests  # the run went through the proxy URL
    assert "cost n/a: http://proxyuser:***@127.0.0.1" in ran.stderr
    assert PASSWORD not in ran.stdout + ran.stderr
    assert "proxyuser:***@127.0.0.1" in json_out.read_text()
    assert _files_holding(reports, PASSWORD) == []
    assert _files_holding(Path(offline_env["AGENT_DATA_DIR"]), PASSWORD) == []


def test_agent_config_show_masks_the_alert_webhook(cli) -> None:
    """Was printed in clear: the webhook URL is all it takes to post to the user's channel."""
    shown = cli("agent-config", "show", env={"AGENT_ALERTS__WEBHOOK_URL": HOOK})
    assert shown.returncode == 0, shown.stderr
    (line,) = [row for row in shown.stdout.splitlines() if row.startswith("alerts.webhook_url")]
    assert "*****" in line and line.split()[-1] == "env"
    assert HOOK_SECRET not in shown.stdout + shown.stderr
    no_scheme = HOOK.removeprefix("https://")
    refused = cli("agent-config", "show", env={"AGENT_ALERTS__WEBHOOK_URL": no_scheme})
    assert refused.returncode == 2 and "alerts.webhook_url: String should match" in refused.stderr
    assert HOOK_SECRET not in refused.stdout + refused.stderr


def test_the_log_never_shows_the_alert_webhook(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A library's error naming the URL it failed to reach (as httpx's do) is scrubbed."""
    monkeypatch.setenv("AGENT_ALERTS__WEBHOOK_URL", HOOK)
    settings = load_settings()
    setup_logging("DEBUG", secrets=settings.secret_values())  # as agent-ui and agent-trade
    logging.getLogger("httpx").error("Server error '500' for url '%s'", HOOK)
    said = capfd.readouterr().err
    assert "Server error '500'" in said and HOOK_SECRET not in said
