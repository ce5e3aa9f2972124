"""Paired A/B on the same decision points: `agent-backtest --compare model=NAME` or
`--compare prompt=FILE` runs a second agent, differing only in that, over the same bars and
decision times, and reports how often the two agree and the paired difference in net return
with a block-bootstrap interval. Answers already in the cache are free, so comparing a model
with itself sends nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from rich.table import Table

from agent.decide import DECISION_PROMPT
from agent.llm import LLMClient
from agent.model import ChatModel, open_model, uses_offline
from agent.offline import OFFLINE_MODEL
from agent.records import DecisionRecord
from agent.report import (
    Spent,
    agent_run_id,
    finalize_records,
    run_spend,
    spend,
)
from agent.strategy import AgentStrategy
from backtest import BacktestResult, run_backtest
from backtest.annualise import choose_basis
from backtest.bootstrap import Interval, interval, p_greater, paired_totals, too_short
from backtest.scorecard_view import comparison_rows, comparison_title
from backtest.sweep import SweepData
from config import Settings
from core.errors import UserError
from market.models import interval_ms
from prompts import load_prompt

BOOTSTRAP_SEED = 28
KINDS = ("model", "prompt")


class Variant(BaseModel):
    kind: str
    value: str

    @property
    def label(self) -> str:
        return f"{self.kind}={self.value}"


class Comparison(BaseModel):
    variant: str
    model: str
    prompt_version: str
    decision_points: int
    # The figures below are None when a run stopped early (`na` says why)
    signal_agreement: float | None = None  # both proposed the same action (or both abstained)
    verdict_agreement: float | None = None  # and the gate's outcome was the same
    base_net_return_pct: float | None = None
    variant_net_return_pct: float | None = None
    difference_pct: float | None = None  # variant minus base, net of model cost (unless cost_na)
    difference_ci: Interval
    p_variant_better: float | None = None  # a tie counts half: identical runs give 0.5
    variant_model_calls: int  # every call it made, those of decisions cut short included
    variant_requests_sent: int  # new requests: 0 when every answer was cached
    variant_prompt_tokens: int
    variant_completion_tokens: int
    variant_cost_usd: float | None  # as if uncached, as the base's; None: n/a (cost_na says why)
    run_total: Spent  # base plus variant: what the run's one budget covered
    na: str | None = None  # why there are no comparison figures: a run stopped early
    cost_na: str | None = None  # why both returns are before model cost: a price is unknown


def parse_variant(raw: str) -> Variant:
    kind, sep, value = raw.partition("=")
    if not sep or kind not in KINDS or not value:
        raise UserError(f"invalid --compare {raw!r}: use model=NAME or prompt=FILE")
    if kind == "prompt" and not Path(value).is_file():
        raise UserError(f"invalid --compare {raw!r}: no such file {value}")
    return Variant(kind=kind, value=value)


def open_variant(variant: Variant, settings: Settings, base: ChatModel) -> ChatModel:
    """The second model: the same settings with another model name, or the same model, and
    the same budget: the run's llm.max_calls, llm.max_tokens and llm.max_usd cover both."""
    if variant.kind == "prompt":
        llm = settings.llm
    else:
        if uses_offline(settings) and variant.value != OFFLINE_MODEL:
            raise UserError(
                f"--compare {variant.label} needs an LLM (OPENAI_API_KEY or OPENAI_BASE_URL); "
                "the offline model has no other model to compare with"
            )
        llm = settings.llm.model_copy(update={"model": variant.value})
    if variant.kind == "prompt" and uses_offline(settings):
        return base
    budget = base.budget if isinstance(base, LLMClient) else None
    return open_model(settings.model_copy(update={"llm": llm}), lambda _: None, budget)


def variant_strategy(
    variant: Variant, model: ChatModel, base: AgentStrategy, data: SweepData
) -> AgentStrategy:
    """The second agent: the base's parameters, bars and decision times, with the variant's
    model or system prompt."""
    strategy = AgentStrategy(
        base.p,
        model=model,
        market=base.market,
        close_time=base.close_time,
        rules=base.rules,
        cash=base.cash,
        run_id="",
        limits=base.limits,
    )
    if variant.kind == "prompt":
        text = Path(variant.value).read_text(encoding="utf-8")
        strategy.system_prompt = text
        material = f"system={hashlib.sha256(text.encode()).hexdigest()[:12]}|"
        material += f"{DECISION_PROMPT}={load_prompt(DECISION_PROMPT).version}"
        strategy.prompt_version = hashlib.sha256(material.encode()).hexdigest()[:12]
    strategy.run_id = agent_run_id(model, data, base.p, strategy.prompt_version) + "-b"
    return strategy


