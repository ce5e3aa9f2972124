"""The agent's look-ahead check finds a tool that reads bars after the decision time, and passes
an honest run (the CLI's passing case is pinned in test_backtest_flags)."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pytest
from loopback_openai import LoopbackOpenAI, Scripted
from scripted_model import ScriptedModel, buy_an_uptrend, look_at_the_market

from agent.llm import LLMClient
from agent.lookahead import check_agent_lookahead
from agent.model import ChatModel
from agent.offline import OfflineModel
from agent.report import finalize_records
from agent.strategy import AgentParams, AgentStrategy
from backtest.data import to_bar_arrays
from backtest.engine import run_backtest
from config.settings import LLMSettings
from market.sample import load_sample, sample_rules
from tools import MarketData, ToolEnv, ToolRegistry, decision_tools
from tools.market import CandlesIn, CandlesOut, get_candles

HOUR_MS = 3_600_000


class PeekingMarketData(MarketData):
    """A buggy data layer: every decision sees the bar after its time as well."""

    def visible_rows(self, symbol: str, now_ms: int) -> int:
        return super().visible_rows(symbol, now_ms) + 1


def _run(
    market: MarketData,
    frames: dict[str, pd.DataFrame],
    model: ChatModel | None = None,
    tools: ToolRegistry | None = None,
) -> tuple[AgentStrategy, list]:
    bars, _ = to_bar_arrays(frames)
    strategy = AgentStrategy(
        AgentParams(decide_every=60),
        model=model or OfflineModel(),
        market=market,
        close_time=bars.close_time,
        rules=sample_rules(),
        cash=10_000.0,
        run_id="lookahead-test",
    )
    strategy.tools = tools or strategy.tools
    result = run_backtest(bars, strategy, sample_rules())
    return strategy, finalize_records(strategy, result)


def test_a_tool_reading_the_next_bar_is_caught_and_an_honest_run_passes() -> None:
    frames = {"BTCUSDT": load_sample("BTCUSDT").iloc[-720:].reset_index(drop=True)}
    honest, records = _run(MarketData(frames, "1m"), frames)
    problems, checked = check_agent_lookahead(honest, frames, records)
    assert (problems, checked) == ([], min(12, len(records)))

    peeking, records = _run(PeekingMarketData(frames, "1m"), frames)
    problems, checked = check_agent_lookahead(peeking, frames, records)
    assert checked == len(records) == 11 and len(problems) == 11, problems
    assert problems[0] == (
        "agent: BTCUSDT at 2025-10-31 18:00:00 changes its signal when the data ends there: "
        "a tool reads later bars"
    )


def candles_an_hour_ahead(env: ToolEnv, args: CandlesIn) -> CandlesOut:
    """A buggy get_candles: it reads the bars up to an hour after the decision time."""
    return get_candles(dataclasses.replace(env, now_ms=env.now_ms + HOUR_MS), args)


class FreshCallIds(ScriptedModel):
    """A provider that names each tool call anew in every reply, as OpenAI does (`call_...`)."""

    def __call__(self, request: dict[str, Any]) -> Scripted:
        reply = super().__call__(request)
        for call in reply.body["choices"][0]["message"]["tool_calls"] or []:
            call["id"] = f"call_{secrets.token_hex(12)}"
        return reply


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["cache", "live"])
def test_a_tool_result_from_later_bars_is_caught_when_the_signal_is_the_same(
    tmp_path: Path, mode: Literal["cache", "live"]
) -> None:
    # The model reads the snapshot and candles, then decides on the snapshot alone: leaked
    # candles change only what its second request carries, not its tool calls or signal.
    # Live, the re-run's replies are new, their tool-call ids too: an honest run still passes.
    server = LoopbackOpenAI(responder=FreshCallIds(look_at_the_market, buy_an_uptrend)).start()
    model = LLMClient(
        LLMSettings(mode=mode),
        api_key="sk-test",
        base_url=server.base_url,
        cache_dir=tmp_path / "llm",
    )
    honest = decision_tools()
    leaky = ToolRegistry(
        dataclasses.replace(tool, handler=candles_an_hour_ahead)
        if tool.name == "get_candles"
        else tool
        for tool in (honest.get(name) for name in honest.names)
    )
    frames = {"BTCUSDT": load_sample("BTCUSDT").iloc[-720:].reset_index(drop=True)}
    try:
        checked = {}
        for name, tools in (("honest", honest), ("leaky", leaky)):
            strategy, records = _run(MarketData(frames, "1m"), frames, model, tools)
            assert [c.name for c in records[0].tool_calls][:2] == [
                "get_market_snapshot",
                "get_candles",
            ]
            checked[name] = check_agent_lookahead(strategy, frames, records), records
    finally:
        model.close()
        server.stop()
    (problems, count), records = checked["honest"]
    assert (problems, count) == ([], 11)
    (problems, count), leaked = checked["leaky"]
    assert [r.signal for r in leaked] == [
        r.signal for r in records
    ]  # the leak hides in the results
    assert count == len(problems) == 11, problems
    assert problems[0] == (
        "agent: BTCUSDT at 2025-10-31 18:00:00 changes its tool inputs or results when the data "
        "ends there: a tool reads later bars"
    )
