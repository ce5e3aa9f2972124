"""`agent-backtest` with the agent, as a user runs it: a real subprocess on the bundled sample,
either with the offline model or against a loopback OpenAI-compatible server playing a model."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from launcher import popen
from loopback_openai import LoopbackOpenAI, Recorded, Scripted
from scripted_model import ScriptedModel, buy_an_uptrend, look_at_the_market, tool_results

from agent.cli.common import EXIT_INTERRUPTED
from agent.records import load_decisions
from backtest.terminal import fmt
from store import open_store

DAY = ("--symbol", "BTCUSDT", "--days", "1")
DECISION_TIME = re.compile(r"Decision time: (\S+ \S+) UTC")


@pytest.mark.slow
def test_offline_agent_backtest_reports_trades_decisions_and_baselines(cli, tmp_path: Path) -> None:
    out, html = tmp_path / "agent.json", tmp_path / "agent.html"
    result = cli("agent-backtest", *DAY, "--json", str(out), "--html", str(html))
    assert result.returncode == 0, result.stderr
    assert "offline model" in result.stderr
    report = json.loads(out.read_text())
    agent = report["agent"]
    assert report["config"]["strategy"] == "agent"
    closed = [t for t in report["trades"] if t["exit_reason"] != "end_of_data"]
    assert report["metrics"]["# Trades"] == len(closed) > 0
    assert agent["model"] == "offline"
    assert agent["decisions"] == agent["planned_decisions"] == len(agent["decision_log"]) > 80
    assert set(agent["baselines"]) == {
        "buy_and_hold",
        "sma_cross",
        "rsi_reversion",
        "donchian_breakout",
        "random_entry",
    }
    card = report["scorecard"]
    assert {"baselines", "intervals", "veto_ledger", "calibration", "llm_cost_usd"} <= set(card)
    assert set(card["baselines"]) == set(agent["baselines"])
    assert card["llm_cost_usd"] == 0.0 and card["agent"]["net_return_pct"] == pytest.approx(
        report["metrics"]["Return [%]"], abs=1e-4
    )
    assert card["calibration"]["brier"] is not None  # the offline model states its confidence
    # every order in the report comes from an approved verdict
    approved = [d for d in agent["decision_log"] if d["order"] is not None]
    assert approved and all(d["verdict"] == "approved" for d in approved)
    assert report["orders"]["approved"] == len(approved)
    entries = {pd.Timestamp(t["entry_time"]) for t in report["trades"]}
    decided = {pd.Timestamp(d["time"]) for d in approved}
    assert entries <= decided  # each entry filled at the open right after an approved decision
    page = html.read_text()
    assert "decisions" in page and "Decision log" in page
    assert "Veto ledger" in page and 'class="reliability"' in page
    assert "veto ledger" in result.stdout and "P(agent beats buy_and_hold)" in result.stdout

    again = tmp_path / "again.json"
    rerun = cli("agent-backtest", *DAY, "--json", str(again))
    assert rerun.returncode == 0, rerun.stderr
    assert again.read_bytes() == out.read_bytes()

    store = open_store(f"sqlite:///{tmp_path / 'data' / 'agent.db'}")
    records = load_decisions(store)
    store.close()
    assert len(records) == agent["decisions"]  # the rerun replaced, not duplicated
    assert all(r.mode == "decide" and r.model == "offline" for r in records)


@pytest.mark.slow
def test_each_rule_baseline_trades_as_its_own_backtest_of_the_window(cli, tmp_path: Path) -> None:
    """The agent starts warm, from the day before the window: a rule beside it in the scorecard
    starts from the same warm-up, so its row is what `--strategy NAME` over the window reports."""
    out = tmp_path / "agent.json"
    assert cli("agent-backtest", *DAY, "--json", str(out)).returncode == 0
    card = json.loads(out.read_text())["scorecard"]["baselines"]
    for name in ("sma_cross", "rsi_reversion", "donchian_breakout"):
        alone = tmp_path / f"{name}.json"
        run = cli("agent-backtest", "--strategy", name, *DAY, "--json", str(alone))
        assert run.returncode == 0, run.stderr
        metrics = json.loads(alone.read_text())["metrics"]
        assert "warm-up: 1,440 bars before the window" in run.stderr
        assert card[name]["trades"] == metrics["# Trades"] > 0, name
        for figure, metric in (
            ("return_pct", "Return [%]"),
            ("sharpe", "Sharpe Ratio"),
            ("max_drawdown_pct", "Max. Drawdown [%]"),
        ):
            assert card[name][figure] == round(metrics[metric], 4), (name, figure)


@pytest.mark.slow
def test_every_n_a_in_the_scorecard_says_why(cli, tmp_path: Path) -> None:
    """An hour in which the agent never trades has no Sharpe ratio and no Sharpe interval:
    the terminal, the JSON and the page each say why, for every run that has none."""
    out, html = tmp_path / "flat.json", tmp_path / "flat.html"
    hour = ("--start", "2025-10-31T12:00", "--end", "2025-10-31T13:10")
    run = cli("agent-backtest", "--symbol", "BTCUSDT", *hour, "--json", str(out),
              "--html", str(html))  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    card = report["scorecard"]
    flat = "returns vary by less than 1e-09 per bar: no volatility to divide by"
    spread = "the ratio is undefined in most resamples (returns without spread)"
    runs = {"agent": card["agent"], **card["baselines"]}
    runs["random_entry"] = runs["random_entry"]["median"]
    na = [name for name, f in runs.items() if f["sharpe"] is None]
    assert "agent" in na and "random_entry" in na
    for name, figures in runs.items():
        assert figures["sharpe_na"] == (flat if name in na else None), name
        assert (figures["sharpe_ci"]["low"] is None) == (figures["sharpe_ci"]["na"] == spread)
    for name in set(na) - {"agent"}:
        assert report["agent"]["baselines"][name]["not_available"] == {"Sharpe Ratio": flat}
    shown = ", ".join("agent (net)" if n == "agent" else n for n in na)
    said = " ".join(run.stdout.split())
    page = html.read_text()
    for line in (
        f"n/a Sharpe Ratio ({shown}): {flat}",
        f"n/a Sharpe 95% interval ({shown}): {spread}",
    ):
        assert line in said and f"<li>{line}</li>" in page


@pytest.mark.slow
def test_a_compared_prompt_is_on_the_page_and_said_idle_offline(cli, tmp_path: Path) -> None:
    """The paired A/B is in the terminal, the JSON and the page alike, its agreement as a share
    of the decision points; offline, one notice says a prompt variant cannot differ."""
    prompt, out, html = tmp_path / "p.txt", tmp_path / "ab.json", tmp_path / "ab.html"
    prompt.write_text("hi\n")
    variant = f"prompt={prompt}"
    run = cli("agent-backtest", *DAY, "--compare", variant, "--json", str(out),
              "--html", str(html))  # fmt: skip
    assert run.returncode == 0, run.stderr
    idle = [line for line in run.stderr.splitlines() if f"--compare {variant}" in line]
    assert idle == [
        f"notice: --compare {variant} compares nothing: the offline model decides by its rules "
        "and never reads the system prompt, so the variant decides as the run does (100% "
        "agreement); an LLM reads it"
    ]
    compared = json.loads(out.read_text())["scorecard"]["compare"]
    assert compared["signal_agreement"] == compared["verdict_agreement"] == 1.0
    points = compared["decision_points"]
    said = " ".join(run.stdout.split())
    assert f"decision points │ {points} │" in said
    assert "same signal / same verdict │ 100% / 100% │" in said
    page = html.read_text()
    assert f"<h2>Paired A/B: {variant} on the same decision points</h2>" in page
    for name, value in (
        ("decision points", str(points)),
        ("same signal / same verdict", "100% / 100%"),
        ("net return [%] base / variant", f"{compared['base_net_return_pct']:.4f} / "
         f"{compared['variant_net_return_pct']:.4f}"),
    ):  # fmt: skip
        assert f"<td>{name}</td><td>{value}</td>" in page


@pytest.mark.slow
@pytest.mark.parametrize("strategy", [("--strategy", "sma_cross"), ()], ids=["sma", "agent"])
def test_a_risk_halt_is_on_record_in_the_report(cli, tmp_path: Path, strategy: tuple) -> None:
    """A daily-loss halt skips the strategy and the gate: the orders section says how many
    decision bars it skipped and why; the agent's decisions made ahead of the runner for those
    bars say they were never gated, and with them the signals add up."""
    out = tmp_path / "halt.json"
    halt = {"AGENT_RISK__MAX_DAILY_LOSS_PCT": "0.001"}
    result = cli("agent-backtest", *strategy, *DAY, "--json", str(out), env=halt)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    halts = report["orders"]["halted"]
    assert {code for h in halts for code in h["codes"]} == {"DAILY_LOSS"}
    halted = halts[0]
    assert halted["decision_bars"] > 0
    assert halted["message"].startswith("DAILY_LOSS: daily loss ")
    assert halted["first"] < halted["last"]
    said = " ".join(result.stdout.split())
    assert f"halted: decision bars skipped │ {halted['decision_bars']}, DAILY_LOSS: " in said
    if not strategy:
        log = report["agent"]["decision_log"]
        assert "signal" not in {row["verdict"] for row in log}
        skipped = [row for row in log if row["verdict"] == "halted"]
        assert skipped and all(row["codes"] == ["DAILY_LOSS"] for row in skipped)
        signals = sum(v for k, v in report["agent"]["llm"]["signals"].items() if k != "hold")
        assert signals == report["orders"]["signals"] + len(skipped)
        assert report["agent"]["risk"]["halted"] == {"DAILY_LOSS": len(skipped)}


@pytest.mark.slow
def test_on_hourly_bars_the_agent_is_said_to_decide_hourly_as_it_does(cli, tmp_path: Path) -> None:
    """A decision waits for a bar's close: the setting's 15 min falls hourly on 1h bars, and
    the notice, the report's head and its JSON say the hour, as the decision log shows."""
    out = tmp_path / "r.json"
    run = cli("agent-backtest", "--symbol", "BTCUSDT", "--interval", "1h", "--days", "3",
              "--json", str(out))  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "notice: the agent decides every 60 min: a decision waits for a 1h bar's close, " \
        "so the setting trading.decide_every (15 min) falls" in run.stderr  # fmt: skip
    assert "every 60 min" in run.stdout and "every 15 min" not in run.stdout
    agent = json.loads(out.read_text())["agent"]
    times = [datetime.fromisoformat(d["time"]) for d in agent["decision_log"]]
    assert {b - a for a, b in itertools.pairwise(times)} == {timedelta(hours=1)}
    assert agent["decide_every_min"] == 60


