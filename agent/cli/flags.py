"""No flag is silently ignored (DESIGN invariant 10): which `agent-backtest` flags the user
actually typed, and one line saying why any of them cannot apply to this run."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from core.errors import UserError

AGENT_ONLY = (
    "decide_every",
    "stateful",
    "concurrency",
    "replay_only",
    "budget_usd",
    "yes",
    "compare",
    "samples",
)
SWEEP_ONLY = ("rank_by", "executor", "workers", "top")
SINGLE_RUN_ONLY = ("html", "check_lookahead")
# What the offline model cannot act on: it sends no request, so nothing is cached or spent,
# and its rules read market data only, so positions in the prompt change no decision.
OFFLINE_IDLE = {
    "replay_only": "the offline model sends no requests, so there is no cache to replay",
    "budget_usd": "the offline model costs nothing, so there is no budget to spend",
    "stateful": "the offline model decides from market data alone, so positions change nothing",
    "concurrency": "the offline model decides one at a time",
}


def finite(text: str) -> float:
    """A number flag's type: argparse's float refusing nan and inf, which a run would carry
    on with (infinite cash, a NaN fee); argparse exits 2 naming the flag and the value."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def non_negative(text: str) -> float:
    """A finite number flag that cannot go below 0: a negative slippage or threshold invents
    an edge the venues never offered."""
    value = finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative: at least 0")
    return value


def positive_int(text: str) -> int:
    """A count flag (--top, --workers): a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is below 1")
    return value


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def given(build_parser: Callable[[], argparse.ArgumentParser], argv: list[str]) -> set[str]:
    """The destinations of the flags present on the command line, whatever their value (so
    `--top 10` counts as given though 10 is the default)."""
    parser = build_parser()
    for action in parser._actions:
        if action.option_strings:  # a positional keeps its default: it is no flag
            action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv))) - {
        a.dest for a in parser._actions if not a.option_strings
    }


def refuse_inapplicable(typed: set[str], strategy: str, sweeping: bool) -> None:
    """Exit 2 with one line for a flag this run would ignore."""
    if strategy != "agent":
        _refuse(typed, AGENT_ONLY, f"only for the LLM agent (--strategy agent), not {strategy}")
    if not sweeping:
        _refuse(typed, SWEEP_ONLY, "only for --sweep")
    else:
        _refuse(typed, SINGLE_RUN_ONLY, "not for --sweep: rerun the row you want without it")
    if "end" in typed and "start" not in typed:
        raise UserError("--end needs --start (or use --days)")
    if strategy == "agent" and {"check_lookahead", "stateful"} <= typed:
        raise UserError(
            "--check-lookahead needs a stateless run: a stateful decision depends on the "
            "positions before it, which a run cut at that time does not rebuild"
        )
    if strategy == "agent" and "size" in typed:
        raise UserError(
            "--size does not apply to the agent: the model sizes each order and the gate "
            "clamps it to the risk limits (docs/risk.md)"
        )


def offline_notices(typed: set[str], samples: int = 1, compare: str | None = None) -> list[str]:
    lines = [
        f"notice: {flag(dest)} has nothing to act on: {why}"
        for dest, why in OFFLINE_IDLE.items()
        if dest in typed
    ]
    if samples > 1:
        lines.append(
            f"notice: --samples {samples}: the offline model is deterministic, so its "
            f"{samples} samples always agree (agreement 1.0); an LLM above temperature 0 may not"
        )
    if compare is not None and compare.startswith("prompt="):
        # A notice, not a refusal: the run and its report stand; only the comparison is idle.
        lines.append(
            f"notice: --compare {compare} compares nothing: the offline model decides by its "
            "rules and never reads the system prompt, so the variant decides as the run does "
            "(100% agreement); an LLM reads it"
        )
    return lines


def _refuse(typed: set[str], dests: tuple[str, ...], why: str) -> None:
    present = [flag(d) for d in dests if d in typed]
    if present:
        raise UserError(f"{', '.join(present)}: {why}")


ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""An account's name becomes a kill-switch file's and a store key: the setting's characters (no
path separator, so no file lands outside the data directory) and a length a file name allows."""


def account_name(text: str) -> str:
    """An --account flag's type: argparse exits 2 naming the flag and what a name may hold."""
    if not ACCOUNT_NAME.fullmatch(text) or not text.strip("."):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an account name: 1 to 64 letters, digits, '_', '.' or '-'"
        )
    return text
