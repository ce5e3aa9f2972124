"""The line a user reads before an LLM run spends anything: the decisions, model calls and tokens
the run will take, counted on the prompt the model is then actually sent (or, once this model
has answered this prompt, the tokens it reported), and a price only where llm.prices applies."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from loopback_openai import LoopbackOpenAI
from scripted_model import ScriptedModel, buy_an_uptrend

from agent.estimate import PerDecision, estimate_line
from agent.llm import LLMClient
from agent.tokens import request_tokens
from config.settings import LLMSettings, ModelPrice

DAY = ("--symbol", "BTCUSDT", "--days", "1", "--yes")
LINE = re.compile(
    r"estimate: (?P<decisions>[\d,]+) decisions on (?P<model>\S+), ~(?P<calls>[\d,]+) model "
    r"calls, ~(?P<prompt>[\d,]+) prompt \+ ~(?P<completion>[\d,]+) completion tokens "
    r"\((?P<per_calls>[\d.]+) calls and (?P<per_prompt>[\d,]+) \+ (?P<per_completion>[\d,]+) "
    r"tokens per decision, (?P<basis>[^)]*)\); (?P<cost>.*)"
)


def estimate(stderr: str) -> dict[str, str]:
    found = LINE.search(stderr)
    assert found, stderr
    return found.groupdict()


def number(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.mark.slow
def test_a_local_server_run_is_estimated_on_its_real_prompt_then_on_its_history(
    cli, tmp_path: Path
) -> None:
    server = LoopbackOpenAI(responder=ScriptedModel(buy_an_uptrend)).start()
    env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test-loopback"}
    try:
        first = cli("agent-backtest", *DAY, "--json", str(tmp_path / "r.json"), env=env)
        assert first.returncode == 0, first.stderr
        agent = json.loads((tmp_path / "r.json").read_text())["agent"]
        told = estimate(first.stderr)
        assert number(told["decisions"]) == agent["planned_decisions"]
        assert number(told["calls"]) == agent["llm"]["model_calls"]  # one call per decision
        assert "first prompt counted with tiktoken" in told["basis"]
        # the count is of the request the model was then sent for the run's first decision
        sent = min(server.requests, key=lambda r: r.body["messages"][1]["content"])
        assert number(told["per_prompt"]) == request_tokens(
            sent.body["messages"], sent.body["tools"]
        )
        assert 600 < number(told["per_prompt"]) < 1_000
        assert told["cost"].startswith(f"cost n/a: {server.base_url}/ is not at api.openai.com")
        assert "$" not in told["cost"]

        again = cli("agent-backtest", *DAY, env=env)
        assert again.returncode == 0, again.stderr
        retold = estimate(again.stderr)
        decisions = agent["decisions"]
        assert f"in {decisions} past decisions" in retold["basis"]
        assert number(retold["per_prompt"]) == round(agent["llm"]["prompt_tokens"] / decisions)
        assert number(retold["per_completion"]) == round(
            agent["llm"]["completion_tokens"] / decisions
        )
    finally:
        server.stop()


PER = PerDecision(calls=1, prompt_tokens=800, completion_tokens=120, basis="counted")


def openai_client(model: str) -> LLMClient:
    prices = {"gpt-4o-mini": ModelPrice(input_per_mtok=0.15, output_per_mtok=0.60)}
    settings = LLMSettings(model=model, prices=prices)
    return LLMClient(settings, api_key="sk-test-not-sent", base_url=None, cache_dir=None)


def test_openai_prices_a_model_it_lists_and_says_na_for_one_it_does_not() -> None:
    priced = estimate_line(openai_client("gpt-4o-mini"), PER, 1_000, samples=2)
    # 2,000 calls: 1.6M prompt tokens at $0.15/M and 240k completion tokens at $0.60/M
    assert "2,000 model calls" in priced and "~$0.38 uncached" in priced
    unlisted = estimate_line(openai_client("gpt-9"), PER, 1_000)
    assert "cost n/a: no price for model 'gpt-9' in llm.prices" in unlisted
    assert "$" not in unlisted


def test_a_cost_under_a_cent_is_not_shown_as_nothing() -> None:
    line = estimate_line(openai_client("gpt-4o-mini"), PER, 20)
    # 20 calls: 16k prompt tokens at $0.15/M and 2,400 completion tokens at $0.60/M
    assert "~$0.00384 uncached" in line


@pytest.mark.parametrize("period", ["", " per day"])
def test_the_estimate_says_what_its_figures_cover(period: str) -> None:
    line = estimate_line(openai_client("gpt-4o-mini"), PER, 96, period=period)
    assert line.startswith(f"estimate: 96 decisions{period} on gpt-4o-mini")
    assert "(1.00 calls and 800 + 120 tokens per decision, counted)" in line


@pytest.mark.slow
def test_the_trading_loop_counts_a_real_decision_prompt_before_asking_consent(cli) -> None:
    """The loop has no bars before it starts: its prompt is counted on the bundled sample, and
    nothing is sent (the port is closed) before the user accepts."""
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-test-unused"}
    run = cli("agent-trade", "--feed", "replay", "--speed", "max", "--max-bars", "2", env=env)
    assert run.returncode == 2 and "pass --yes to accept the estimate" in run.stderr
    line = next(x for x in run.stderr.splitlines() if x.startswith("estimate:"))
    # every 15 min on both default symbols
    assert line.startswith("estimate: 192 decisions per day on gpt-4o-mini, ~192 model calls")
    assert "a decision prompt on the sample counted with tiktoken" in line
    assert "cost n/a: http://127.0.0.1:9/v1/ is not at api.openai.com" in line