@pytest.mark.slow
def test_a_window_with_no_decision_bar_is_refused_for_what_it_lacks(cli) -> None:
    """Ten warmed-up bars, 12:05 to 12:15, with no 15-minute close but the last: the refusal
    blamed "the warm-up of 0 bars plus one --decide-every", a flag never given, and set bars
    against minutes."""
    run = cli("agent-backtest", "--symbol", "BTCUSDT",
              "--start", "2025-10-31T12:05", "--end", "2025-10-31T12:15")  # fmt: skip
    assert run.returncode == 2
    error = next(line for line in run.stderr.splitlines() if line.startswith("error:"))
    assert error == (
        "error: no decision bar: the agent decides every 15 min (trading.decide_every) on the "
        "close of a bar other than the last (its order could not fill), and the window "
        "2025-10-31 12:05 → 2025-10-31 12:15 UTC holds none; give more bars (a longer --days, "
        "--start/--end or --data file)"
    )


def test_the_command_loads_no_llm_sdk_or_plotting_until_needed() -> None:
    """Start-up is most of a short run: the SDK loads with an LLM, plotly with --html, and the
    graph (LangGraph, and LangSmith under it) when the agent runs, not to parse the flags."""
    heavy = ("openai", "plotly", "gradio", "ray", "langgraph", "langsmith", "langchain_core")
    probe = f"import sys, agent.cli.backtest; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


