"""The scorecard's parts on tiny hand-made candles: the veto ledger to the cent, the random
baseline (seeded, matched, gated), the bootstrap's coverage, and calibration's n/a."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback_openai import LoopbackOpenAI
from script_strategy import MINUTE, T0, Script, candles, order, rules
from scripted_model import ScriptedModel, Turn, tool_call

from backtest import run_backtest
from backtest.baselines import RandomEntry, RandomEntryParams
from backtest.bootstrap import DRAWS, block_indices, interval
from backtest.calibration import Stated, calibration
from backtest.config import BacktestConfig
from backtest.data import to_bar_arrays
from backtest.deflated import deflated_sharpe
from backtest.scorecard import rule_runs, scorecard
from backtest.scorecard_view import result_rows
from backtest.veto_ledger import Blocked, Counterfactual, tally
from execution.fees import FeeSchedule
from market.sample import load_sample
from risk.limits import RiskLimits
from risk.models import SignalAction, SignalSource, TradeSignal
from runtime.strategy import Context

FEES = BacktestConfig(fees=FeeSchedule(maker=0.001, taker=0.001))


def unsure_buy(ctx: Context) -> TradeSignal:
    """Half the account, at a confidence the gate refuses."""
    return TradeSignal(
        decision_id=f"unsure:{ctx.index}",
        source=SignalSource.STRATEGY,
        symbol="BTCUSDT",
        action=SignalAction.BUY,
        size_pct=0.5,
        confidence=0.3,
        created_ms=ctx.time_ms,
    )


def test_the_ledger_shows_what_a_veto_saved_to_the_cent() -> None:
    # Flat at 100 to bar 3's open, then down to 90 at bar 17's close; 20 bars, too few to resample.
    rows = [(100.0, 100.5, 99.5, 100.0)] * 3
    rows += [
        (100.0 - (i - 3) * 10 / 15, 100.5, 89.0, 100.0 - (i - 2) * 10 / 15) for i in range(3, 18)
    ]
    rows += [(90.0, 90.5, 89.5, 90.0)] * 2
    frame = candles(rows)
    assert frame["open"][3] == 100.0 and round(frame["close"][17], 9) == 90.0
    bars, _ = to_bar_arrays({"BTCUSDT": frame})
    limits = RiskLimits(strategy={"min_confidence": 0.5})
    result = run_backtest(
        bars, Script({2: [unsure_buy]}), {"BTCUSDT": rules()}, FEES, limits=limits
    )
    assert dict(result.vetoes) == {"LOW_CONFIDENCE": 1} and not result.trades

    card = scorecard(result, {"BTCUSDT": rules()}, [], 0.0)
    entry = card.veto_ledger.by_code["LOW_CONFIDENCE"]
    # 50 BTC (half of 10,000 at 100) from 100 to 90, fees 0.1% on 5,000 in and 4,500 out.
    assert entry.vetoed == 1 and entry.saved_usd["15m"] == 509.50
    assert entry.still_open == {"1h": 1, "4h": 1}  # those horizons end after the data
    assert card.intervals.na is not None and card.intervals.na.startswith("too short")
    assert card.agent.return_ci.na is not None


def _walk(n: int, seed: int = 7) -> list[tuple[float, float, float, float]]:
    closes = 100 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.001, n)))
    opens = np.r_[100.0, closes[:-1]]
    return [(o, max(o, c) + 0.05, min(o, c) - 0.05, c) for o, c in zip(opens, closes, strict=True)]


def _entry(ctx: Context) -> TradeSignal:
    return order(ctx, size_pct=0.5)


def _exit(ctx: Context) -> TradeSignal:
    return order(ctx, SignalAction.CLOSE)


def test_the_random_baseline_is_seeded_matched_and_gated() -> None:
    bars, _ = to_bar_arrays({"BTCUSDT": candles(_walk(400))})
    plan = {b: [_entry] for b in (20, 100, 180, 260)} | {
        b + 30: [_exit] for b in (20, 100, 180, 260)
    }
    agent = run_backtest(bars, Script(plan), {"BTCUSDT": rules()}, FEES)
    assert len(agent.trades) == 4

    card = scorecard(agent, {"BTCUSDT": rules()}, [], 0.0)
    random = card.baselines["random_entry"]
    assert random.matched["entries"] == {"BTCUSDT": 4} and random.matched["hold_bars"] == 30
    assert all(abs(f.trades - 4) <= 1 for f in random.per_seed)
    assert len({f.return_pct for f in random.per_seed}) > 1  # the seeds pick different bars
    again = scorecard(agent, {"BTCUSDT": rules()}, [], 0.0).baselines["random_entry"]
    assert again == random  # reproducible by seed
    # agent-backtest runs the rule baselines from the bars alone while the model decides:
    # the same card as running them after.
    ahead = rule_runs(bars, {"BTCUSDT": rules()}, FEES, RiskLimits(), None, agent.strategy.warmup)
    early = scorecard(agent, {"BTCUSDT": rules()}, [], 0.0, ruled=ahead)
    assert early.model_dump_json() == card.model_dump_json()

    params = RandomEntryParams(
        seed=1, entries={"BTCUSDT": 4}, hold_bars=30, source=SignalSource.STRATEGY
    )
    tight = RiskLimits(strategy={"max_orders_per_hour": 1})
    gated = run_backtest(bars, RandomEntry(params), {"BTCUSDT": rules()}, FEES, limits=tight)
    assert gated.vetoes["RATE_LIMIT"] > 0


def test_the_scorecard_counts_closed_trades_and_those_open_at_the_end_apart() -> None:
    """Buy-and-hold never sells: its one trade is open at the end, not a closed trade, as the
    report's # Trades counts it."""
    bars, _ = to_bar_arrays({"BTCUSDT": candles(_walk(120))})
    agent = run_backtest(bars, Script({}), {"BTCUSDT": rules()}, FEES)
    card = scorecard(agent, {"BTCUSDT": rules()}, [], 0.0)
    held = card.baselines["buy_and_hold"]
    assert (held.trades, held.open_at_end) == (0, 1)
    (row,) = [r for r in result_rows(card.model_dump()) if r[0] == "buy_and_hold"]
    assert row[4] == "0 +1 open"


