"""One price rule for the model's cost, as a user meets it in `agent-backtest`: llm.prices is one
provider's list (OpenAI's), so it prices a run only at llm.prices_host. Against a loopback
server the cost is n/a with the reason in the estimate, the text report and the JSON, and a USD
budget is refused; with the host declared (the loopback standing in for OpenAI) the same run is
priced, and the estimate, the report and the budget agree."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import UI_GROUP
from loopback_openai import LoopbackOpenAI
from scripted_model import ScriptedModel, buy_an_uptrend

from agent.llm import LLMClient
from agent.records import load_decisions
from config import load_settings
from core.errors import UserError
from market.sample import load_sample
from store import open_store

DAY = ("--symbol", "BTCUSDT", "--days", "1", "--decide-every", "60")
GPT_4O = (2.50, 10.00)  # config/default.toml: USD per million tokens in, out


@pytest.fixture
def server() -> Iterator[LoopbackOpenAI]:
    server = LoopbackOpenAI(responder=ScriptedModel(buy_an_uptrend)).start()
    yield server
    server.stop()


def llm_env(server: LoopbackOpenAI, **more: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-test-loopback",
        "AGENT_LLM__MODEL": "gpt-4o",  # priced in config/default.toml, at api.openai.com
        "COLUMNS": "400",  # the report's reason on one line
        **more,
    }


def report_of(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_a_loopback_run_costs_na_with_the_reason_and_refuses_a_usd_budget(
    cli, tmp_path: Path, server: LoopbackOpenAI
) -> None:
    out = tmp_path / "r.json"
    page = tmp_path / "r.html"
    run = cli(
        "agent-backtest",
        *DAY,
        "--yes",
        "--json",
        str(out),
        "--html",
        str(page),
        env=llm_env(server),
    )
    assert run.returncode == 0, run.stderr
    report = report_of(out)
    llm, card = report["agent"]["llm"], report["scorecard"]
    why = llm["cost_na"]
    assert why.startswith(f"{server.base_url}/ is not at api.openai.com, whose prices llm.prices")
    assert llm["cost_usd"] is None and llm["prompt_tokens"] > 0
    assert (card["llm_cost_usd"], card["llm_cost_na"]) == (None, why)
    assert card["agent"]["net_return_pct"] is None
    assert f"cost n/a: {why}" in run.stderr  # the estimate
    row = next(line for line in run.stdout.splitlines() if "cost [$] (this run)" in line)
    assert f"n/a: {why}" in row and "0.0000" not in row  # the text report
    assert f"model cost n/a: {why}" in " ".join(run.stdout.split())  # the scorecard
    assert "<tr><td>cost_usd</td><td>n/a</td></tr>" in page.read_text()  # the page's facts

    sent = len(server.requests)
    refused = cli("agent-backtest", *DAY, "--budget-usd", "1", env=llm_env(server))
    assert refused.returncode == 2
    assert (
        "a budget of 1 USD (--budget-usd or llm.max_usd) cannot be applied: the cost is n/a "
        f"here: {why}. If this endpoint bills by llm.prices, set llm.prices_host=127.0.0.1"
    ) in refused.stderr
    assert "llm.max_calls or llm.max_tokens" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(server.requests) == sent  # refused before anything was sent


@pytest.mark.slow
def test_with_the_host_declared_the_estimate_report_and_budget_agree(
    cli, tmp_path: Path, server: LoopbackOpenAI
) -> None:
    env = llm_env(server, AGENT_LLM__PRICES_HOST="127.0.0.1")
    out = tmp_path / "r.json"
    run = cli("agent-backtest", *DAY, "--yes", "--json", str(out), env=env)
    assert run.returncode == 0, run.stderr
    report = report_of(out)
    agent = report["agent"]
    llm = agent["llm"]
    billed = (llm["prompt_tokens"] * GPT_4O[0] + llm["completion_tokens"] * GPT_4O[1]) / 1e6
    assert llm["cost_usd"] == pytest.approx(billed, abs=1e-6) and billed > 0.01
    assert "cost_na" not in llm
    assert report["scorecard"]["llm_cost_usd"] == llm["cost_usd"]
    row = next(line for line in run.stdout.splitlines() if "cost [$] (this run)" in line)
    assert f"{llm['cost_usd']:.4f} ({llm['cost_usd']:.4f})" in row  # cold: every call was sent

    # The estimate of the same run, now from the tokens the model reported, is its cost.
    again = cli("agent-backtest", *DAY, "--yes", env=env)
    assert again.returncode == 0, again.stderr
    assert f"in {agent['decisions']} past decisions" in again.stderr
    assert f"~${llm['cost_usd']:.2f} uncached" in again.stderr

    # A budget of half that stops a cold run before a request could take it past the budget:
    # once a request's worst case (its bytes as tokens, some four times its bill) no longer fits.
    budget = round(llm["cost_usd"] / 2, 4)
    cold = {**env, "AGENT_DATA_DIR": str(tmp_path / "cold")}
    halt = tmp_path / "budget.json"
    args = ("--concurrency", "1", "--budget-usd", str(budget), "--json", str(halt))
    stopped = cli("agent-backtest", *DAY, *args, env=cold)
    assert stopped.returncode == 0, stopped.stderr
    assert "budget ran out" in stopped.stderr
    cut = report_of(halt)["agent"]
    assert cut["stopped"] == "budget" and 0 < cut["decisions"] < agent["decisions"]
    per_call = llm["cost_usd"] / llm["model_calls"]
    assert budget - 8 * per_call < cut["llm"]["cost_usd"] <= budget


@pytest.mark.slow
@UI_GROUP
def test_the_ui_asks_an_unpriced_paid_model_for_a_call_or_token_budget(tmp_path: Path) -> None:
    """A USD budget cannot cap a model whose cost is n/a, so the UI's agent backtest asks for
    the budgets that can, before anything is sent (the port is closed)."""
    from agent.ui import run_agent_backtest  # UI_GROUP: loaded by its worker only

    settings = load_settings(data_dir=tmp_path)
    url = "http://127.0.0.1:9/v1"
    model = LLMClient(settings.llm, api_key="sk-test-unused", base_url=url, cache_dir=None)
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    frames = {"BTCUSDT": load_sample("BTCUSDT")}
    try:
        with pytest.raises(UserError) as refused:
            run_agent_backtest(store, settings, model, frames, tmp_path, "BTCUSDT", 1, 60)
    finally:
        store.close()
    said = str(refused.value)
    assert f"its cost is n/a ({url}/ is not at api.openai.com" in said
    assert "set a call or token budget (AGENT_LLM__MAX_CALLS or AGENT_LLM__MAX_TOKENS)" in said
    assert model.stats.calls == 0


@pytest.mark.slow
@UI_GROUP
def test_a_ui_agent_backtest_reports_its_own_spend_not_the_sessions(
    tmp_path: Path, server: LoopbackOpenAI
) -> None:
    """The UI keeps one model for its session: an agent backtest's calls, tokens and cost are
    the run's own, and a second run answered from the cache says it sent nothing."""
    from agent.ui import run_agent_backtest  # UI_GROUP: loaded by its worker only

    llm = {"model": "gpt-4o", "prices_host": "127.0.0.1", "max_usd": 1.0}
    settings = load_settings(data_dir=tmp_path, llm=llm)
    model = LLMClient(
        settings.llm,
        api_key="sk-test-loopback",
        base_url=server.base_url,
        cache_dir=tmp_path / "llm",
    )
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    frames = {"BTCUSDT": load_sample("BTCUSDT")}
    try:
        first = run_agent_backtest(store, settings, model, frames, tmp_path, "BTCUSDT", 1, 60)
        sent = len(server.requests)
        again = run_agent_backtest(store, settings, model, frames, tmp_path, "BTCUSDT", 1, 60)
    finally:
        store.close()
        model.close()
    assert len(server.requests) == sent > 0
    spent = report_of(first.json_path)["agent"]["llm"]
    assert spent["model_calls"] == sent and spent["cost_usd"] > 0.01
    assert report_of(again.json_path)["agent"]["llm"] == spent  # as if uncached: the same
    page = again.html_path.read_text()
    assert "<tr><td>requests_sent</td><td>0</td></tr>" in page
    assert "<tr><td>cost_usd_this_run</td><td>0</td></tr>" in page