@pytest.fixture
def model_server() -> Iterator[tuple[LoopbackOpenAI, ScriptedModel]]:
    model = ScriptedModel(look_at_the_market, buy_an_uptrend)
    server = LoopbackOpenAI(responder=model).start()
    yield server, model
    server.stop()


def llm_env(server: LoopbackOpenAI) -> dict[str, str]:
    return {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test-loopback"}


@pytest.mark.slow
def test_llm_agent_backtest_is_bounded_cached_and_honest(
    cli, tmp_path: Path, model_server: tuple[LoopbackOpenAI, ScriptedModel]
) -> None:
    server, model = model_server
    out = tmp_path / "llm.json"
    refused = cli("agent-backtest", *DAY, env=llm_env(server))
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    assert "estimate:" in refused.stderr  # what consent would accept, shown before refusing
    assert server.requests == []  # nothing spent before consent

    args = (*DAY, "--concurrency", "3", "--yes", "--json", str(out))
    first = cli("agent-backtest", *args, env=llm_env(server))
    assert first.returncode == 0, first.stderr
    assert "estimate:" in first.stderr
    sent = len(server.requests)
    report = json.loads(out.read_text())
    assert sent == report["agent"]["llm"]["model_calls"] == 2 * report["agent"]["decisions"]
    assert 1 <= server.max_in_flight <= 3

    # No look-ahead: every tool result the model saw closed at or before its decision time.
    for messages in model.seen:
        now = pd.Timestamp(DECISION_TIME.search(messages[1]["content"]).group(1), tz="UTC")
        results = tool_results(messages)
        if "get_market_snapshot" in results:
            assert pd.Timestamp(results["get_market_snapshot"]["as_of"]) < now
            for row in results["get_candles"]["rows"]:
                assert pd.Timestamp(row[0], tz="UTC") <= now

    again = tmp_path / "again.json"
    rerun = cli("agent-backtest", *args[:-1], str(again), env=llm_env(server))
    assert rerun.returncode == 0, rerun.stderr
    assert len(server.requests) == sent  # fully cached: zero requests
    assert again.read_bytes() == out.read_bytes()

    # Paired A/B of the model with itself: the same answers, from the cache.
    paired = tmp_path / "paired.json"
    same = cli(
        "agent-backtest",
        *args[:-1],
        str(paired),
        "--compare",
        "model=gpt-4o-mini",
        env=llm_env(server),
    )
    assert same.returncode == 0, same.stderr
    assert len(server.requests) == sent
    compared = json.loads(paired.read_text())["scorecard"]["compare"]
    assert compared["signal_agreement"] == compared["verdict_agreement"] == 1.0
    assert compared["difference_pct"] == 0 and compared["variant_requests_sent"] == 0
    assert compared["p_variant_better"] == 0.5  # every resample a tie, each counting half
    assert compared["decision_points"] == report["agent"]["decisions"]


@pytest.mark.slow
def test_budget_stop_reports_what_was_done(
    cli, tmp_path: Path, model_server: tuple[LoopbackOpenAI, ScriptedModel]
) -> None:
    server, _ = model_server
    out = tmp_path / "budget.json"
    run = cli(
        "agent-backtest",
        *DAY,
        "--concurrency",
        "1",
        "--budget-usd",
        "0.002",
        "--json",
        str(out),
        # the loopback stands in for OpenAI: llm.prices applies at its host
        env={**llm_env(server), "AGENT_LLM__PRICES_HOST": "127.0.0.1"},
    )
    assert run.returncode == 0, run.stderr
    assert "budget ran out" in run.stderr
    agent = json.loads(out.read_text())["agent"]
    assert agent["stopped"] == "budget"
    assert 0 < agent["decisions"] < agent["planned_decisions"]
    assert agent["llm"]["abstains"] == {"budget": 1}


PRICES = {"gpt-4o": (2.50, 10.00), "gpt-4o-mini": (0.15, 0.60)}  # config/default.toml, per Mtok


@dataclasses.dataclass
class Billing:
    """What the loopback billed: each reply's model and usage, at that model's price."""

    replies: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)

    def responder(self, model: ScriptedModel) -> Callable[[dict], Scripted]:
        def bill(request: dict) -> Scripted:
            answer = model(request)
            usage = answer.body["usage"]
            self.replies.append(
                (request["model"], usage["prompt_tokens"], usage["completion_tokens"])
            )
            return dataclasses.replace(answer, delay_s=0.05)  # the replies are in flight together

        return bill

    def of(self, name: str) -> dict[str, float]:
        """The calls, tokens and USD billed for `name`, keyed as the JSON report keys them."""
        mine = [r for r in self.replies if r[0] == name]
        prompt, completion = sum(r[1] for r in mine), sum(r[2] for r in mine)
        price_in, price_out = PRICES[name]
        return {
            "model_calls": len(mine),
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cost_usd": (prompt * price_in + completion * price_out) / 1e6,
        }


