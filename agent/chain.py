"""The decision graph stepped in process: the same nodes, routes and state reducers as
`agent.graph.build_graph`, without LangGraph's scheduler, checkpointer or interrupts. An unattended
decision (backtest, trading loop) needs none of those, and importing LangGraph costs a short
backtest most of its start-up. tests/test_decision_chain.py pins that both give the same state and
decision record; a chat, which pauses for approval, keeps the compiled graph."""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from agent.graph import EDGES, FIRST, LAST, NODES, ROUTES, AgentDeps, AgentState

RECURSION_LIMIT = 25  # LangGraph's default bound on steps per invoke


@dataclass(frozen=True)
class _Runtime:
    context: AgentDeps


@cache
def _reducers() -> dict[str, Callable[[Any, Any], Any]]:
    """The state keys annotated with a reducer (messages: appended); every other key is
    overwritten, as LangGraph's channels do."""
    hints = typing.get_type_hints(AgentState, include_extras=True)
    return {
        key: hint.__metadata__[0]
        for key, hint in hints.items()
        if typing.get_origin(hint) is typing.Annotated
    }


class DecisionChain:
    """`invoke(turn, context=deps)` like the compiled graph, for runs that never pause."""

    def invoke(self, state: AgentState, *, context: AgentDeps) -> AgentState:
        if context.require_approval:
            raise ValueError("an approval pauses the run: use agent.graph.build_graph")
        runtime = _Runtime(context)
        reducers = _reducers()
        values: dict[str, Any] = {}
        _apply(values, dict(state), reducers)
        node = FIRST
        for _ in range(RECURSION_LIMIT):
            _apply(values, _call(NODES[node], values, runtime), reducers)
            if node == LAST:
                return typing.cast(AgentState, values)
            node = _next(node, values, runtime)
        raise RecursionError(f"no end after {RECURSION_LIMIT} steps")


def _apply(
    values: dict[str, Any], update: dict[str, Any], reducers: dict[str, Callable[[Any, Any], Any]]
) -> None:
    for key, value in update.items():
        reduce = reducers.get(key)
        values[key] = reduce(values[key], value) if reduce and key in values else value


def _call(node: Callable[..., dict[str, Any]], values: dict[str, Any], runtime: _Runtime) -> Any:
    state = dict(values)  # a node sees the state as of its step, as under LangGraph
    if node.__code__.co_argcount > 1:
        return node(state, runtime)
    return node(state)


def _next(node: str, values: dict[str, Any], runtime: _Runtime) -> str:
    if node in EDGES:
        return EDGES[node]
    route, targets = ROUTES[node]
    target = _call(route, values, runtime)
    if target not in targets:
        raise ValueError(f"route from {node} to unknown node {target!r}")
    return target