def compare(
    variant: Variant,
    strategy: AgentStrategy,
    base: AgentStrategy,
    base_result: BacktestResult,
    base_records: list[DecisionRecord],
    base_model: ChatModel,
    data: SweepData,
) -> Comparison:
    """Run the variant over the base run's bars and decision times; compare point by point.
    Each side's spend is its model's from its run's start (the variant's model may be the
    base's), so the calls of decisions a stop cut short count too."""
    model = strategy.model
    base_spent = run_spend(base)
    before = model.stats
    result, records = None, []
    if base.stopped is None:  # a base cut short has nothing to pair the rest with
        result = run_backtest(
            base_result.bars,
            strategy,
            data.rules,
            base_result.config,
            limits=base.limits,
            warmup=data.warmup,
        )
        records = finalize_records(strategy, result)
    unknown = [m.pricing.unknown for m in (base_model, model) if m.pricing.unknown]
    run = model.stats.since(before)
    spent = [base_spent, spend(run, model.pricing)]
    na = _stopped_early(base, strategy, len(records))
    ours = {(r.symbol, r.decided_ms): r for r in base_records}
    points = sorted(set(ours) & {(r.symbol, r.decided_ms) for r in records})
    figures = (
        _figures(base_result, result, ours, records, points, spent, bool(unknown))
        if result is not None and na is None
        else {"difference_ci": Interval(na=na)}
    )
    return Comparison(
        variant=variant.label,
        model=model.model,
        prompt_version=strategy.prompt_version,
        decision_points=len(points),
        **figures,
        variant_model_calls=spent[1].model_calls,
        variant_requests_sent=run.calls,
        variant_prompt_tokens=spent[1].prompt_tokens,
        variant_completion_tokens=spent[1].completion_tokens,
        variant_cost_usd=spent[1].cost_usd,
        run_total=Spent(
            model_calls=sum(x.model_calls for x in spent),
            prompt_tokens=sum(x.prompt_tokens for x in spent),
            completion_tokens=sum(x.completion_tokens for x in spent),
            cost_usd=None if unknown else round(sum(x.cost_usd or 0.0 for x in spent), 6),
        ),
        na=na,
        cost_na=unknown[0] if unknown else None,
    )


def _stopped_early(base: AgentStrategy, variant: AgentStrategy, decided: int) -> str | None:
    """Why the two runs cannot be compared: one stopped before its last decision (a budget
    spent, an outage, Ctrl-C), so a difference would set a whole run against part of one."""
    if base.stopped is not None:
        return f"the base run stopped early ({base.stopped}); the variant was not run"
    if variant.stopped is not None:
        return (
            f"the variant stopped early ({variant.stopped}) after {decided:,} of "
            f"{variant.planned():,} decisions"
        )
    return None


def _figures(
    base_result: BacktestResult,
    result: BacktestResult,
    ours: dict[tuple[str, int], DecisionRecord],
    records: list[DecisionRecord],
    points: list[tuple[str, int]],
    spent: list[Spent],
    unpriced: bool,
) -> dict[str, Any]:
    """Agreement point by point and the paired difference in net return, with its interval."""
    theirs = {(r.symbol, r.decided_ms): r for r in records}
    same_signal = [_action(ours[p]) == _action(theirs[p]) for p in points]
    same_verdict = [
        s and ours[p].outcome == theirs[p].outcome for s, p in zip(same_signal, points, strict=True)
    ]
    cash = float(base_result.equity[0])
    # One cost unknown: both returns before model cost, or the difference would charge one side.
    costs = [0.0, 0.0] if unpriced else [x.cost_usd or 0.0 for x in spent]
    nets = [
        (float(r.equity[-1]) - c) / cash * 100 - 100
        for r, c in zip((base_result, result), costs, strict=True)
    ]
    config = base_result.config
    step = interval_ms(config.interval)
    series = [
        choose_basis(
            r.equity, r.bars.open_time, step, config.periods_per_year, config.bars_per_session
        )
        for r in (base_result, result)
    ]
    basis, base_returns = series[0]
    why = too_short(basis.returns if basis.frequency != "none" else 0)
    ci, p_better = Interval(na=why), None
    if why is None:
        shifts = [c / cash / len(base_returns) for c in costs]
        base_totals, var_totals = paired_totals(
            [base_returns, series[1][1]], shifts, BOOTSTRAP_SEED
        )
        ci = interval(var_totals - base_totals, 100)
        p_better = p_greater(var_totals, base_totals)
    return {
        "signal_agreement": round(float(np.mean(same_signal)), 4) if points else None,
        "verdict_agreement": round(float(np.mean(same_verdict)), 4) if points else None,
        "base_net_return_pct": round(nets[0], 4),
        "variant_net_return_pct": round(nets[1], 4),
        "difference_pct": round(nets[1] - nets[0], 4),
        "difference_ci": ci,
        "p_variant_better": p_better,
    }


def _action(record: DecisionRecord) -> str:
    return (record.signal or {}).get("action") or "abstain"


def render_comparison(paired: dict[str, Any]) -> Table:
    table = Table(title=comparison_title(paired), show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    for row in comparison_rows(paired):
        table.add_row(*row)
    return table