def priced_env(server: LoopbackOpenAI) -> dict[str, str]:
    """The loopback standing in for OpenAI: llm.prices apply at its host, to gpt-4o."""
    return {**llm_env(server), "AGENT_LLM__PRICES_HOST": "127.0.0.1", "AGENT_LLM__MODEL": "gpt-4o"}


@pytest.mark.slow
def test_a_usd_budget_is_a_ceiling_with_eight_requests_in_flight(cli, tmp_path: Path) -> None:
    """At --concurrency 8 every request in flight had been sent while the spend was under the
    budget, and their replies took it past ($0.0623 of $0.05). Each request now holds its worst
    case until its reply settles it: what the provider bills stays within the budget. Every
    output says what was billed: the decisions the stop cut short had been billed too, and the
    JSON, the page and the scorecard left them out ($0.0338 of $0.0410 billed)."""
    billing = Billing()
    server = LoopbackOpenAI(
        responder=billing.responder(ScriptedModel(look_at_the_market, buy_an_uptrend))
    ).start()
    out, page = tmp_path / "budget.json", tmp_path / "budget.html"
    try:
        run = cli("agent-backtest", *DAY, "--concurrency", "8", "--budget-usd", "0.05",
                  "--json", str(out), "--html", str(page), env=priced_env(server))  # fmt: skip
    finally:
        server.stop()
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    agent = report["agent"]
    assert agent["stopped"] == "budget" and 0 < agent["decisions"] < agent["planned_decisions"]
    assert "notice: the budget ran out after" in run.stderr
    billed = billing.of("gpt-4o")
    assert billed["model_calls"] == len(server.requests) > 8
    assert billed["cost_usd"] <= 0.05
    assert "cost budget: this request may cost $" in run.stderr
    assert "of llm.max_usd=0.05 left; nothing was sent" in run.stderr

    llm = agent["llm"]
    assert {k: llm[k] for k in billed} == pytest.approx(billed, abs=1e-6)  # the JSON
    assert report["scorecard"]["llm_cost_usd"] == llm["cost_usd"]  # the net return's cost
    shown = re.search(r"cost \[\$\] \(this run\)\s*│\s*([\d.]+) \(([\d.]+)\)", run.stdout)
    assert shown is not None, run.stdout
    assert [float(x) for x in shown.groups()] == pytest.approx([billed["cost_usd"]] * 2, abs=1e-4)
    facts = page.read_text()
    for key in billed:
        assert f"<tr><td>{key}</td><td>{fmt(llm[key])}</td></tr>" in facts  # the page
    # the stored decisions hold the calls of the decisions made; the rest is said apart
    store = open_store(f"sqlite:///{tmp_path / 'data' / 'agent.db'}")
    recorded = sum(len(r.llm_calls) for r in load_decisions(store))
    store.close()
    dropped = llm.get("in_no_decision", {"model_calls": 0})["model_calls"]
    assert recorded + dropped == billed["model_calls"]


