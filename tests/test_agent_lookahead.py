"""The agent's look-ahead check finds a tool that reads bars after the decision time, and passes
an honest run (the CLI's passing case is pinned in test_backtest_flags)."""

from __future__ import annotations

import pandas as pd

from agent.lookahead import check_agent_lookahead
from agent.offline import OfflineModel
from agent.report import finalize_records
from agent.strategy import AgentParams, AgentStrategy
from backtest.data import to_bar_arrays
from backtest.engine import run_backtest
from market.sample import load_sample, sample_rules
from tools import MarketData


class PeekingMarketData(MarketData):
    """A buggy data layer: every decision sees the bar after its time as well."""

    def visible_rows(self, symbol: str, now_ms: int) -> int:
        return super().visible_rows(symbol, now_ms) + 1


def _run(market: MarketData, frames: dict[str, pd.DataFrame]) -> tuple[AgentStrategy, list]:
    bars, _ = to_bar_arrays(frames)
    strategy = AgentStrategy(
        AgentParams(decide_every=60),
        model=OfflineModel(),
        market=market,
        close_time=bars.close_time,
        rules=sample_rules(),
        cash=10_000.0,
        run_id="lookahead-test",
    )
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
