"""`--samples K`: the model asked K times per decision, the majority action decides, and with
`risk.size_by_agreement` the gate sizes entries by the share that agreed (a floor vetoes)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback_openai import LoopbackOpenAI
from scripted_model import ScriptedModel, tool_call

from agent.samples import vote
from market.models import SymbolRules
from risk.gate import assess
from risk.limits import RiskLimits
from risk.models import (
    Approved,
    MarketView,
    PortfolioView,
    SignalAction,
    SignalSource,
    TradeSignal,
    Vetoed,
)
from risk.state import RiskState

DECISION_TIME = re.compile(r"Decision time: (\S+ \S+) UTC")
RULES = SymbolRules(
    symbol="BTCUSDT",
    base_asset="BTC",
    quote_asset="USDT",
    tick_size="0.01",
    step_size="0.00001",
    min_qty="0.00001",
    max_qty="9000",
    min_notional="5",
)


def buy(agreement: float | None) -> TradeSignal:
    return TradeSignal(
        decision_id="d1",
        source=SignalSource.AI,
        symbol="BTCUSDT",
        action=SignalAction.BUY,
        size_pct=0.05,  # 5,000 USDT: under every cap, so only agreement shapes the size
        stop_loss=99_000.0,
        confidence=1.0,
        agreement=agreement,
        created_ms=0,
    )


def judge(signal: TradeSignal, limits: RiskLimits) -> Approved | Vetoed:
    market = MarketView(symbol="BTCUSDT", last_price=100_000.0, data_time_ms=0, rules=RULES)
    cash = PortfolioView(cash=100_000, equity=100_000, peak_equity=100_000, day_start_equity=1e5)
    return assess(signal, cash, market, 0, limits, RiskState())


@settings(max_examples=40, deadline=None)
@given(agreement=st.floats(0.01, 1.0), floor=st.floats(0.0, 1.0))
def test_the_gate_sizes_by_agreement_and_vetoes_below_the_floor(
    agreement: float, floor: float
) -> None:
    limits = RiskLimits(size_by_agreement=True, min_agreement=floor)
    full = judge(buy(1.0), limits)
    assert isinstance(full, Approved)
    verdict = judge(buy(agreement), limits)
    if agreement < floor:
        assert isinstance(verdict, Vetoed)
        assert [r.code for r in verdict.reasons] == ["LOW_AGREEMENT"]
        return
    assert isinstance(verdict, Approved)
    assert verdict.order.quantity <= full.order.quantity  # agreement only ever sizes down
    ratio = float(verdict.order.quantity / full.order.quantity)
    assert abs(ratio - agreement) < 0.01  # proportionally, to the step
    assert ("AGREEMENT_SCALED" in {a.code for a in verdict.adjustments}) == (agreement < 1)
    # Without the setting, agreement changes nothing.
    assert judge(buy(agreement), RiskLimits()) == judge(buy(None), RiskLimits())


def test_the_majority_decides_and_ties_go_to_the_earliest_sample() -> None:
    def said(action: str | None) -> dict[str, Any]:
        return {"signal": None if action is None else {"action": action}}

    three = vote([said("hold"), said("buy"), said("buy")])
    assert (three.action, three.chosen, round(three.agreement, 4)) == ("buy", 1, 0.6667)
    tie = vote([said("sell"), said(None), said("buy"), said(None), said("buy"), said("sell")])
    assert (tie.action, tie.agreement, tie.votes) == (
        "sell",
        1 / 3,
        {"abstain": 2, "buy": 2, "sell": 2},
    )


def split_voter() -> ScriptedModel:
    """Per decision point, the first two asks buy and the third holds: agreement 2/3."""
    asked: Counter[str] = Counter()

    def turn(messages: list[dict[str, Any]]) -> dict[str, Any]:
        when = DECISION_TIME.search(messages[1]["content"]).group(1)
        asked[when] += 1
        action = "hold" if asked[when] % 3 == 0 else "buy"
        return tool_call(
            "submit_signal",
            {"symbol": "BTCUSDT", "action": action, "size_pct": 0.2, "confidence": 0.9},
        )

    return ScriptedModel(turn)


@pytest.mark.slow
def test_samples_vote_cost_k_calls_and_the_gate_sizes_or_vetoes_by_agreement(
    cli, tmp_path: Path
) -> None:
    script = split_voter()
    server = LoopbackOpenAI(responder=script).start()
    try:
        env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test-loopback"}
        args = ("--symbol", "BTCUSDT", "--days", "1", "--decide-every", "120", "--yes")
        sized = tmp_path / "sized.json"
        run = cli(
            "agent-backtest", *args, "--samples", "3", "--json", str(sized),
            env={**env, "AGENT_RISK__SIZE_BY_AGREEMENT": "true"},
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        report = json.loads(sized.read_text())
        llm, risk = report["agent"]["llm"], report["agent"]["risk"]
        decisions = report["agent"]["decisions"]
        assert llm["samples"] == 3 and llm["agreement_mean"] == 0.6667
        assert llm["model_calls"] == 3 * decisions == len(script.seen)
        assert llm["signals"] == {"buy": decisions}
        assert risk["adjusted"]["AGREEMENT_SCALED"] >= 1
        assert "samples per decision" in run.stdout and "3 (agreement 0.6667" in run.stdout

        floored = tmp_path / "floored.json"
        run = cli(
            "agent-backtest", *args, "--samples", "3", "--json", str(floored),
            env={**env, "AGENT_RISK__SIZE_BY_AGREEMENT": "true", "AGENT_RISK__MIN_AGREEMENT": "0.7"},
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert len(script.seen) == 3 * decisions  # every sample replayed from the cache
        card = json.loads(floored.read_text())
        assert card["agent"]["risk"]["vetoed"]["LOW_AGREEMENT"] == decisions
        assert card["scorecard"]["veto_ledger"]["by_code"]["LOW_AGREEMENT"]["vetoed"] == decisions
        assert card["metrics"]["# Trades"] == 0
    finally:
        server.stop()


def test_the_offline_model_always_agrees_and_says_so(cli, tmp_path: Path) -> None:
    out = tmp_path / "offline.json"
    env = {"AGENT_SCORECARD__LEDGER_HORIZONS": "30m,2h"}
    run = cli("agent-backtest", "--days", "1", "--samples", "2", "--json", str(out), env=env)
    assert run.returncode == 0, run.stderr
    assert "the offline model is deterministic, so its 2 samples always agree" in run.stderr
    report = json.loads(out.read_text())
    llm = report["agent"]["llm"]
    assert llm["samples"] == 2 and llm["agreement_mean"] == 1.0 and llm["split_decisions"] == 0
    # The ledger's horizons are the setting's (scorecard.ledger_horizons).
    assert report["scorecard"]["veto_ledger"]["horizons"] == ["30m", "2h"]
    assert "saved 30m" in run.stdout and "saved 2h" in run.stdout


@pytest.mark.slow
def test_samples_is_only_for_the_agent(cli) -> None:
    run = cli("agent-backtest", "--strategy", "sma_cross", "--days", "1", "--samples", "3")
    assert run.returncode == 2 and "--samples: only for the LLM agent" in run.stderr
    run = cli("agent-backtest", "--days", "1", "--samples", "0")
    assert run.returncode == 2 and "invalid --samples" in run.stderr