@pytest.mark.slow
def test_a_compare_variant_cut_short_by_the_budget_reports_what_it_was_billed(
    cli, tmp_path: Path
) -> None:
    """The variant's decisions in flight when its budget ran out had been billed for their first
    calls, and its calls, tokens and cost left them out: 0 of 5 calls billed."""
    billing = Billing()
    model = ScriptedModel(look_at_the_market, buy_an_uptrend)
    server = LoopbackOpenAI(responder=billing.responder(model)).start()
    env = priced_env(server)
    alone, paired = tmp_path / "alone.json", tmp_path / "paired.json"
    try:
        base = cli("agent-backtest", *DAY, "--decide-every", "60", "--yes",
                   "--json", str(alone), env=env)  # fmt: skip
        assert base.returncode == 0, base.stderr
        run = cli("agent-backtest", *DAY, "--decide-every", "60", "--yes",
                  "--compare", "model=gpt-4o-mini", "--json", str(paired),
                  env={**env, "AGENT_LLM__MAX_CALLS": "5"})  # fmt: skip
    finally:
        server.stop()
    assert run.returncode == 0, run.stderr
    report = json.loads(paired.read_text())
    compared = report["scorecard"]["compare"]
    assert compared["na"].startswith("the variant stopped early (budget)")
    billed = billing.of("gpt-4o-mini")  # the base's answers came from the cache
    assert billed["model_calls"] == compared["variant_requests_sent"] == 5
    variant = {k: compared[f"variant_{k}"] for k in billed}
    assert variant == pytest.approx(billed, abs=1e-6)
    base_llm = report["agent"]["llm"]
    assert base_llm == json.loads(alone.read_text())["agent"]["llm"]
    total = compared["run_total"]
    assert total["model_calls"] == base_llm["model_calls"] + 5
    assert total["cost_usd"] == pytest.approx(base_llm["cost_usd"] + billed["cost_usd"], abs=1e-6)
    said = " ".join(run.stdout.split())
    assert "variant model calls (new requests) │ 5 (5)" in said


