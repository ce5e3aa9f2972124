"""The agent's look-ahead check: a sample of its decisions made again on data that ends at the
decision time. A tool that read a later bar would now return something else, so what the tools
returned, the tool calls or the signal would change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from agent.records import DecisionRecord
from agent.strategy import AgentStrategy
from tools import MarketData

SAMPLE = 12


def sample(records: list[DecisionRecord], count: int = SAMPLE) -> list[DecisionRecord]:
    """Up to `count` decisions spread evenly over the run (abstains that stopped it excluded)."""
    usable = [r for r in records if not r.abstain]
    if len(usable) <= count:
        return usable
    picks = np.linspace(0, len(usable) - 1, num=count).round().astype(int)
    return [usable[i] for i in sorted(set(picks.tolist()))]


def _fingerprint(record: DecisionRecord, state: Mapping[str, Any]) -> tuple[object, ...]:
    """What the decision was told (its prompt and every tool result, in order), the tool
    calls and the signal: a result that read ahead changes even when the signal does not.
    No request key: a later one holds the provider's tool-call ids, new on each live reply."""
    told = [m["content"] for m in state["messages"] if m["role"] in ("user", "tool")]
    calls = [(c.name, c.arguments) for c in record.tool_calls]
    return told, calls, record.signal


def check_agent_lookahead(
    strategy: AgentStrategy,
    frames: Mapping[str, pd.DataFrame],
    records: list[DecisionRecord],
) -> tuple[list[str], int]:
    """Differences found, as sentences, and how many decisions were re-run."""
    problems: list[str] = []
    picked = sample(records)
    for record in picked:
        cut = {s: f[f["close_time"] <= record.decided_ms] for s, f in frames.items()}
        first = next(iter(cut.values()))
        probe = AgentStrategy(
            strategy.p,
            model=strategy.model,
            market=MarketData(
                cut,
                strategy.market.interval,
                strategy.market.indicator_config,
                exchange=strategy.market.exchange,
            ),
            close_time=first["close_time"].to_numpy(dtype=np.int64),
            rules=strategy.rules,
            cash=strategy.cash,
            run_id=strategy.run_id,
            limits=strategy.limits,
        )
        probe.tools, probe.system_prompt = strategy.tools, strategy.system_prompt
        key = (record.symbol, record.decided_ms)
        probe._run_one(*key)
        again = probe.records[key]
        if _fingerprint(again, probe.states[key]) != _fingerprint(record, strategy.states[key]):
            what = "signal" if again.signal != record.signal else "tool inputs or results"
            problems.append(
                f"agent: {record.symbol} at {pd.Timestamp(record.decided_ms + 1, unit='ms')} "
                f"changes its {what} when the data ends there: a tool reads later bars"
            )
    return problems, len(picked)
