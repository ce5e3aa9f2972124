"""The agent as a LangGraph StateGraph: model ↔ tools, bounded, then the risk gate, one approval
interrupt before anything spends money, the executor, and a decision record on every path.

The state is JSON-like (plain dicts and lists) so a checkpointer can keep a chat thread or an
approval across a restart; the model, tools, gate and executor are injected per run as context.
The topology is data (`NODES`, `ROUTES`, `EDGES`): LangGraph compiles it here, and
`agent.chain` steps the same nodes in process where no checkpoint or interrupt is needed, so a
backtest never imports LangGraph (0.8 s of start-up)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, TypedDict

from pydantic import ValidationError

from agent.in_flight import Turns
from agent.llm import LLMError
from agent.model import ChatModel
from agent.records import DecisionRecord, LLMCallRecord, Outcome, ToolCallRecord
from agent.reply import CONTENT_CALL_PREFIX, read_content
from agent.structured import signal_response_format
from config.settings import DecisionFormat
from risk.approval import UnapprovedOrderError, verify_approved
from risk.models import Approved, ApprovedOrder, TradeSignal, Verdict
from tools import PLACE_ORDER, SUBMIT_SIGNAL, ToolEnv, ToolError, ToolRegistry
from tools.trading import SignalIn, TradeIdea, to_signal

DEFAULT_MAX_STEPS = 6
NUDGE = "Call submit_signal now with your decision (hold if unsure)."
NUDGEABLE = frozenset({"prose", "echo", "empty"})  # one more ask may get a signal; not bad JSON

Mode = Literal["decide", "chat"]


class Gatekeeper(Protocol):
    """The caller's risk gate: it holds the account, the market view and the risk state."""

    def review(self, signal: TradeSignal) -> Verdict: ...

    def preview(self, signal: TradeSignal) -> Verdict: ...

    def llm_result(self, ok: bool) -> None: ...


class OrderSink(Protocol):
    """An executor behind the gate; it accepts only an ApprovedOrder the gate sealed."""

    def execute(self, order: ApprovedOrder) -> dict[str, Any]: ...


@dataclass
class AgentDeps:
    """Everything a run injects; `gate=None` ends at the signal (a backtest engine gates it)."""

    model: ChatModel
    tools: ToolRegistry
    env: ToolEnv
    system_prompt: str
    prompt_version: str
    run_id: str
    gate: Gatekeeper | None = None
    executor: OrderSink | None = None
    recorder: Callable[[DecisionRecord], None] | None = None
    require_approval: bool = False
    max_steps: int = DEFAULT_MAX_STEPS
    turns: Turns | None = None  # a run's limit on requests on the wire, as this decision's


class NodeRuntime(Protocol):
    """What a node reads of its run: LangGraph's Runtime and agent.chain's both carry the deps."""

    @property
    def context(self) -> AgentDeps: ...


class AgentState(TypedDict, total=False):
    decision_id: str
    mode: Mode
    symbol: str
    decided_ms: int
    messages: Annotated[list[dict[str, Any]], operator.add]
    steps: int
    nudged: bool
    inputs_sha256: str
    llm_calls: list[dict[str, Any]]
    tool_calls: list[dict[str, Any]]
    signal: dict[str, Any] | None
    proposal: dict[str, Any] | None
    verdict: dict[str, Any] | None
    order: dict[str, Any] | None
    approval: dict[str, Any] | None
    execution: dict[str, Any] | None
    abstain: dict[str, Any] | None
    answer: str | None
    record: dict[str, Any] | None


def new_turn(
    decision_id: str, mode: Mode, symbol: str, decided_ms: int, user_text: str
) -> AgentState:
    """The input of one decision or chat turn; per-turn fields are reset, history is kept."""
    return AgentState(
        decision_id=decision_id,
        mode=mode,
        symbol=symbol,
        decided_ms=decided_ms,
        messages=[{"role": "user", "content": user_text}],
        steps=0,
        nudged=False,
        inputs_sha256="",
        llm_calls=[],
        tool_calls=[],
        signal=None,
        proposal=None,
        verdict=None,
        order=None,
        approval=None,
        execution=None,
        abstain=None,
        answer=None,
        record=None,
    )


# -- nodes --------------------------------------------------------------------------------------


