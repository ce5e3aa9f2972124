"""One unattended decision for one symbol at one instant: the prompt, the graph run, the result.
Backtest, paper and live all call this; they differ only in the deps they inject."""

from __future__ import annotations

from typing import Any

from agent.briefing import (
    SNAPSHOT_LABEL,
    describe_limits,
    describe_position,
    snapshot_json,
)
from agent.graph import AgentDeps, AgentState, new_turn
from market.models import iso_ms
from prompts import load_prompt, prompt_version
from tools import ToolEnv, ToolError

SYSTEM_PROMPT, DECISION_PROMPT = "system", "decision"


def decision_prompt_version() -> str:
    return prompt_version(SYSTEM_PROMPT, DECISION_PROMPT)


def system_prompt() -> str:
    return load_prompt(SYSTEM_PROMPT).text


def decision_id(run_id: str, symbol: str, now_ms: int) -> str:
    return f"{run_id}:{symbol}:{now_ms}"


def decide(graph: Any, deps: AgentDeps, symbol: str) -> AgentState:
    """Run the graph for `symbol` at `deps.env.now_ms`; the result's `record` is always set."""
    env = deps.env
    env.decision_id = decision_id(deps.run_id, symbol, env.now_ms)
    turn = new_turn(env.decision_id, "decide", symbol, env.now_ms, decision_text(env, symbol))
    return graph.invoke(turn, context=deps)


def decision_text(env: ToolEnv, symbol: str) -> str:
    """The user turn that asks for a decision about `symbol` at `env.now_ms`."""
    text = load_prompt(DECISION_PROMPT).render(
        as_of=iso_ms(env.now_ms + 1),  # the bar closed at xx:59.999; the decision is at the minute
        symbol=symbol,
        interval=env.market.interval,
        position=describe_position(env, symbol),
        limits=describe_limits(env),
        snapshot_label=SNAPSHOT_LABEL,
        snapshot=_snapshot_or_why(env, symbol),
    )
    if env.market_state is not None:  # stocks only: a crypto prompt stays byte for byte
        text += f"Market: {env.market_state(env.now_ms)}.\n"
    return text


def _snapshot_or_why(env: ToolEnv, symbol: str) -> str:
    """Too little history is said in the prompt; get_market_snapshot gives the model the same."""
    try:
        return snapshot_json(env, symbol)
    except ToolError as exc:
        return f"unavailable ({exc})"
