"""Agent overheads with no LLM latency: a cached LLM call (us), the graph per decision with the
offline model (ms), model calls per decision, and the prompt per call in tokens, counted by
agent.tokens (tiktoken cl100k_base as OpenAI's cookbook counts a chat request, tool schemas
included), the counter the pre-run cost estimate uses.

Run: python benchmarks/bench_agent.py [--decisions 200]"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from flags import count

from agent.decide import decide, decision_prompt_version, system_prompt
from agent.graph import AgentDeps, build_graph
from agent.llm import LLMClient
from agent.offline import OfflineModel
from agent.tokens import request_tokens
from config.settings import LLMSettings
from market.sample import load_sample, sample_rules
from tools import MarketData, ToolEnv, decision_tools, flat_portfolio


def cached_call_us(repeats: int) -> float:
    """A warm diskcache hit through LLMClient.complete: key hashing, JSON read, validation."""
    with tempfile.TemporaryDirectory() as tmp:
        client = LLMClient(
            LLMSettings(model="gpt-4o-mini"), api_key="sk-bench", base_url=None, cache_dir=Path(tmp)
        )
        messages = [
            {"role": "system", "content": system_prompt()},
            {"role": "user", "content": "x"},
        ]
        tools = decision_tools().schemas()
        key = client.cache_key(messages, tools, "bench")
        client._cache.set(  # a stored answer, as a previous run would have left it
            key,
            {
                "message": {"role": "assistant", "content": "hold", "tool_calls": []},
                "finish_reason": "stop",
                "usage": {"prompt_tokens": 900, "completion_tokens": 20, "total_tokens": 920},
                "model": "gpt-4o-mini",
            },
        )
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            client.complete(messages, tools, prompt_version="bench")
            timings.append((time.perf_counter() - started) * 1e6)
        client.close()
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=count, default=200)
    n = parser.parse_args().decisions
    market = MarketData({s: load_sample(s) for s in ("BTCUSDT", "ETHUSDT")}, "1m")
    market.indicators("BTCUSDT", 0)
    graph, model = build_graph(), OfflineModel()
    closes = market.frames["BTCUSDT"]["close_time"]
    bars = [int(closes.iloc[i]) for i in range(100, len(closes) - 1, (len(closes) - 101) // n)][:n]
    timings, step_tokens, steps = [], [], 0
    for now in bars:
        env = ToolEnv(
            market=market,
            now_ms=now,
            rules=sample_rules(),
            portfolio=flat_portfolio(10_000),
            stateful=False,
        )
        deps = AgentDeps(
            model=model,
            tools=decision_tools(),
            env=env,
            system_prompt=system_prompt(),
            prompt_version=decision_prompt_version(),
            run_id="bench",
        )
        started = time.perf_counter()
        state = decide(graph, deps, "BTCUSDT")
        timings.append((time.perf_counter() - started) * 1000)
        history = [{"role": "system", "content": deps.system_prompt}]
        for message in state["messages"]:
            if message.get("role") == "assistant":  # the prompt of that model call
                step_tokens.append(request_tokens(history, deps.tools.schemas()))
                steps += 1
            history.append(message)
    print(
        f"cached LLM call overhead: median {cached_call_us(2_000):,.0f} µs (diskcache JSONDisk hit)"
    )
    print(
        f"graph per decision (offline model, no LLM latency): median {statistics.median(timings):.2f}"
        f" ms, p95 {sorted(timings)[int(0.95 * len(timings)) - 1]:.2f} ms over {len(timings)}"
    )
    print(
        f"model calls per decision: {steps / len(bars):.2f} (offline model; target 1: the prompt "
        "carries the snapshot)"
    )
    print(
        f"prompt per model call: median {statistics.median(step_tokens):,.0f} tokens, max "
        f"{max(step_tokens):,.0f} (tiktoken cl100k_base, tool schemas included; target <= 800)"
    )


if __name__ == "__main__":
    main()