def agent_node(state: AgentState, runtime: NodeRuntime) -> dict[str, Any]:
    deps = runtime.context
    steps = state.get("steps", 0)
    if steps >= deps.max_steps:
        return {
            "abstain": {
                "cause": "max_steps",
                "message": f"no decision after {steps} model calls (max_steps={deps.max_steps})",
            }
        }
    update: dict[str, Any] = {"steps": steps + 1}
    try:  # the request's shape may probe the endpoint first (llm.decision_format=probe)
        messages, schemas, options = model_request(
            deps, state["mode"], state["symbol"], state["messages"]
        )
        form = _form(deps, state["mode"])
        key = deps.model.cache_key(messages, schemas, deps.prompt_version, options)
        if not state.get("inputs_sha256"):
            update["inputs_sha256"] = key
        response = deps.model.complete(
            messages,
            schemas,
            prompt_version=deps.prompt_version,
            options=options,
            turns=deps.turns,
        )
    except LLMError as exc:
        if deps.gate is not None:
            deps.gate.llm_result(False)
        update["abstain"] = {
            "cause": exc.cause,
            "message": exc.message,
            "status": exc.status,
            "attempts": exc.attempts,
        }
        return update
    call = LLMCallRecord(
        cache_key=key,
        model=response.model,
        cached=response.cached,
        prompt_tokens=response.usage.prompt_tokens,
        completion_tokens=response.usage.completion_tokens,
        latency_ms=round(response.latency_ms, 3),
        cost_usd=response.cost_usd,
        finish_reason=response.finish_reason,
    )
    update["llm_calls"] = [*state.get("llm_calls", []), call.model_dump()]
    reply = response.message.to_wire()
    if response.message.tool_calls:
        update["messages"] = [reply]
        return update
    if state["mode"] == "chat":
        update["messages"] = [reply]
        update["answer"] = response.message.content or ""
        return update
    found = read_content(
        response.message.content, deps.tools, messages, signal_only=form == "json_schema"
    )
    if isinstance(found, list):
        update["messages"] = [response.message.model_copy(update={"tool_calls": found}).to_wire()]
    elif form == "tools" and found.cause in NUDGEABLE and not state.get("nudged"):
        update["messages"] = [reply, {"role": "user", "content": NUDGE}]
        update["nudged"] = True
    else:
        update["messages"] = [reply]
        update["abstain"] = found.model_dump()
    return update


def model_request(
    deps: AgentDeps, mode: Mode, symbol: str, turns: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, dict[str, Any]]:
    """The messages, tools and extra request fields of the model call that follows `turns`."""
    schemas, options = request_shape(_form(deps, mode), deps.tools, symbol)
    return [{"role": "system", "content": deps.system_prompt}, *turns], schemas, options


def _form(deps: AgentDeps, mode: Mode) -> DecisionFormat:
    """A decision asks in the run's decision format; a chat always offers its tools."""
    return deps.model.decision_format if mode == "decide" else "tools"


def request_shape(
    form: DecisionFormat, tools: ToolRegistry, symbol: str
) -> tuple[list[dict[str, Any]] | None, dict[str, Any]]:
    """The tools and extra request fields for a decision format: json_schema asks for
    submit_signal's arguments as the whole reply (the snapshot is in the prompt, so no tool is
    needed) about the decision's symbol; required forces some tool call; tools leaves the
    choice to the model."""
    if form == "json_schema":
        return None, signal_response_format(tools, [symbol])
    schemas = tools.schemas()
    return schemas, ({"tool_choice": "required"} if form == "required" else {})


def tools_node(state: AgentState, runtime: NodeRuntime) -> dict[str, Any]:
    deps = runtime.context
    calls = state["messages"][-1].get("tool_calls") or []
    replies, records = [], list(state.get("tool_calls", []))
    update: dict[str, Any] = {}
    for call in calls:
        function = call["function"]
        name, arguments = function["name"], function["arguments"]
        taken = update.get("proposal" if name == PLACE_ORDER else "signal")
        if name in (PLACE_ORDER, SUBMIT_SIGNAL) and taken is not None:
            # The graph carries one order to the gate and the person: a second is refused to
            # the model, never answered "proposed" and dropped.
            what = "order per message" if name == PLACE_ORDER else "signal per decision"
            why = (
                f"not taken: one {what}; the first ({taken['action']} {taken['symbol']}) goes "
                "to the gate first, propose this one after it is decided"
            )
            outcome = deps.tools.declined(call["id"], name, arguments, why)
        else:
            outcome = deps.tools.call(deps.env, call["id"], name, arguments)
        replies.append(outcome.to_wire())
        records.append(
            ToolCallRecord(
                name=outcome.name,
                arguments=outcome.arguments,
                ok=outcome.ok,
                error=outcome.error,
                duration_ms=round(outcome.duration_ms, 3),
            ).model_dump()
        )
        if not outcome.ok and call["id"].startswith(CONTENT_CALL_PREFIX):
            # A call read out of the text is not argued with: one reply, judged as it stands.
            update.setdefault("abstain", {"cause": "bad_arguments", "message": outcome.error})
        if outcome.ok and outcome.name == SUBMIT_SIGNAL:
            signal = SignalIn.model_validate_json(outcome.arguments).model_dump()
            if state["mode"] == "decide" and signal["symbol"] != state["symbol"]:
                update.setdefault("abstain", _other_symbol(state["symbol"], signal))
            else:
                update["signal"] = signal
        if outcome.ok and outcome.name == PLACE_ORDER:
            update["proposal"] = TradeIdea.model_validate_json(outcome.arguments).model_dump()
    update["messages"] = replies
    update["tool_calls"] = records
    return update


