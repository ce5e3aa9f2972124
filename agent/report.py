"""The agent's part of a backtest report: what the model did (calls, tokens, cost, abstains), what
the gate did with it (vetoes and clamps by code), a decision log, and baselines on the same bars.

The JSON holds only what the inputs and the cache determine, so a rerun is byte-identical; this
run's wall-clock facts (requests sent, cache hits, latency) are shown in the terminal and HTML."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from rich.console import Group
from rich.table import Table

from agent.llm import LLMStats, Pricing
from agent.model import ChatModel
from agent.records import DecisionRecord
from agent.strategy import PARTIAL_STOPS, AgentParams, AgentStrategy
from backtest import BacktestResult
from backtest.calibration import Stated
from backtest.config import BacktestConfig
from backtest.report import BacktestReport, build_report, iso
from backtest.scorecard import RandomBaseline, Scorecard, scorecard
from backtest.sweep import SweepData
from backtest.terminal import fmt, to_unit
from backtest.veto_ledger import HORIZONS_MIN
from core.errors import UserError
from market.models import SymbolRules
from risk.models import Approved
from runtime.runner import Halted

COST_BASIS = (
    "every model call the run's decisions made, those cut short by a stop too, priced as if "
    "uncached: a cold run's bill"
)
BASELINE_METRICS = ("Return [%]", "Sharpe Ratio", "Max. Drawdown [%]", "# Trades")
RATIONALE_CHARS = 160
_SHOWN_DECISIONS = 12


class DecisionRow(BaseModel):
    time: str
    symbol: str
    price: float
    action: str | None
    confidence: float | None
    verdict: str
    codes: list[str]
    order: str | None
    rationale: str


class AgentSection(BaseModel):
    model: str
    base_url: str
    prompt_version: str
    decide_every_min: int
    stateful: bool
    planned_decisions: int
    decisions: int
    stopped: str | None
    partial: bool
    llm: dict[str, Any]
    risk: dict[str, dict[str, int]]
    protective_levels: dict[str, int]
    baselines: dict[str, dict[str, Any]]
    decision_log: list[DecisionRow]


class Spent(BaseModel):
    """Model calls answered, from the wire or the cache, their tokens, and a priced model's cost
    of them as if uncached: on a cold run, what the provider billed."""

    model_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None: n/a, a price is unknown

    def minus(self, part: Spent) -> Spent:
        return Spent(
            model_calls=self.model_calls - part.model_calls,
            prompt_tokens=self.prompt_tokens - part.prompt_tokens,
            completion_tokens=self.completion_tokens - part.completion_tokens,
            cost_usd=None
            if self.cost_usd is None or part.cost_usd is None
            else round(self.cost_usd - part.cost_usd, 6),
        )


def spend(stats: LLMStats, pricing: Pricing) -> Spent:
    """Every answer the model gave in `stats`, those of decisions a stop cut short included."""
    return _priced(
        stats.answered, stats.answered_prompt_tokens, stats.answered_completion_tokens, pricing
    )


def decisions_spend(records: Iterable[DecisionRecord], pricing: Pricing) -> Spent:
    """What the decision records' own calls add up to: a run's spend less the calls of the
    decisions it dropped."""
    calls = [c for r in records for c in r.llm_calls]
    prompt = sum(c.prompt_tokens for c in calls)
    return _priced(len(calls), prompt, sum(c.completion_tokens for c in calls), pricing)


def _priced(calls: int, prompt: int, completion: int, pricing: Pricing) -> Spent:
    cost = pricing.cost(prompt, completion)
    return Spent(
        model_calls=calls,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=None if cost is None else round(cost, 6),
    )


def run_spend(strategy: AgentStrategy) -> Spent:
    """What the run's model answered since the run began, as if uncached."""
    model = strategy.model
    return spend(model.stats.since(strategy.started), model.pricing)


class RunStats(BaseModel):
    """This execution only: what went over the wire and how long it took, for every model the
    run asked; `variant` is a `--compare` variant's part of it."""

    requests_sent: int
    cache_hits: int
    retries: int
    errors: dict[str, int]
    avg_latency_ms: float | None
    p95_latency_ms: float | None
    cost_usd_this_run: float | None  # None: n/a, as the run's cost_usd
    probes: int = 0  # of the requests and cache hits, llm.decision_format=probe's: no decisions
    variant: RunStats | None = None

    def facts(self) -> dict[str, Any]:
        """Its figures for a page: the probes and the variant's only where there were any."""
        empty = {"probes": not self.probes, "variant": self.variant is None}
        return self.model_dump(exclude={name for name, unused in empty.items() if unused})