def chat(model: LLMClient, n: int) -> None:
    """The session's chat asking the model, as agent-ui's chat listener does."""
    model.complete([{"role": "user", "content": f"how is BTC? ({n})"}], prompt_version="chat")


@UI_GROUP
def test_a_chat_answered_while_a_ui_agent_backtest_runs_is_not_in_its_spend(
    tmp_path: Path, server: LoopbackOpenAI
) -> None:
    """agent-ui answers its chat while a backtest runs on the session's model: the chat's calls
    were counted as the backtest's, 3 calls of decisions cut short, though nothing stopped it."""
    from agent.ui import run_agent_backtest  # UI_GROUP: loaded by its worker only

    llm = {"model": "gpt-4o", "prices_host": "127.0.0.1", "max_usd": 1.0}
    settings = load_settings(data_dir=tmp_path, llm=llm)
    model = LLMClient(
        settings.llm, api_key="sk-test-loopback", base_url=server.base_url, cache_dir=None
    )
    chats = 3

    def chat_meanwhile(done: int, planned: int) -> None:
        if done == 1:
            for n in range(chats):
                chat(model, n)

    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    frames = {"BTCUSDT": load_sample("BTCUSDT")}
    try:
        out = run_agent_backtest(
            store, settings, model, frames, tmp_path, "BTCUSDT", 1, 60, chat_meanwhile
        )
        recorded = sum(len(r.llm_calls) for r in load_decisions(store))
    finally:
        store.close()
        model.close()
    agent = report_of(out.json_path)["agent"]
    spent = agent["llm"]
    assert agent["stopped"] is None and "in_no_decision" not in spent
    assert spent["model_calls"] == recorded == len(server.requests) - chats
    assert f"<tr><td>requests_sent</td><td>{recorded}</td></tr>" in out.html_path.read_text()


