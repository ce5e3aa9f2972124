"""The classic strategies' parameters as CLI flags, shared by `agent-backtest` and
`agent-trade`; light on purpose, so a parser never loads the backtest driver or the agent."""

from __future__ import annotations

import argparse
from typing import Any

from backtest.strategies import STRATEGIES


def param_flags() -> dict[str, tuple[Any, str, list[str]]]:
    """Every strategy parameter as one CLI flag: its type, help and the strategies using it."""
    flags: dict[str, tuple[Any, str, list[str]]] = {}
    for name, cls in STRATEGIES.items():
        for field, info in cls.Params.model_fields.items():
            kind, _, users = flags.get(field, (info.annotation, info.description or "", []))
            users.append(name)
            flags[field] = (kind, info.description or "", users)
    return flags


def add_param_args(group: argparse._ArgumentGroup) -> None:
    for field, (kind, text, users) in param_flags().items():
        group.add_argument(
            f"--{field.replace('_', '-')}", type=kind, help=f"{text} ({', '.join(users)})"
        )