def run_stats(stats: LLMStats, variant: LLMStats | None = None) -> RunStats:
    """The run's figures: the base model's, plus a `--compare` variant's (kept apart too)."""
    both = [stats] if variant is None else [stats, variant]
    latencies = [x for s in both for x in s.latencies_ms if x > 0]
    costs = [s.cost_usd for s in both]
    errors: Counter[str] = Counter()
    for s in both:
        errors.update(s.errors)
    p95 = LLMStats(latencies_ms=latencies).p95_latency_ms
    return RunStats(
        requests_sent=sum(s.calls for s in both),
        cache_hits=sum(s.cache_hits for s in both),
        retries=sum(s.retries for s in both),
        errors=dict(sorted(errors.items())),
        avg_latency_ms=round(sum(latencies) / len(latencies), 1) if latencies else None,
        p95_latency_ms=None if p95 is None else round(p95, 1),
        cost_usd_this_run=None if None in costs else round(sum(costs), 6),
        probes=sum(s.probes for s in both),
        variant=None if variant is None else run_stats(variant),
    )


def check_replayed(strategy: AgentStrategy, consented: bool = True) -> None:
    """A run that needed an answer the cache lacks, with sending forbidden (--replay-only, or
    no consent to spend because every answer seemed cached), is an error: its report would be
    of the decisions before the miss."""
    if strategy.stopped == "cache_miss":
        missed = next(r for r in strategy.records.values() if r.abstain)
        where = f"no cached answer for {missed.symbol} at {iso(missed.decided_ms + 1)}"
        if not consented:
            raise UserError(
                f"{where} (a decision's first answer was cached, a later one not); nothing "
                "was sent. Pass --yes to accept the estimate"
            )
        raise UserError(
            f"--replay-only: {where}; nothing was sent. Run once without --replay-only (with a "
            "key or OPENAI_BASE_URL) to fill the cache"
        )


def finalize_records(strategy: AgentStrategy, result: BacktestResult) -> list[DecisionRecord]:
    """The graph's records plus what the engine did with each signal: verdict, order, fills."""
    fills_by_order: dict[str, list[dict[str, Any]]] = {}
    for fill in result.fills:
        fills_by_order.setdefault(fill.order_id, []).append(
            {"time": iso(fill.time_ms), "price": fill.price, "quantity": fill.quantity}
        )
    finished = []
    for key in sorted(strategy.records):
        record = strategy.records[key]
        update: dict[str, Any] = {}
        verdict = result.verdicts.get(record.decision_id)
        halt = _halt_at(result, record) if verdict is None else None
        if halt is not None:
            update["outcome"] = "halted"
            update["verdict"] = {
                "skipped": "the account was halted: the signal never went through the gate",
                "reasons": [{"code": x.code.value, "message": x.message} for x in halt.locks],
            }
        if verdict is not None:
            update["verdict"] = verdict.model_dump(mode="json")
            update["outcome"] = "vetoed"
            if isinstance(verdict, Approved):
                update["outcome"] = "approved"
                update["order"] = verdict.order.model_dump(mode="json")
                fills = fills_by_order.get(verdict.order.client_order_id)
                update["execution"] = {
                    "fills": fills or [],
                    "status": "filled" if fills else "open",
                }
        finished.append(record.model_copy(update=update))
    return finished


def _halt_at(result: BacktestResult, record: DecisionRecord) -> Halted | None:
    """The halt that skipped this signal's bar: the agent decided ahead of the runner."""
    if record.outcome != "signal":
        return None
    return next((h for h in result.halted if h.covers(record.decided_ms)), None)


def _by_code(records: Iterable[DecisionRecord]) -> dict[str, int]:
    """Decisions by their verdict's first reason code."""
    return dict(
        sorted(Counter(r.verdict["reasons"][0]["code"] for r in records if r.verdict).items())
    )


def baselines(card: Scorecard) -> dict[str, dict[str, Any]]:
    """The scorecard's baselines in the four headline metrics (the random one by its median),
    and why any of them is n/a."""
    rows: dict[str, dict[str, Any]] = {}
    for name, entry in card.baselines.items():
        figures = entry.median if isinstance(entry, RandomBaseline) else entry
        values = (figures.return_pct, figures.sharpe, figures.max_drawdown_pct, figures.trades)
        na = {} if figures.sharpe_na is None else {"Sharpe Ratio": figures.sharpe_na}
        rows[name] = {**dict(zip(BASELINE_METRICS, values, strict=True)), "not_available": na}
    return rows


def stated(records: list[DecisionRecord]) -> list[Stated]:
    return [
        Stated(
            symbol=r.symbol,
            decided_ms=r.decided_ms,
            action=r.signal["action"],
            confidence=r.signal.get("confidence"),
        )
        for r in records
        if r.signal
    ]


