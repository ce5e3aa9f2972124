"""One decision's world for tests that drive the graph directly: the bundled BTCUSDT sample at
a bar, a flat 10,000 USDT account, and the deps a decision (or a chat turn) runs with."""

from __future__ import annotations

from agent.decide import decision_prompt_version, system_prompt
from agent.graph import AgentDeps, Gatekeeper
from agent.model import ChatModel
from market.sample import sample_rules
from tools import MarketData, ToolEnv, ToolRegistry, decision_tools, flat_portfolio

CASH = 10_000.0


def env_at(market: MarketData, bar: int, *, stateful: bool = False) -> ToolEnv:
    return ToolEnv(
        market=market,
        now_ms=int(market.frames["BTCUSDT"]["close_time"].iloc[bar]),
        rules=sample_rules(),
        portfolio=flat_portfolio(CASH),
        stateful=stateful,
    )


def deps_for(
    model: ChatModel,
    env: ToolEnv,
    *,
    tools: ToolRegistry | None = None,
    gate: Gatekeeper | None = None,
    run_id: str = "test",
) -> AgentDeps:
    return AgentDeps(
        model=model,
        tools=tools or decision_tools(),
        env=env,
        system_prompt=system_prompt(),
        prompt_version=decision_prompt_version(),
        run_id=run_id,
        gate=gate,
    )