def test_a_tie_counts_half_in_the_probability_of_beating_a_baseline() -> None:
    """On flat prices an agent that never trades returns 0 and buy-and-hold loses its entry fee:
    every resample ties or favours the agent, yet P(beats buy_and_hold) read 0.539 and, beside
    a random baseline that did not trade either, P(beats random_entry) 0.000."""
    bars, _ = to_bar_arrays({"BTCUSDT": candles([(100.0, 100.0, 100.0, 100.0)] * 60)})
    agent = run_backtest(bars, Script({}), {"BTCUSDT": rules()}, FEES)
    card = scorecard(agent, {"BTCUSDT": rules()}, [], 0.0)
    assert card.intervals.na is None
    assert card.agent.return_pct == 0 and card.baselines["buy_and_hold"].return_pct < 0
    assert card.intervals.p_beats_random == 0.5
    assert card.intervals.p_beats_buy_and_hold is not None
    assert 0.5 < card.intervals.p_beats_buy_and_hold < 1


@pytest.mark.slow
@settings(max_examples=2, deadline=None)
@given(mean=st.floats(-0.002, 0.002), spread=st.floats(0.001, 0.02))
def test_the_bootstrap_interval_covers_a_known_mean(mean: float, spread: float) -> None:
    covered = 0
    for seed in range(100):
        returns = np.random.default_rng(seed).normal(mean, spread, 500)
        means = returns[block_indices(len(returns), DRAWS, seed + 1_000)].mean(axis=1)
        found = interval(means)
        covered += found.low <= mean <= found.high
    assert covered >= 90


def test_calibration_is_na_without_stated_confidence() -> None:
    bars, _ = to_bar_arrays({"BTCUSDT": candles(_walk(200))})
    silent = [
        Stated(symbol="BTCUSDT", decided_ms=int(bars.close_time[i]), action="buy", confidence=None)
        for i in (5, 50)
    ]
    assert calibration(silent, bars).na == "the model stated no confidence"
    assert calibration([], bars).na == "no buy, sell or close decisions to score"


def test_horizons_are_measured_in_time_across_a_gap_in_the_bars() -> None:
    """The first two bars are 45 minutes apart (a stock's pre-market prints); a buy decided at
    minute 60 dips to 99 by minute 75 and rises to 105 by minute 120: its 1h horizon ends at
    105 and its 15m one at 99, not at the next minute's close."""
    close = [100.0] * 61 + [100 - (i - 60) / 15 for i in range(61, 76)]
    close += [99 + (i - 75) * 6 / 45 for i in range(76, 121)] + [105.0] * 20
    rows = [(close[i - 1] if i else 100.0, 106.0, 98.0, c) for i, c in enumerate(close)]
    frame = candles(rows).drop(index=range(1, 45)).reset_index(drop=True)
    bars, _ = to_bar_arrays({"BTCUSDT": frame})
    decided = int(frame["close_time"][frame["open_time"] == T0 + 60 * MINUTE].item())

    sure = Stated(symbol="BTCUSDT", decided_ms=decided, action="buy", confidence=0.9)
    found = calibration([sure], bars)
    assert found.horizon == "1h" and found.groups[0].hit_rate == 1.0 and found.brier == 0.01

    blocked = Blocked(code="LOW_CONFIDENCE", quantity=1.0, clamped=False, cost=0.0)
    ledger = tally([Counterfactual("BTCUSDT", decided, blocked)], lambda _: bars, (15, 60))
    assert ledger.by_code["LOW_CONFIDENCE"].saved_usd == {"15m": 1.0, "1h": -5.0}