def agent_section(
    strategy: AgentStrategy,
    records: list[DecisionRecord],
    result: BacktestResult,
    model: ChatModel,
    base: dict[str, dict[str, Any]],
) -> AgentSection:
    causes = Counter(r.abstain["cause"] for r in records if r.abstain)
    run = model.stats.since(strategy.started)
    total = spend(run, model.pricing)
    dropped = total.minus(decisions_spend(records, model.pricing))
    actions = Counter((r.signal or {}).get("action", "none") for r in records)
    return AgentSection(
        model=model.model,
        base_url=model.base_url,
        prompt_version=strategy.prompt_version,
        decide_every_min=strategy.cadence_min,
        stateful=strategy.p.stateful,
        planned_decisions=strategy.planned(),
        decisions=len(records),
        stopped=strategy.stopped,
        partial=strategy.stopped in PARTIAL_STOPS,
        llm={
            **total.model_dump(),
            "cost_basis": COST_BASIS,
            **({} if total.cost_usd is not None else {"cost_na": model.pricing.unknown}),
            # only when there were any, as retries: a cached rerun stays byte-identical
            **({"in_no_decision": dropped.model_dump()} if dropped.model_calls else {}),
            "abstains": dict(sorted(causes.items())),
            "signals": dict(sorted(actions.items())),
            **({"retries": run.retries} if run.retries else {}),
            **_sampling(strategy.p.samples, records),
        },
        risk={
            "vetoed": dict(sorted(result.vetoes.items())),
            "adjusted": dict(sorted(result.adjustments.items())),
            "halted": _by_code(r for r in records if r.outcome == "halted"),
        },
        protective_levels=dict(sorted(strategy.levels.items())),
        baselines=base,
        decision_log=[_row(r, strategy) for r in records],
    )


def _sampling(samples: int, records: list[DecisionRecord]) -> dict[str, Any]:
    """With --samples K: K, the mean agreement and how many decisions were not unanimous."""
    if samples == 1:
        return {}
    shares = [r.samples["agreement"] for r in records if r.samples]
    return {
        "samples": samples,
        "agreement_mean": round(sum(shares) / len(shares), 4) if shares else None,
        "split_decisions": sum(share < 1 for share in shares),
    }


def _row(record: DecisionRecord, strategy: AgentStrategy) -> DecisionRow:
    signal = record.signal or {}
    verdict = record.verdict or {}
    reasons = verdict.get("adjustments") or verdict.get("reasons") or []
    order = record.order
    rationale = signal.get("rationale") or (record.abstain or {}).get("message") or ""
    return DecisionRow(
        time=iso(record.decided_ms + 1),
        symbol=record.symbol,
        price=float(strategy.market.candles(record.symbol, record.decided_ms)["close"].iloc[-1]),
        action=signal.get("action"),
        confidence=signal.get("confidence"),
        verdict=record.outcome,
        codes=[r["code"] for r in reasons],
        order=None
        if order is None
        else f"{order['side']} {_quantity(order, strategy.rules[record.symbol])}",
        rationale=rationale[:RATIONALE_CHARS],
    )


def _quantity(order: dict[str, Any], rules: SymbolRules) -> str:
    """To the symbol's step: 'sell 0.01591', not 'sell 0.01591000'."""
    return to_unit(float(order["quantity"]), str(rules.step_size))


def render_agent(section: AgentSection, stats: RunStats) -> Group:
    llm = section.llm
    v = stats.variant
    head = Table(title=f"agent: {section.model} every {section.decide_every_min} min")
    head.add_column("")
    head.add_column("", justify="right")
    shown = {
        "decisions (planned)": f"{section.decisions:,} ({section.planned_decisions:,})",
        "model calls": fmt(llm["model_calls"]),
        **_in_no_decision(llm),
        "requests sent / cache hits": f"{stats.requests_sent:,} / {stats.cache_hits:,}"
        + ("" if v is None else f" (variant {v.requests_sent:,} / {v.cache_hits:,})")
        + ("" if not stats.probes else f"; {stats.probes:,} of them llm.decision_format's probe"),
        "retries / failed requests": f"{stats.retries:,} / {sum(stats.errors.values()):,}",
        "tokens in / out": f"{llm['prompt_tokens']:,} / {llm['completion_tokens']:,}",
        "cost [$] (this run)": f"n/a: {llm['cost_na']}"
        if llm["cost_usd"] is None
        else f"{llm['cost_usd']:.4f} ({_this_run(stats)})",
        "latency avg / p95 [ms]": f"{fmt(stats.avg_latency_ms)} / {fmt(stats.p95_latency_ms)}",
        "signals": ", ".join(f"{k} {v}" for k, v in llm["signals"].items()) or "none",
        "abstains": ", ".join(f"{k} {v}" for k, v in llm["abstains"].items()) or "none",
        "vetoed by the gate": ", ".join(f"{k} {v}" for k, v in section.risk["vetoed"].items())
        or "none",
        "clamped by the gate": ", ".join(f"{k} {v}" for k, v in section.risk["adjusted"].items())
        or "none",
    }
    if section.risk["halted"]:
        shown["halted: signals never gated"] = ", ".join(
            f"{k} {v}" for k, v in section.risk["halted"].items()
        )
    if "samples" in llm:
        shown["samples per decision"] = (
            f"{llm['samples']} (agreement {fmt(llm['agreement_mean'])}, "
            f"{llm['split_decisions']:,} split)"
        )
    if section.protective_levels:
        shown["--stop-loss / --take-profit"] = ", ".join(
            f"{k} {v}" for k, v in section.protective_levels.items()
        )
    if section.stopped:
        shown["stopped early"] = section.stopped
    for name, value in shown.items():
        head.add_row(name, value)
    return Group(head, _decision_log(section))