@pytest.mark.slow
def test_probing_the_endpoint_s_formats_is_no_part_of_a_run_s_spend(cli, tmp_path: Path) -> None:
    """With llm.decision_format=probe a cold run first asks the endpoint three questions, which a
    rerun reads from llm-capabilities.json. They were counted as the run's model calls, cut short
    (51 of them, 48 in its decisions): the cached rerun's JSON and net return were not the cold
    run's."""
    billing = Billing()
    model = ScriptedModel(look_at_the_market, buy_an_uptrend)
    server = LoopbackOpenAI(responder=billing.responder(model)).start()
    env = {**priced_env(server), "AGENT_LLM__DECISION_FORMAT": "probe"}
    args = (*DAY, "--decide-every", "60", "--yes", "--json")
    first, again = tmp_path / "first.json", tmp_path / "again.json"
    try:
        cold = cli("agent-backtest", *args, str(first), env=env)
        sent = len(server.requests)
        rerun = cli("agent-backtest", *args, str(again), env=env)
    finally:
        server.stop()
    assert cold.returncode == 0, cold.stderr
    assert rerun.returncode == 0, rerun.stderr
    assert len(server.requests) == sent  # the rerun's answers, and its format, were all known
    assert again.read_bytes() == first.read_bytes()
    llm = json.loads(first.read_text())["agent"]["llm"]
    assert "in_no_decision" not in llm
    store = open_store(f"sqlite:///{tmp_path / 'data' / 'agent.db'}")
    recorded = sum(len(r.llm_calls) for r in load_decisions(store))
    store.close()
    assert llm["model_calls"] == recorded == sent - 3
    shown = " ".join(cold.stdout.split())
    assert f"{sent} / 0; 3 of them llm.decision_format's probe" in shown
    assert "cut short" not in shown


@pytest.mark.slow
def test_concurrency_caps_the_requests_on_the_wire_with_the_next_prompts_built(
    cli, tmp_path: Path
) -> None:
    # Twice --concurrency decisions run at once, half of them built and waiting for a turn;
    # answers that take 50 ms keep every turn taken, so any excess would be on the wire too.
    model = ScriptedModel(buy_an_uptrend)
    server = LoopbackOpenAI(responder=slowly(model, 0.05)).start()
    out = tmp_path / "run.json"
    try:
        run = cli(
            "agent-backtest",
            *DAY,
            "--decide-every",
            "60",
            "--concurrency",
            "2",
            "--yes",
            "--json",
            str(out),
            env=llm_env(server),
        )
    finally:
        server.stop()
    assert run.returncode == 0, run.stderr
    agent = json.loads(out.read_text())["agent"]
    assert len(server.requests) == agent["llm"]["model_calls"] == agent["decisions"] > 2
    assert server.max_in_flight == 2


@pytest.mark.slow
def test_cold_replay_only_fails_clearly_and_sends_nothing(
    cli, model_server: tuple[LoopbackOpenAI, ScriptedModel]
) -> None:
    server, _ = model_server
    run = cli("agent-backtest", *DAY, "--replay-only", env=llm_env(server))
    assert run.returncode == 2
    assert "--replay-only: no cached answer for BTCUSDT" in run.stderr
    assert "Traceback" not in run.stderr
    assert server.requests == []


def slowly(model: ScriptedModel, delay_s: float) -> Callable[[dict], Scripted]:
    """The same answers, each held back by the server (in its request thread, not the lock)."""
    return lambda request: dataclasses.replace(model(request), delay_s=delay_s)


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode", [("--concurrency", "2"), ("--stateful",)], ids=["concurrent", "stateful"]
)
def test_ctrl_c_stops_cleanly_with_a_partial_report(
    offline_env: dict[str, str], tmp_path: Path, mode: tuple[str, ...]
) -> None:
    model = ScriptedModel(look_at_the_market, buy_an_uptrend)
    server = LoopbackOpenAI(responder=slowly(model, 0.2)).start()
    out = tmp_path / "partial.json"
    command = [str(Path(sys.executable).parent / "agent-backtest"), *DAY, *mode, "--yes"]
    proc = popen([*command, "--json", str(out)], {**offline_env, **llm_env(server)}, tmp_path)
    try:
        # Ctrl-C once the run is deciding; the deadline only guards against a hang.
        deadline = time.monotonic() + 90
        while len(server.requests) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=90)
        sent = len(server.requests)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.stop()

    assert proc.returncode == EXIT_INTERRUPTED == 130, stderr
    assert "Traceback" not in stderr
    report = json.loads(out.read_text())
    agent = report["agent"]
    assert agent["partial"] is True and agent["stopped"] == "interrupted"
    assert 0 < agent["decisions"] == len(agent["decision_log"]) < agent["planned_decisions"]
    assert f"interrupted: partial report of {agent['decisions']} decisions written" in stderr
    # what was sent is what the report covers: nothing decided after the interrupt went out
    assert agent["llm"]["model_calls"] <= sent < 2 * agent["planned_decisions"]
    open_at_end = report["orders"]["open_at_end"]["trades"]
    assert report["metrics"]["# Trades"] == len(report["trades"]) - open_at_end