def _other_symbol(symbol: str, signal: dict[str, Any]) -> dict[str, Any]:
    """An unattended decision is about one symbol; a signal for another is not traded."""
    return {
        "cause": "wrong_symbol",
        "message": f"the decision was about {symbol} but the model signalled "
        f"{signal['action']} {signal['symbol']}; not traded",
    }


def risk_node(state: AgentState, runtime: NodeRuntime) -> dict[str, Any]:
    """The gate's verdict on the model's proposal. One a person must approve is a preview: it
    counts towards nothing until the person says yes (`execute_node` judges it again)."""
    deps = runtime.context
    update = _judged(state, deps, counted=not deps.require_approval)
    assert deps.gate is not None
    deps.gate.llm_result(True)  # after the verdict: the answer that ends safe mode is judged in it
    return update


def _judged(state: AgentState, deps: AgentDeps, *, counted: bool) -> dict[str, Any]:
    """The state's signal through the gate as of now: `counted` moves the risk state (the
    order is about to be sent), else the verdict is a preview."""
    gate = deps.gate
    assert gate is not None  # routed here only with a gate
    idea = state.get("proposal") or state.get("signal")
    try:
        signal = to_signal(deps.env, TradeIdea.model_validate(idea))
    except (ToolError, ValidationError) as exc:
        return {"abstain": {"cause": "bad_signal", "message": str(exc)}}
    verdict = gate.review(signal) if counted else gate.preview(signal)
    update: dict[str, Any] = {"verdict": verdict.model_dump(mode="json"), "order": None}
    if isinstance(verdict, Approved):
        update["order"] = verdict.order.model_dump(mode="json")
    return update


def approval_node(state: AgentState) -> dict[str, Any]:
    """The one place a person says yes or no; re-run from the top on resume, so no side effect
    happens before `interrupt`."""
    from langgraph.types import interrupt

    answer = interrupt(
        {"kind": "approve_order", "order": state["order"], "verdict": state["verdict"]}
    )
    approved = bool(answer.get("approved")) if isinstance(answer, dict) else bool(answer)
    by = answer.get("by", "user") if isinstance(answer, dict) else "user"
    return {"approval": {"approved": approved, "by": by}}


def execute_node(state: AgentState, runtime: NodeRuntime) -> dict[str, Any]:
    """Send the approved order. A person's yes is judged again, as of now and counted: it can
    come long after the preview (a halt, a price move, the rate limits since then), or from an
    earlier process whose seal no longer verifies. The order never grows past what the person
    approved."""
    deps = runtime.context
    assert deps.executor is not None and deps.gate is not None
    order = ApprovedOrder.model_validate(state["order"])
    if not deps.require_approval and _sealed(order):
        return {"execution": deps.executor.execute(order)}
    update = _judged(state, deps, counted=True)
    if update.get("order") is None:
        return update
    fresh = ApprovedOrder.model_validate(update["order"])
    if fresh.quantity > order.quantity:
        message = f"re-checked size {fresh.quantity} exceeds the {order.quantity} approved"
        return {**update, "order": None, "abstain": {"cause": "stale_approval", "message": message}}
    return {**update, "execution": deps.executor.execute(fresh)}


def _sealed(order: ApprovedOrder) -> bool:
    try:
        verify_approved(order)
    except UnapprovedOrderError:
        return False
    return True


