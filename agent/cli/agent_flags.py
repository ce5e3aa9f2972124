"""The agent's flags on `agent-backtest`, apart from the agent itself, so building the parser
(and running a classic strategy) never loads the graph, LangGraph or an LLM client; and the
consent to a paid model's cost, which `agent-trade`'s loop asks too without loading the
backtest's reporting and comparison stack."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from agent.cli.common import notify
from agent.cli.flags import finite
from core.errors import UserError

if TYPE_CHECKING:
    from agent.estimate import PerDecision
    from agent.model import ChatModel
    from config import Settings


def add_agent_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the LLM agent (--strategy agent, the default)")
    group.add_argument(
        "--decide-every",
        type=int,
        help="minutes between decisions (setting trading.decide_every: 15), as agent-trade's",
    )
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
        type=finite,
        help="a ceiling on the spend at llm.prices: stop cleanly before a request's worst case "
        "would pass it; only where those prices apply (llm.prices_host), elsewhere cost is n/a "
        "and this exits 2",
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


def check_cost(
    args: argparse.Namespace,
    model: ChatModel,
    settings: Settings,
    planned: int,
    per_decision: Callable[[], PerDecision],
    period: str = "",
    samples: int = 1,
) -> None:
    """A paid model must not start spending unannounced: show the estimate, require consent.
    `period` names what `planned` covers when it is a rate (" per day" for the trading loop)."""
    if show_estimate(model, settings, planned, per_decision, period, samples):
        require_consent(args, [model])


def show_estimate(
    model: ChatModel,
    settings: Settings,
    planned: int,
    per_decision: Callable[[], PerDecision],
    period: str = "",
    samples: int = 1,
    cached: Callable[[], int] | None = None,
) -> bool:
    """The estimate of one model's part of a run, shown; whether that part may spend money.
    Each decision asks the model `samples` times; `per_decision` is counted only when shown.
    `cached` counts the decisions the cache answers, which cost nothing: left out of the
    estimate, and with none left, nothing to consent to. With spending accepted up front it
    is shown once the first answers are in, so what it imports (SQLAlchemy, for the store's
    past decisions) does not delay the first request."""
    from agent.offline import OfflineModel

    if isinstance(model, OfflineModel) or settings.llm.mode == "replay":
        return False
    answered = 0 if cached is None else cached()
    if answered == planned:
        notify(f"estimate: all {planned:,} answers of {model.model} cached: nothing to spend")
        return False
    from agent.estimate import estimate_line  # SQLAlchemy: only where an estimate is shown

    notify(estimate_line(model, per_decision(), planned - answered, samples, period, answered))
    return True


def require_consent(args: argparse.Namespace, paying: Sequence[ChatModel]) -> None:
    """Refuse a run whose `paying` models may spend money, unless spending was accepted."""
    if paying and not consented(args):
        cap = ", or --budget-usd X to stop cleanly before X USD is spent"
        if any(m.pricing.unknown is not None for m in paying):
            cap = " (its cost is n/a: no USD budget can cap it, llm.max_calls can)"
        raise UserError(f"this run may spend money: pass --yes to accept the estimate{cap}")


def consented(args: argparse.Namespace) -> bool:
    """Spending was accepted up front, whatever the estimate says."""
    return bool(args.yes) or args.budget_usd is not None