def first_calls(requests: list[Recorded]) -> list[Recorded]:
    """The requests that opened a decision: no tool results in them yet."""
    return [r for r in requests if not any(m["role"] == "tool" for m in r.body["messages"])]


@pytest.mark.slow
def test_ctrl_c_sends_no_decision_waiting_for_budget_room(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    """With llm.max_tokens=12000 three requests' worst cases (~3,900 tokens each) fit at once,
    and the other decisions of --concurrency 8 wait for room. Ctrl-C while they wait:
    the answers that free room let none of them send (5 did), only the started decisions'
    follow-ups, and the notice counts the requests on the wire (it said 8 decisions)."""
    model = ScriptedModel(look_at_the_market, buy_an_uptrend)
    server = LoopbackOpenAI(responder=slowly(model, 3.0)).start()
    env = {**offline_env, **llm_env(server), "AGENT_LLM__MAX_TOKENS": "12000"}
    out = tmp_path / "partial.json"
    command = [str(Path(sys.executable).parent / "agent-backtest"), *DAY, "--concurrency", "8"]
    proc = popen([*command, "--yes", "--json", str(out)], env, tmp_path)
    try:
        deadline = time.monotonic() + 90
        while len(server.requests) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # the other decisions build their prompts and wait for room
        before = len(server.requests)
        on_the_wire = server.in_flight
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.stop()

    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr
    decided = first_calls(server.requests)
    assert decided == first_calls(server.requests[:before])  # none after the interrupt
    asked = f"{on_the_wire} request{'s' if on_the_wire != 1 else ''} on the wire"
    assert f"interrupted: waiting for the answers to {asked}, then writing" in stderr
    agent = json.loads(out.read_text())["agent"]
    assert agent["partial"] is True and agent["decisions"] == len(decided)


@pytest.mark.slow
def test_a_compared_variant_spends_from_the_run_s_one_budget(cli, tmp_path: Path) -> None:
    server = LoopbackOpenAI(responder=ScriptedModel(buy_an_uptrend)).start()
    # the loopback stands in for OpenAI: llm.prices applies at its host, to both models
    env = {**llm_env(server), "AGENT_LLM__PRICES_HOST": "127.0.0.1"}
    ab = (*DAY, "--concurrency", "1", "--compare", "model=gpt-4o")
    out = tmp_path / "ab.json"
    try:
        refused = cli("agent-backtest", *ab, env=env)
        assert refused.returncode == 2 and "pass --yes" in refused.stderr
        assert "on gpt-4o-mini," in refused.stderr and "on gpt-4o," in refused.stderr
        assert server.requests == []  # both estimates shown, nothing spent before consent

        budget = 0.04  # more than the base model spends, less than base and variant would
        run = cli("agent-backtest", *ab, "--budget-usd", str(budget), "--json", str(out), env=env)
    finally:
        server.stop()
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    base, compared = report["agent"]["llm"], report["scorecard"]["compare"]
    total = compared["run_total"]
    assert report["agent"]["stopped"] is None  # the base model ran to the end
    assert 0 < compared["variant_model_calls"] < base["model_calls"]  # the variant ran out
    assert len(server.requests) == total["model_calls"]
    assert total["model_calls"] == base["model_calls"] + compared["variant_model_calls"]
    assert total["cost_usd"] == pytest.approx(base["cost_usd"] + compared["variant_cost_usd"])
    # the next request's worst case no longer fitted: its bytes as tokens, some four times what
    # the loopback bills for it
    per_call = compared["variant_cost_usd"] / compared["variant_model_calls"]
    assert budget - 8 * per_call < total["cost_usd"] <= budget
    shown = re.sub(r"[\s│]+", " ", run.stdout)
    assert f"run total, base + variant: calls / cost [$] {total['model_calls']} / " in shown
    assert f"this run {total['cost_usd']:.4f}, of it variant" in shown


@pytest.mark.slow
def test_a_variant_stopped_early_gives_no_comparison(cli, tmp_path: Path) -> None:
    server = LoopbackOpenAI(responder=ScriptedModel(buy_an_uptrend)).start()
    ab = (*DAY, "--compare", "model=gpt-4o")
    out = tmp_path / "ab.json"
    try:
        cached = cli("agent-backtest", *DAY, "--yes", env=llm_env(server))
        assert cached.returncode == 0, cached.stderr
        sent = len(server.requests)

        # the base model's answers are all cached, the variant's are not
        missed = cli("agent-backtest", *ab, "--replay-only", env=llm_env(server))
        assert len(server.requests) == sent

        capped = {**llm_env(server), "AGENT_LLM__MAX_CALLS": "20"}
        run = cli("agent-backtest", *ab, "--yes", "--json", str(out), env=capped)
    finally:
        server.stop()
    assert missed.returncode == 2, missed.stdout
    assert (
        missed.stderr.strip()
        .splitlines()[-1]
        .startswith("error: --replay-only: no cached answer for BTCUSDT at ")
    )
    assert "Traceback" not in missed.stderr

    assert run.returncode == 0, run.stderr
    assert len(server.requests) == sent + 20  # the variant spent the run's 20 calls
    report = json.loads(out.read_text())
    compared = report["scorecard"]["compare"]
    why = f"the variant stopped early (budget) after {compared['decision_points']} of 96 decisions"
    assert compared["na"] == why and compared["difference_ci"]["na"] == why
    assert compared["p_variant_better"] is compared["difference_pct"] is None
    assert compared["variant_net_return_pct"] is None
    assert f"notice: the comparison is n/a: {why}" in run.stderr
    assert f"n/a: {why}" in re.sub(r"[\s│]+", " ", run.stdout)


@pytest.mark.slow
def test_a_cached_rerun_needs_no_consent_and_only_new_decisions_are_estimated(
    cli, tmp_path: Path
) -> None:
    server = LoopbackOpenAI(responder=ScriptedModel(buy_an_uptrend)).start()
    # the loopback stands in for OpenAI: a priced model, whose runs need consent
    env = {**llm_env(server), "AGENT_LLM__PRICES_HOST": "127.0.0.1"}
    window = ("--symbol", "BTCUSDT", "--start", "2025-10-30")
    short = tmp_path / "short.json"
    try:
        first = cli("agent-backtest", *window, "--end", "2025-10-30T12:00", "--yes", "--json",
                    str(short), env=env)  # fmt: skip
        assert first.returncode == 0, first.stderr
        sent = len(server.requests)
        again = cli("agent-backtest", *window, "--end", "2025-10-30T12:00", env=env)
        longer = cli("agent-backtest", *window, "--end", "2025-10-31", env=env)
    finally:
        server.stop()
    assert len(server.requests) == sent  # nothing sent without consent
    decisions = json.loads(short.read_text())["agent"]["decisions"]
    assert again.returncode == 0, again.stderr
    assert f"estimate: all {decisions} answers of gpt-4o-mini cached: nothing to spend" in (
        again.stderr
    )
    assert longer.returncode == 2 and "pass --yes" in longer.stderr
    estimate = re.search(
        r"estimate: (\d+) decisions on gpt-4o-mini \((\d+) more cached", longer.stderr
    )
    assert estimate is not None, longer.stderr
    assert int(estimate.group(2)) == decisions and int(estimate.group(1)) > 0


@pytest.mark.slow
def test_a_run_let_off_consent_by_its_cache_sends_nothing_it_lacks(cli) -> None:
    model = ScriptedModel(look_at_the_market, buy_an_uptrend)
    failing = {"on": True}

    def responder(request: dict) -> Scripted:
        # the first run: every decision's first call answered, its second one failed
        if failing["on"] and any(m["role"] == "assistant" for m in request["messages"]):
            return Scripted(500, {"error": {"message": "upstream down", "type": "x"}})
        return model(request)

    server = LoopbackOpenAI(responder=responder).start()
    env = {**llm_env(server), "AGENT_LLM__PRICES_HOST": "127.0.0.1",
           "AGENT_LLM__MAX_RETRIES": "0", "AGENT_LLM__BREAKER_FAILURES": "50"}  # fmt: skip
    few = (*DAY, "--decide-every", "240")
    try:
        first = cli("agent-backtest", *few, "--yes", env=env)
        sent = len(server.requests)
        failing["on"] = False
        rerun = cli("agent-backtest", *few, env=env)
    finally:
        server.stop()
    assert first.returncode == 0, first.stderr
    assert len(server.requests) == sent  # the missing second answers were not asked for
    assert "answers of gpt-4o-mini cached: nothing to spend" in rerun.stderr
    assert rerun.returncode == 2, rerun.stderr
    assert "Traceback" not in rerun.stderr
    assert (
        rerun.stderr.strip()
        .splitlines()[-1]
        .endswith("nothing was sent. Pass --yes to accept the estimate")
    )