def finish_node(state: AgentState, runtime: NodeRuntime) -> dict[str, Any]:
    deps = runtime.context
    outcome = _outcome(state)
    answer = state.get("answer")
    if state["mode"] == "chat" and state.get("proposal") is not None:
        answer = _order_answer(state, outcome)
    record = DecisionRecord(
        decision_id=state["decision_id"],
        run_id=deps.run_id,
        mode=state["mode"],
        symbol=(state.get("proposal") or state.get("signal") or state).get("symbol", ""),
        decided_ms=state["decided_ms"],
        outcome=outcome,
        model=deps.model.model,
        base_url=deps.model.base_url,
        prompt_version=deps.prompt_version,
        inputs_sha256=state.get("inputs_sha256", ""),
        llm_calls=state.get("llm_calls", []),
        tool_calls=state.get("tool_calls", []),
        signal=state.get("signal"),
        verdict=state.get("verdict"),
        order=state.get("order"),
        execution=state.get("execution"),
        approval=state.get("approval"),
        abstain=state.get("abstain"),
        answer=answer,
    )
    if deps.recorder is not None:
        deps.recorder(record)
    update: dict[str, Any] = {"record": record.model_dump(mode="json")}
    if answer != state.get("answer"):
        update["answer"] = answer
        update["messages"] = [{"role": "assistant", "content": answer}]
    return update


def _outcome(state: AgentState) -> Outcome:
    if state.get("abstain") is not None:
        return "abstain"
    approval = state.get("approval")
    if approval is not None and not approval["approved"]:
        return "rejected"
    if state.get("order") is not None:
        return "approved"
    verdict = state.get("verdict")
    if verdict is not None:
        codes = {r["code"] for r in verdict.get("reasons", [])}
        return "hold" if codes == {"HOLD"} else "vetoed"
    signal = state.get("signal")
    if signal is not None:
        return "hold" if signal["action"] == "hold" else "signal"
    return "answered"


def _order_answer(state: AgentState, outcome: Outcome) -> str:
    verdict = state.get("verdict") or {}
    if outcome == "vetoed":
        reasons = "; ".join(f"{r['code']}: {r['message']}" for r in verdict.get("reasons", []))
        return f"The risk gate vetoed the order: {reasons}"
    order = state.get("order") or {}
    what = f"{order.get('side')} {order.get('quantity')} {order.get('symbol')}"
    if outcome == "rejected":
        return f"Order not sent: you rejected {what}."
    if outcome == "abstain":
        return f"No order: {(state.get('abstain') or {}).get('message')}"
    execution = state.get("execution") or {}
    if execution.get("status") == "not_sent_dry_run":
        return f"Approved, dry run: {what} ({order.get('client_order_id')}) was not sent."
    status = f" Executor: {execution.get('status')}." if execution else ""
    return f"Approved and sent: {what} ({order.get('client_order_id')}).{status}"


# -- routing ------------------------------------------------------------------------------------


def _after_agent(state: AgentState) -> str:
    if state.get("abstain") is not None or state.get("answer") is not None:
        return "finish"
    last = state["messages"][-1]
    if last.get("role") == "user":
        return "agent"
    if last.get("tool_calls"):
        return "tools"
    return "finish"


def _after_tools(state: AgentState, runtime: NodeRuntime) -> str:
    if state.get("abstain") is not None:
        return "finish"
    if state.get("signal") is not None or state.get("proposal") is not None:
        return "risk" if runtime.context.gate is not None else "finish"
    return "agent"


def _after_risk(state: AgentState, runtime: NodeRuntime) -> str:
    deps = runtime.context
    if state.get("order") is None:
        return "finish"
    if deps.require_approval:
        return "approval"
    return "execute" if deps.executor is not None else "finish"


def _after_approval(state: AgentState, runtime: NodeRuntime) -> str:
    approved = (state.get("approval") or {}).get("approved")
    return "execute" if approved and runtime.context.executor is not None else "finish"


FIRST = "agent"
LAST = "finish"
NODES: dict[str, Callable[..., dict[str, Any]]] = {
    "agent": agent_node,
    "tools": tools_node,
    "risk": risk_node,
    "approval": approval_node,
    "execute": execute_node,
    "finish": finish_node,
}
ROUTES: dict[str, tuple[Callable[..., str], list[str]]] = {
    "agent": (_after_agent, ["agent", "tools", "finish"]),
    "tools": (_after_tools, ["agent", "risk", "finish"]),
    "risk": (_after_risk, ["approval", "execute", "finish"]),
    "approval": (_after_approval, ["execute", "finish"]),
}
EDGES = {"execute": "finish"}


def build_graph(checkpointer: Any = None) -> Any:
    """Compile the graph; pass a checkpointer for chats and approvals that survive a restart."""
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(AgentState, context_schema=AgentDeps)
    for name, node in NODES.items():
        graph.add_node(name, node)
    graph.add_edge(START, FIRST)
    for name, (route, targets) in ROUTES.items():
        graph.add_conditional_edges(name, route, targets)
    for source, target in EDGES.items():
        graph.add_edge(source, target)
    graph.add_edge(LAST, END)
    return graph.compile(checkpointer=checkpointer)
