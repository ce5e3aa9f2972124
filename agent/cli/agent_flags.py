"""The agent's flags on `agent-backtest`, apart from the agent itself, so building the parser
(and running a classic strategy) never loads the graph, LangGraph or an LLM client."""

from __future__ import annotations

import argparse


def add_agent_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the LLM agent (--strategy agent, the default)")
    group.add_argument("--decide-every", type=int, default=15, help="minutes between decisions")
    group.add_argument(
        "--stateful", action="store_true", help="positions in the prompt; decide one at a time"
    )
    group.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="decisions in flight (8); the offline model decides one at a time",
    )
    group.add_argument(
        "--replay-only", action="store_true", help="send nothing; fail on a cache miss"
    )
    group.add_argument(
        "--budget-usd",
        type=float,
        help="stop cleanly once this much is spent at llm.prices; only where those prices apply "
        "(llm.prices_host), elsewhere cost is n/a and this exits 2",
    )
    group.add_argument("--yes", action="store_true", help="accept the cost estimate")
    group.add_argument(
        "--samples",
        type=int,
        default=1,
        metavar="K",
        help="ask the model K times per decision; the majority action decides (K calls each)",
    )
    group.add_argument(
        "--compare",
        metavar="model=NAME|prompt=FILE",
        help="paired A/B: a second agent differing only in this, on the same decision points",
    )