def _in_no_decision(llm: dict[str, Any]) -> dict[str, str]:
    """The calls of decisions the run dropped: counted in its spend, in no decision below."""
    dropped = llm.get("in_no_decision")
    if dropped is None:
        return {}
    cost = "" if llm["cost_usd"] is None else f", ${dropped['cost_usd']:.4f}"
    return {"of them in no decision (cut short)": f"{dropped['model_calls']:,}{cost}"}


def _this_run(stats: RunStats) -> str:
    """What this run spent, with a `--compare` variant's part named: the budget covered both."""
    spent = usd_or_na(stats.cost_usd_this_run)
    if stats.variant is None:
        return spent
    return f"this run {spent}, of it variant {usd_or_na(stats.variant.cost_usd_this_run)}"


def usd_or_na(value: float | None) -> str:
    """Dollars as the agent's tables show them, or n/a: the model has no price (the row or the
    comparison says why)."""
    return "n/a" if value is None else f"{value:.4f}"


def _decision_log(section: AgentSection) -> Table:
    """Short columns never wrap; the rationale takes the rest of the width and wraps, so the
    table reads at 80 columns and in a pipe."""
    shown = section.decision_log[-_SHOWN_DECISIONS:]
    several = len({row.symbol for row in section.decision_log}) > 1
    log = Table(
        title=f"last {len(shown)} of {len(section.decision_log):,} decisions (UTC)",
        box=None,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    columns = ["time", *(["symbol"] if several else []), "action", "conf", "verdict", "order"]
    for column in columns:
        log.add_column(column, no_wrap=True)
    log.add_column("rationale", overflow="fold", min_width=16, ratio=1)
    for row in shown:
        log.add_row(
            f"{row.time[5:10]} {row.time[11:16]}",
            *([row.symbol] if several else []),
            row.action or "—",
            fmt(row.confidence),
            row.verdict,
            row.order or "—",
            row.rationale[:RATIONALE_CHARS],
        )
    return log


def agent_report(
    strategy: AgentStrategy,
    result: BacktestResult,
    model: ChatModel,
    rules: Mapping[str, SymbolRules],
    config: BacktestConfig,
    notes: list[str],
    window: dict[str, Any] | None = None,
    horizons_min: Sequence[int] = HORIZONS_MIN,
    ruled: Mapping[str, BacktestResult] | None = None,
) -> tuple[BacktestReport, list[DecisionRecord], AgentSection]:
    """The finished run as `agent-backtest` and the UI report it: the classic report with the
    agent section, the scorecard (baselines through the same gate, intervals, the veto ledger,
    calibration) and the decisions to store. `ruled`: the rule baselines, if already run."""
    del config  # the scorecard replays the run's own config, held in `result`
    records = finalize_records(strategy, result)
    report = build_report(result, notes, rules, window)
    section = agent_section(strategy, records, result, model, {})
    llm = section.llm
    card = scorecard(
        result, rules, stated(records), llm["cost_usd"], llm.get("cost_na"), horizons_min, ruled
    )
    section = section.model_copy(update={"baselines": baselines(card)})
    update = {"agent": section.model_dump(mode="json"), "scorecard": card.model_dump(mode="json")}
    return report.model_copy(update=update), records, section


def agent_run_id(model: ChatModel, data: SweepData, params: AgentParams, version: str) -> str:
    """Deterministic, so a rerun replaces its own decisions and reproduces its order ids."""
    bars = data.bars
    # One sample is what every run did before --samples, so such a run keeps its id.
    left_out = {"concurrency"} if params.samples > 1 else {"concurrency", "samples"}
    material = "|".join(
        [
            model.base_url,
            model.model,
            version,
            ",".join(bars.symbols),
            str(int(bars.open_time[0])),
            str(int(bars.open_time[-1])),
            params.model_dump_json(exclude=left_out),
        ]
    )
    return "bt-" + hashlib.sha256(material.encode()).hexdigest()[:10]
