"""The agent through the runner against a loopback model: safe mode holds entries back until the
endpoint is healthy again, and a decision trades only the symbol it was about."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from loopback_openai import LoopbackOpenAI, Scripted
from scripted_model import completion, tool_call

from agent.llm import LLMClient
from agent.records import DecisionRecord
from agent.report import finalize_records
from agent.strategy import AgentParams, AgentStrategy
from backtest.data import to_bar_arrays
from backtest.engine import run_backtest
from config.settings import LLMSettings
from market.sample import load_sample, sample_rules
from risk.limits import RiskLimits
from tools import MarketData

SYMBOL_IN_PROMPT = re.compile(r"Symbol: (\w+),")
Plan = Callable[[int, str, dict[str, Any]], Scripted]  # (decision number, symbol, request)


def _signal(request: dict[str, Any], **fields: Any) -> Scripted:
    arguments = {"confidence": 0.8, "rationale": "scripted", **fields}
    return Scripted(200, completion(tool_call("submit_signal", arguments), request, 0))


class DecisionModel:
    """Answers each decision's first call from `plan`, by the decision's order of arrival."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.decisions = 0

    def __call__(self, request: dict[str, Any]) -> Scripted:
        user = next(m["content"] for m in request["messages"] if m["role"] == "user")
        symbol = SYMBOL_IN_PROMPT.search(user).group(1)
        number = self.decisions
        self.decisions += 1
        return self.plan(number, symbol, request)


@pytest.fixture
def run_agent(tmp_path) -> Iterator[Callable[..., tuple[list[DecisionRecord], Any]]]:
    opened: list[Any] = []

    def run(
        plan: Plan,
        symbols: tuple[str, ...],
        *,
        stateful: bool,
        every: int = 15,
    ) -> tuple[list[DecisionRecord], Any]:
        server = LoopbackOpenAI(responder=DecisionModel(plan)).start()
        client = LLMClient(
            LLMSettings(max_retries=0),
            api_key="sk-loopback",
            base_url=server.base_url,
            cache_dir=None,
        )
        opened.extend([server, client])
        frames = {s: load_sample(s).iloc[-400:].reset_index(drop=True) for s in symbols}
        bars, _ = to_bar_arrays(frames)
        strategy = AgentStrategy(
            AgentParams(decide_every=every, stateful=stateful, concurrency=2),
            model=client,
            market=MarketData(frames, "1m"),
            close_time=bars.close_time,
            rules=sample_rules(),
            cash=10_000.0,
            run_id="discipline",
        )
        result = run_backtest(bars, strategy, sample_rules(), limits=RiskLimits())
        return finalize_records(strategy, result), result

    yield run
    for thing in opened:
        (thing.stop if isinstance(thing, LoopbackOpenAI) else thing.close)()


def _codes(record: DecisionRecord) -> list[str]:
    return [r["code"] for r in (record.verdict or {}).get("reasons", [])]


@pytest.mark.slow
def test_safe_mode_vetoes_an_ai_buy_after_three_failures_and_lets_a_close_through(
    run_agent,
) -> None:
    down = Scripted(500, {"error": {"message": "upstream down", "type": "server_error"}})

    def plan(n: int, symbol: str, request: dict[str, Any]) -> Scripted:
        if n == 0:
            return _signal(request, symbol=symbol, action="buy", size_pct=0.2)
        if n in (1, 2, 3):
            return down
        if n == 4:
            return _signal(request, symbol=symbol, action="buy", size_pct=0.2)
        if n == 5:
            return _signal(request, symbol=symbol, action="close")
        return _signal(request, symbol=symbol, action="hold")

    records, _ = run_agent(plan, ("BTCUSDT",), stateful=True, every=1)

    assert [r.outcome for r in records[:6]] == [
        "approved",
        "abstain",
        "abstain",
        "abstain",
        "vetoed",  # the healthy call that carries the buy is judged in safe mode
        "approved",  # exits stay allowed
    ]
    assert "SAFE_MODE" in _codes(records[4])  # (the AI also may not add to a held long)
    assert records[5].order["side"] == "sell"
    assert records[5].execution["status"] == "filled"


def test_a_model_that_swaps_the_symbols_trades_neither(run_agent) -> None:
    other = {"BTCUSDT": "ETHUSDT", "ETHUSDT": "BTCUSDT"}

    def swapped(n: int, symbol: str, request: dict[str, Any]) -> Scripted:
        return _signal(request, symbol=other[symbol], action="buy", size_pct=0.1)

    records, result = run_agent(swapped, ("BTCUSDT", "ETHUSDT"), stateful=False)

    assert len({r.symbol for r in records}) == 2 and len(records) > 10
    assert {r.outcome for r in records} == {"abstain"}
    assert {r.abstain["cause"] for r in records} == {"wrong_symbol"}
    first = records[0]
    assert (
        f"about {first.symbol} but the model signalled buy {other[first.symbol]}"
        in (first.abstain["message"])
    )
    assert result.fills == [] and result.verdicts == {}