@UI_GROUP
def test_a_ui_agent_backtest_spends_from_the_session_s_budget(
    tmp_path: Path, server: LoopbackOpenAI
) -> None:
    """The budget set before starting agent-ui covers the session, its chat and its backtests
    together: a backtest has no budget of its own, though it counts its calls apart."""
    from agent.ui import run_agent_backtest  # UI_GROUP: loaded by its worker only

    llm = {"model": "gpt-4o", "prices_host": "127.0.0.1", "max_usd": 1.0, "max_calls": 5}
    settings = load_settings(data_dir=tmp_path, llm=llm)
    model = LLMClient(
        settings.llm, api_key="sk-test-loopback", base_url=server.base_url, cache_dir=None
    )
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    frames = {"BTCUSDT": load_sample("BTCUSDT")}
    try:
        for n in range(3):
            chat(model, n)
        out = run_agent_backtest(store, settings, model, frames, tmp_path, "BTCUSDT", 1, 60)
    finally:
        store.close()
        model.close()
    agent = report_of(out.json_path)["agent"]
    assert agent["stopped"] == "budget" and agent["llm"]["model_calls"] == 2
    assert len(server.requests) == 5


@pytest.mark.parametrize("given", ["https://api.openai.com/v1", "api.openai.com:443", ""])
def test_the_prices_host_is_a_bare_host(given: str) -> None:
    """A URL would never equal an endpoint's host, leaving every run silently unpriced."""
    with pytest.raises(UserError) as refused:
        load_settings(llm={"prices_host": given})
    assert "llm.prices_host: a bare host name or IPv4 address" in str(refused.value)
    assert "AGENT_LLM__PRICES_HOST" in str(refused.value)
    assert load_settings(llm={"prices_host": "OpenRouter.ai"}).llm.prices_host == "openrouter.ai"