SAMPLE = load_sample("BTCUSDT").set_index("open_time")
DECISION_TIME = re.compile(r"Decision time: (\S+ \S+) UTC")


def seer(confident_when_right: bool) -> Turn:
    """Always buys, having peeked at the next hour: sure when it will be right (or, for the
    other seer, when it will be wrong), unsure otherwise."""

    def turn(messages: list[dict[str, Any]]) -> dict[str, Any]:
        now = pd.Timestamp(DECISION_TIME.search(messages[1]["content"]).group(1), tz="UTC")
        start = int(now.timestamp() * 1000)
        end = start + 59 * 60_000
        up = end not in SAMPLE.index or SAMPLE.close[end] > SAMPLE.open[start]
        confidence = 0.9 if up == confident_when_right else 0.3
        return tool_call(
            "submit_signal",
            {"symbol": "BTCUSDT", "action": "buy", "confidence": confidence, "rationale": "seer"},
        )

    return turn


def run_seer(cli, tmp_path: Path, name: str, confident_when_right: bool, model: str) -> dict:
    server = LoopbackOpenAI(responder=ScriptedModel(seer(confident_when_right))).start()
    try:
        out = tmp_path / f"{name}.json"
        env = {
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": "sk-test-loopback",
            "AGENT_LLM__MODEL": model,
            "AGENT_LLM__PRICES_HOST": "127.0.0.1",  # the loopback stands in for OpenAI
        }
        args = ("--symbol", "BTCUSDT", "--days", "1", "--decide-every", "60", "--yes")
        run = cli("agent-backtest", *args, "--json", str(out), env=env)
        assert run.returncode == 0, run.stderr
        report = json.loads(out.read_text())
        report["stdout"] = run.stdout
        return report
    finally:
        server.stop()


@pytest.mark.slow
def test_scorecard_of_scripted_models_orders_calibration_and_nets_the_model_cost(
    cli, tmp_path: Path
) -> None:
    wise = run_seer(cli, tmp_path, "wise", True, "gpt-4o-mini")
    card = wise["scorecard"]
    cost = wise["agent"]["llm"]["cost_usd"]
    assert card["llm_cost_usd"] == cost > 0  # priced in config/default.toml
    lowered = wise["metrics"]["Return [%]"] - cost / 10_000 * 100
    assert card["agent"]["net_return_pct"] == pytest.approx(lowered, abs=1e-4)
    # Its unsure buys were the losers: refusing them (LOW_CONFIDENCE) saved money.
    assert card["veto_ledger"]["by_code"]["LOW_CONFIDENCE"]["saved_usd"]["1h"] > 0

    foolish = run_seer(cli, tmp_path, "foolish", False, "unpriced-seer")
    other = foolish["scorecard"]
    assert card["calibration"]["brier"] < 0.1 < 0.5 < other["calibration"]["brier"]
    assert other["veto_ledger"]["by_code"]["LOW_CONFIDENCE"]["saved_usd"]["1h"] < 0
    assert other["llm_cost_usd"] is None and "unpriced-seer" in other["llm_cost_na"]
    assert other["agent"]["net_return_pct"] is None
    said = " ".join(foolish["stdout"].split())
    assert "model cost n/a: no price for model 'unpriced-seer'" in said
    # Its intervals leave the unknown cost out, and the comparison says so.
    assert "P(agent (gross) beats buy_and_hold)" in said
    assert "P(agent beats buy_and_hold)" in " ".join(wise["stdout"].split())


def _trials(count: int, spread: float, seed: int) -> list[float]:
    """`count` per-period Sharpe ratios whose sample standard deviation is exactly `spread`."""
    z = np.random.default_rng(seed).normal(size=count)
    return list((z - z.mean()) / z.std(ddof=1) * spread)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), few=st.integers(2, 20), extra=st.integers(1, 500))
def test_more_trials_deflate_the_same_sharpe_further(seed: int, few: int, extra: int) -> None:
    """Searching more variants with the same spread can only make the winner less credible."""
    returns = np.random.default_rng(seed).normal(0.002, 0.01, 300)
    alone = deflated_sharpe([0.1], returns)  # one trial: nothing to deflate for
    some = deflated_sharpe(_trials(few, 0.05, seed), returns)
    many = deflated_sharpe(_trials(few + extra, 0.05, seed), returns)
    assert alone.expected_max_sharpe == 0.0
    assert 0 < some.expected_max_sharpe < many.expected_max_sharpe
    assert alone.probability >= some.probability >= many.probability
    assert deflated_sharpe([0.1, 0.2], returns[:10]).na == "10 returns, fewer than 20"
