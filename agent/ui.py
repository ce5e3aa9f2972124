"""`agent-ui`: the assistant in a browser. A chat whose tool calls show as steps and whose order
proposals wait for Approve / Reject, a market chart, classic backtests and the trading state.

The chat trades a persisted paper account (agent.chat_desk) on Binance's closed bars, or on the
bundled sample, frozen, when offline; orders pass the risk gate and a person's approval first."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import agent.gradio_env  # noqa: F401  (before Gradio: it prepares Gradio's loading)

# isort: split
import gradio as gr
import pandas as pd
import plotly.graph_objects as go
from gradio import ChatMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command
from plotly.subplots import make_subplots

from agent.alerts import AlertWatch
from agent.chat_desk import ChatDesk
from agent.chat_market import ChatMarket, open_chat_market, other_venues, sample_market
from agent.chat_venue import ChatMode, approving_line, chat_venue, venue_line
from agent.cli import backtest_flags as cli_backtest
from agent.cli.backtest_run import classic_run, warmup_line
from agent.cli.strategy_flags import param_flags
from agent.cli.window import window_of, with_warmup
from agent.decide import decision_prompt_version, system_prompt
from agent.graph import AgentDeps, build_graph, new_turn
from agent.loop_state import (
    CHAT_ACCOUNT,
    CHAT_DESK_SCOPE,
    account_status,
    clear_account,
    halt_account,
    last_interventions,
    loop_report,
)
from agent.model import ChatModel, open_model
from agent.notify import Courier, channels_from
from agent.offline import OfflineModel
from agent.records import load_decisions, save_decisions
from agent.report import DecisionRow, agent_report, agent_run_id, run_stats
from agent.shadow_book import shadow_account, side_by_side_lines, with_shadow
from agent.strategy import AgentParams, AgentStrategy
from agent.trade_ledger import account_ledger
from arbitrage.book_feeds import live_books
from arbitrage.live_books import BackgroundBooks
from backtest import run_backtest
from backtest.config import BacktestConfig
from backtest.data import to_bar_arrays, warmup_arrays
from backtest.html import page
from backtest.report import FillOut, build_report
from backtest.runs import save_run
from backtest.scorecard_view import ledger_columns, ledger_rows
from backtest.strategies import STRATEGIES
from backtest.sweep import SweepData
from backtest.terminal import TRADE_COLUMNS, basis_lines, metric_cell, trade_cells
from config import Settings
from core.clock import Clock, SystemClock
from core.errors import ConfigError, UserError
from execution.paper_records import accounts, load_account, load_equity
from market.indicators import compute_indicators
from market.models import iso_ms, parse_symbol
from risk.interventions import Action, Intervention, describe, intervene
from risk.limits_text import limit_lines
from risk.models import SignalSource
from store import Store
from tools import MarketData, ToolEnv, chat_tools

log = logging.getLogger(__name__)

CHAT_RUN_ID = "ui-chat"
RISK_SCOPE = CHAT_DESK_SCOPE
INTERVALS = {"1m": None, "5m": "5min", "15m": "15min", "1h": "1h"}
RANGES = {"6 hours": 0.25, "1 day": 1.0, "3 days": 3.0}
MAX_SHOWN = 1_500  # characters of a tool result shown in a step
CLASSIC, AGENT = "classic strategy", "LLM agent"
LOOP_ACCOUNT, CHAT_DESK = "the selected loop account", "the chat desk"
CLEAR_ACTIONS: dict[str, Action] = {
    "the halt and kill switch": "resume",
    "the drawdown lock": "reset_drawdown",
}


# -- the chat -------------------------------------------------------------------------------


@dataclass
class ChatService:
    """One model, one checkpoint file and the chat's paper account (agent.chat_desk), whose
    clock is the decision time of every turn; the risk state is re-read per turn, so a kill
    switch pulled in the Trading tab applies to the next message at once."""

    store: Store
    model: ChatModel
    market: MarketData
    checkpoints: Path
    desk: ChatDesk
    source: ChatMarket
    settings: Settings
    books: BackgroundBooks | None = None  # both venues' live books, followed until close()

    def __post_init__(self) -> None:
        self._conn = sqlite3.connect(self.checkpoints, check_same_thread=False)
        self.graph = build_graph(SqliteSaver(self._conn))

    def close(self) -> None:
        if self.books is not None:
            self.books.stop()
        self._conn.close()

    @property
    def now_ms(self) -> int:
        return self.desk.now_ms

    def refresh(self) -> int:
        """Live data: the bars that closed since the last look are fetched and stepped (their
        opens fill what waits). The frozen sample moves only with approvals. Returns bars."""
        if self.source.refresh is None:
            return 0
        frames = self.source.refresh()
        self.market = self.source.market(frames)
        return self.desk.refresh(frames)

    def deps(self, decision_id: str) -> AgentDeps:
        desk = self.desk
        desk.reload_risk()
        env = ToolEnv(
            market=self.market,
            now_ms=desk.now_ms,
            rules=desk.rules,
            portfolio=desk.portfolio,
            limits=desk.risk.limits,
            risk_state=lambda: desk.risk.state,
            decision_id=decision_id,
            cancel=desk.cancel,
            view=desk.view,
            account=desk.book,
            loops=lambda account: loop_report(self.store, self.settings, account, desk.account),
            venue_books=self.books.venue_books if self.books else None,
            backtest=settings_backtest(self.settings, self.market.interval),
        )
        return AgentDeps(
            model=self.model,
            tools=chat_tools(),
            env=env,
            system_prompt=system_prompt(),
            prompt_version=decision_prompt_version(),
            run_id=CHAT_RUN_ID,
            gate=desk,
            executor=desk,
            recorder=lambda record: save_decisions(self.store, [record]),
            require_approval=True,
        )

    @staticmethod
    def config(thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}}

    def snapshot(self, thread_id: str) -> Any:
        return self.graph.get_state(self.config(thread_id))

    def pending(self, thread_id: str) -> dict[str, Any] | None:
        interrupts = self.snapshot(thread_id).interrupts
        return interrupts[0].value if interrupts else None

    def send(self, thread_id: str, text: str) -> Iterator[tuple[str, Any]]:
        decision_id = f"{thread_id}:{uuid.uuid4().hex[:8]}"
        turn = new_turn(decision_id, "chat", "BTCUSDT", self.now_ms, text)
        yield from self._stream(turn, thread_id, decision_id)

    def resume(self, thread_id: str, approved: bool, by: str) -> Iterator[tuple[str, Any]]:
        decision_id = self.snapshot(thread_id).values.get("decision_id", "")
        answer = Command(resume={"approved": approved, "by": by})
        yield from self._stream(answer, thread_id, decision_id)

    def _stream(self, data: Any, thread_id: str, decision_id: str) -> Iterator[tuple[str, Any]]:
        deps = self.deps(decision_id)
        stream = self.graph.stream(
            data, self.config(thread_id), context=deps, stream_mode="updates"
        )
        for chunk in stream:
            yield from chunk.items()


def _pretty(raw: Any) -> str:
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
        text = json.dumps(value, indent=1, ensure_ascii=False)
    except (TypeError, ValueError):
        text = str(raw)
    if len(text) > MAX_SHOWN:
        text = text[:MAX_SHOWN] + "\n… (truncated)"
    return text


def _step(name: str, arguments: str, status: str = "pending") -> ChatMessage:
    return ChatMessage(
        role="assistant",
        content=f"**arguments**\n```json\n{_pretty(arguments)}\n```",
        metadata={"title": f"🔧 {name}", "status": status},
    )


def _finish_step(step: ChatMessage, result: str, ok: bool, seconds: float) -> None:
    label = "result" if ok else "error"
    step.content = f"{step.content}\n**{label}**\n```json\n{_pretty(result)}\n```"
    step.metadata = {**step.metadata, "status": "done", "duration": round(seconds, 4)}


def apply_update(history: list[Any], node: str, update: Any, open_steps: dict[str, Any]) -> None:
    """Turn one graph node's update into chat messages: tool calls become steps, tool results
    fill them in, the final answer becomes the assistant's reply."""
    if not isinstance(update, dict):
        return
    if node == "agent":
        for message in update.get("messages", []):
            for call in message.get("tool_calls") or []:
                step = _step(call["function"]["name"], call["function"]["arguments"])
                open_steps[call["id"]] = step
                history.append(step)
            if message.get("content") and message.get("tool_calls"):
                history.append(ChatMessage(role="assistant", content=message["content"]))
        if update.get("answer"):
            history.append(ChatMessage(role="assistant", content=update["answer"]))
    elif node == "tools":
        replies = update.get("messages", [])
        records = update.get("tool_calls", [])[-len(replies) :] if replies else []
        for reply, record in zip(replies, records, strict=False):
            step = open_steps.pop(reply.get("tool_call_id", ""), None)
            if step is not None:
                seconds = float(record.get("duration_ms", 0.0)) / 1000
                _finish_step(step, reply.get("content", ""), bool(record.get("ok")), seconds)
    elif node == "execute" and update.get("execution"):
        history.append(ChatMessage(role="assistant", content=execution_text(update["execution"])))
    if node in ("finish", "execute") and update.get("messages"):
        for message in update["messages"]:
            history.append(ChatMessage(role="assistant", content=message.get("content") or ""))
    if node == "finish" and update.get("record"):
        record = update["record"]
        if record.get("outcome") in ("approved", "rejected", "vetoed", "abstain"):
            note = f"Recorded decision `{record['decision_id']}`: **{record['outcome']}**"
            if record.get("approval"):
                note += f" (by {record['approval'].get('by')})"
            history.append(ChatMessage(role="assistant", content=note))


def execution_text(execution: dict[str, Any]) -> str:
    """What the paper venue did with an approved order: its fills, or why it waits."""
    what = f"{execution.get('side')} {execution.get('quantity')} {execution.get('symbol')}"
    fills = execution.get("fills") or []
    if not fills:
        why = execution.get("note") or "it fills at the next bar's open"
        return f"Paper venue: {what} is {execution.get('status')}; {why}."
    done = "; ".join(
        f"{f['quantity']:g} at {f['price']:,.2f} (fee {f['fee_usdt']:,.4f} USDT, {f['time']} UTC)"
        for f in fills
    )
    return f"Paper venue: {what} {execution.get('status')}: {done}."


def history_from_messages(messages: list[dict[str, Any]]) -> list[Any]:
    """A thread from the checkpoint as chat messages, so a resumed thread reads as it did."""
    history: list[Any] = []
    steps: dict[str, ChatMessage] = {}
    for message in messages:
        role = message.get("role")
        if role == "user":
            history.append(ChatMessage(role="user", content=message.get("content") or ""))
        elif role == "assistant":
            for call in message.get("tool_calls") or []:
                steps[call["id"]] = _step(call["function"]["name"], call["function"]["arguments"])
                history.append(steps[call["id"]])
            if message.get("content"):
                history.append(ChatMessage(role="assistant", content=message["content"]))
        elif role == "tool":
            step = steps.pop(message.get("tool_call_id", ""), None)
            if step is not None:
                ok = '"error"' not in str(message.get("content", ""))[:20]
                _finish_step(step, message.get("content", ""), ok, 0.0)
    return history


def proposal_markdown(pending: dict[str, Any], desk: ChatDesk) -> str:
    """What a trader needs to judge an order: its value and share of equity, how far its stop
    and target are (in % and ATR), and which limits shaped it."""
    order, verdict = pending.get("order") or {}, pending.get("verdict") or {}
    symbol = str(order.get("symbol"))
    market, equity = desk.view(symbol), desk.portfolio().equity
    price = float(order.get("limit_price") or market.last_price)
    value = float(order.get("quantity") or 0) * price
    lines = [
        "### Order proposal: waiting for your approval",
        f"**{str(order.get('side', '')).upper()} {order.get('quantity')} {symbol}**"
        f" ({order.get('order_type')}) ≈ **{value:,.2f} USDT**, "
        f"**{value / equity:.1%} of equity** ({equity:,.2f} USDT), priced at {price:,.2f}",
        "",
        "| field | value |",
        "|---|---|",
    ]
    for name in ("stop_loss", "take_profit"):
        if order.get(name) is not None:
            lines.append(f"| {name} | {_distance(float(order[name]), price, market.atr)} |")
    for name in ("limit_price", "source", "client_order_id"):
        if order.get(name) is not None:
            lines.append(f"| {name} | {order[name]} |")
    lines.append("")
    lines.append(f"**Risk verdict: {verdict.get('kind', '?')}**")
    reasons = verdict.get("adjustments") or verdict.get("reasons") or []
    if reasons:
        lines.append("Limits that shaped it:")
        lines += [f"- `{r.get('code')}`: {r.get('message')}" for r in reasons]
    else:
        lines.append("- no limit changed it: within every limit")
    lines.append(f"\n*{approving_line(desk.mode, desk.account)}*")
    return "\n".join(lines)


def _distance(level: float, price: float, atr: float | None) -> str:
    pct = (level / price - 1) * 100
    atrs = f", {abs(level - price) / atr:.1f} ATR" if atr else ""
    return f"{level:,.2f} ({pct:+.2f}%{atrs})"


# -- the market chart ------------------------------------------------------------------------


def resample(frame: pd.DataFrame, interval: str) -> pd.DataFrame:
    """1m bars to 5m/15m/1h; a bucket's open is its first open, its close its last close."""
    if interval not in INTERVALS:
        raise UserError(f"unknown interval {interval!r}: choose one of {', '.join(INTERVALS)}")
    frame = frame.copy()
    frame["time"] = pd.to_datetime(frame["open_time"], unit="ms", utc=True)
    rule = INTERVALS[interval]
    if rule is None:
        return frame.reset_index(drop=True)
    agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    out = frame.set_index("time")[list(agg)].resample(rule).agg(agg).dropna(subset=["close"])
    return out.reset_index()


def market_figure(
    frames: dict[str, pd.DataFrame], symbol: str, interval: str, span: str, overlays: list[str]
) -> go.Figure:
    symbol = _known_symbol(symbol, frames)
    bars = resample(frames[symbol], interval)
    ind = compute_indicators(bars)
    days = RANGES.get(span)
    if days is None:
        raise UserError(f"unknown range {span!r}: choose one of {', '.join(RANGES)}")
    shown = bars["time"] > bars["time"].iloc[-1] - pd.Timedelta(days=days)
    bars, ind = bars[shown], ind[shown]
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.04
    )
    fig.add_trace(
        go.Candlestick(
            x=bars["time"],
            open=bars["open"],
            high=bars["high"],
            low=bars["low"],
            close=bars["close"],
            name=symbol,
        ),
        row=1,
        col=1,
    )
    columns = {
        "SMA": ["sma_20", "sma_50"],
        "EMA": ["ema_12", "ema_26"],
        "Bollinger": ["bb_upper", "bb_middle", "bb_lower"],
    }
    for overlay in overlays or []:
        for column in columns.get(overlay, []):
            fig.add_trace(
                go.Scatter(x=bars["time"], y=ind[column], name=column, line={"width": 1}),
                row=1,
                col=1,
            )
    fig.add_trace(go.Scatter(x=bars["time"], y=ind["rsi_14"], name="rsi_14"), row=2, col=1)
    for level in (30, 70):
        fig.add_hline(y=level, line_dash="dot", line_color="grey", row=2, col=1)
    fig.update_layout(
        title=f"{symbol} {interval} (bundled sample)",
        height=620,
        xaxis_rangeslider_visible=False,
        margin={"l": 40, "r": 20, "t": 50, "b": 30},
    )
    fig.update_yaxes(title_text="RSI", range=[0, 100], row=2, col=1)
    return fig


def _known_symbol(raw: str, frames: dict[str, Any]) -> str:
    symbol = parse_symbol((raw or "").strip())
    if symbol not in frames:
        raise UserError(f"no data for {symbol}: this page has {', '.join(frames)}")
    return symbol


# -- backtests -------------------------------------------------------------------------------


def parse_params(text: str) -> dict[str, str]:
    """`fast=20, slow=60` (or blank for the defaults) to a name → raw value map."""
    params: dict[str, str] = {}
    for part in (text or "").replace(";", ",").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UserError(f"invalid parameter {part.strip()!r}: write name=value, e.g. fast=20")
        params[name.strip().replace("-", "_")] = value.strip()
    return params


def default_params(strategy: str) -> str:
    cls = STRATEGIES.get(strategy)
    if cls is None:
        return ""
    return ", ".join(f"{k}={v}" for k, v in cls.Params().model_dump().items())


@dataclass
class BacktestOutcome:
    metrics: pd.DataFrame
    trades: pd.DataFrame
    figure: go.Figure
    json_path: Path
    html_path: Path
    run_id: int
    notes: list[str]
    decisions: pd.DataFrame


def settings_backtest(settings: Settings, interval: str) -> BacktestConfig:
    """agent-backtest's config with no flag given: the account and fills of backtest.*."""
    return cli_backtest._config(
        cli_backtest.build_parser().parse_args([]), interval, settings.backtest
    )


def run_classic_backtest(
    store: Store,
    settings: Settings,
    frames: dict[str, pd.DataFrame],
    out_dir: Path,
    strategy: str,
    symbol: str,
    days: float,
    params_text: str,
    size: str = "all",
) -> BacktestOutcome:
    """The CLI's helpers with the UI's inputs: the same strategy checks, config and rules."""
    args = cli_backtest.build_parser().parse_args([])
    args.strategy, args.size = strategy, size
    flags = param_flags()
    for name, raw in parse_params(params_text).items():
        if name not in flags:
            raise UserError(
                f"unknown parameter {name!r}: {strategy} takes {default_params(strategy)}"
            )
        kind = flags[name][0]
        try:
            setattr(args, name, kind(raw))
        except (TypeError, ValueError):
            raise UserError(f"invalid {name}={raw!r}: expected {kind.__name__}") from None
    cls, params = cli_backtest._strategy_params(args)
    instance = cli_backtest._build_strategy(cls, params)
    config = cli_backtest._config(args, "1m", settings.backtest)
    notes: list[str] = []
    data, _ = _data(frames, symbol, days, notes)
    result = classic_run(instance, data, config, settings.risk, notes.append)
    report = build_report(result, notes, data.rules)
    return _outcome(store, out_dir, cls.name, report, result, notes, page(report, result))


def _data(
    frames: dict[str, pd.DataFrame], symbol: str, days: Any, notes: list[str]
) -> tuple[SweepData, dict[str, pd.DataFrame]]:
    """The last `days` of each chosen symbol with the warm-up before them, as agent-backtest
    runs a window; and the frames an agent's tools read (the warm-up, then the window)."""
    window, warm = _window(frames, symbol, days)
    bars, _dropped = to_bar_arrays(window)
    warmup = warmup_arrays(warm)
    if warmup is not None:
        notes.append(warmup_line(warmup))
    data = SweepData(bars, cli_backtest._rules(list(window), notes), warmup=warmup)
    return data, window if warmup is None else with_warmup(window, warm)


def _window(
    frames: dict[str, pd.DataFrame], symbol: str, days: Any
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """The last `days` of each chosen symbol and the warm-up before them, or a UserError naming
    the bad input."""
    try:
        days = float(days)
    except (TypeError, ValueError):
        raise UserError(f"invalid days {days!r}: a number of days, e.g. 1") from None
    if not days > 0:
        raise UserError(f"invalid days {days:g}: must be greater than 0")
    symbols = [_known_symbol(s, frames) for s in (symbol or "").split(",") if s.strip()]
    if not symbols:
        raise UserError("give a symbol, e.g. BTCUSDT")
    both = {s: window_of(frames[s], {"days": days}) for s in symbols}
    return {s: w for s, (w, _) in both.items()}, {s: warm for s, (_, warm) in both.items()}


def _outcome(
    store: Store,
    out_dir: Path,
    name: str,
    report: Any,
    result: Any,
    notes: list[str],
    html: str,
    decisions: pd.DataFrame | None = None,
) -> BacktestOutcome:
    """Save the run, write its JSON and HTML for download, and shape it for the page."""
    run_id = save_run(store, report, SystemClock().now_ms())
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"backtest-{run_id}-{name}-{'_'.join(result.bars.symbols)}"
    json_path, html_path = out_dir / f"{stem}.json", out_dir / f"{stem}.html"
    json_path.write_text(report.to_json())
    html_path.write_text(html)
    basis = report.annualisation
    metrics = pd.DataFrame(
        [{"metric": k, "value": metric_cell(k, v, basis)} for k, v in report.metrics.items()]
        + [{"metric": "annualisation", "value": line} for line in basis_lines(basis)],
        columns=["metric", "value"],
    )
    trades = pd.DataFrame(trade_cells(report), columns=list(TRADE_COLUMNS))
    if decisions is None:
        decisions = pd.DataFrame(columns=list(DecisionRow.model_fields))
    return BacktestOutcome(
        metrics, trades, equity_figure(report), json_path, html_path, run_id, notes, decisions
    )


def run_agent_backtest(
    store: Store,
    settings: Settings,
    model: ChatModel,
    frames: dict[str, pd.DataFrame],
    out_dir: Path,
    symbol: str,
    days: float,
    decide_every: Any,
    on_decision: Callable[[int, int], None] = lambda done, planned: None,
) -> BacktestOutcome:
    """agent-backtest with the UI's inputs: the same strategy, engine, report and store."""
    try:
        params = AgentParams(decide_every=int(decide_every))
    except (TypeError, ValueError):
        raise UserError(
            f"invalid decide every {decide_every!r}: whole minutes from 1 to 1440"
        ) from None
    paid = not isinstance(model, OfflineModel) and settings.llm.mode != "replay"
    llm = settings.llm
    if (
        paid
        and model.pricing.unknown is not None
        and llm.max_calls is None
        and llm.max_tokens is None
    ):
        raise UserError(
            f"an agent backtest on {model.model} may spend money and its cost is n/a "
            f"({model.pricing.unknown}), so a USD budget cannot cap it: set a call or token "
            "budget (AGENT_LLM__MAX_CALLS or AGENT_LLM__MAX_TOKENS) before starting agent-ui, "
            "or use agent-backtest --yes"
        )
    if paid and model.pricing.unknown is None and llm.max_usd is None:
        raise UserError(
            f"an agent backtest on {model.model} may spend money: set a budget "
            "(AGENT_LLM__MAX_USD) before starting agent-ui, or use agent-backtest --yes"
        )
    notes: list[str] = []
    data, read = _data(frames, symbol, days, notes)
    config = settings_backtest(settings, "1m")
    # a model of the run's own, on the session's budget: the chat's calls meanwhile are not its
    with contextlib.closing(model.for_run()) as own:
        strategy = AgentStrategy(
            params,
            model=own,
            market=MarketData(read, "1m"),
            close_time=data.bars.close_time,
            rules=dict(data.rules),
            cash=config.cash,
            run_id="",
            limits=settings.risk,
        )
        strategy.run_id = agent_run_id(own, data, params, strategy.prompt_version)
        planned = strategy.planned()
        if planned == 0:
            raise UserError(
                f"no decision bars: {days} days is shorter than the warm-up of {strategy.warmup_left} "
                f"bars plus one decision interval ({params.decide_every} min)"
            )
        done = 0

        def decided(_: Any) -> None:
            nonlocal done
            done += 1
            on_decision(done, planned)

        strategy.on_decision = decided
        result = run_backtest(
            data.bars, strategy, data.rules, config, limits=strategy.limits, warmup=data.warmup
        )
        if strategy.stopped == "cache_miss":
            raise UserError("replay mode: an answer is missing from the cache; nothing was sent")
        report, records, section = agent_report(
            strategy,
            result,
            own,
            data.rules,
            config,
            notes,
            horizons_min=settings.scorecard.ledger_minutes,
        )
        save_decisions(store, records)
        shown = {**report.agent, "run": run_stats(own.stats).facts()}
        html = page(report.model_copy(update={"agent": shown}), result)
        log_rows = pd.DataFrame(
            [row.model_dump() for row in section.decision_log],
            columns=list(DecisionRow.model_fields),
        )
        return _outcome(store, out_dir, "agent", report, result, notes, html, log_rows)


def equity_figure(report: Any) -> go.Figure:
    times = pd.to_datetime(report.equity.time, unit="ms", utc=True)
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.05
    )
    fig.add_trace(go.Scatter(x=times, y=report.equity.equity, name="Equity [$]"), row=1, col=1)
    fig.add_trace(
        go.Scatter(x=times, y=report.equity.drawdown_pct, name="Drawdown [%]", fill="tozeroy"),
        row=2,
        col=1,
    )
    fig.update_layout(height=480, margin={"l": 40, "r": 20, "t": 30, "b": 30})
    return fig


# -- trading state ---------------------------------------------------------------------------


def desk_markdown(desk: ChatDesk) -> str:
    """The chat's paper account: trading state, locks, equity, PnL, holdings and open orders."""
    desk.reload_risk()
    now, state = desk.now_ms, desk.risk.state
    view, book = desk.portfolio(), desk.book()
    lines = [
        f"### Chat account `{desk.account}` ({desk.mode}) — trading state: "
        f"**{state.trading_state(now).value}**",
        f"Decision time {iso_ms(now)} UTC · **Equity** {view.equity:,.2f} USDT · "
        f"**cash** {view.cash:,.2f} · **realised PnL** {book.realised_pnl_usdt:+,.2f} · "
        f"**unrealised** {book.unrealised_pnl_usdt:+,.2f} · fees {book.fees_usdt:,.2f} · "
        f"{book.fills} fills",
    ]
    marks = desk.runner.market.marks(desk.index)
    lines += [
        f"- holds {format(p.quantity, 'g')} {s} at avg {p.avg_price:,.2f}, mark "
        f"{marks[s]:,.2f} = {p.quantity * marks[s]:,.2f} USDT"
        for s, p in view.positions.items()
    ] or ["- no positions"]
    lines += [
        f"- open order `{o.client_order_id}`: {o.side} {o.quantity} {o.symbol} "
        f"{o.order_type} ({o.status})"
        for o in book.open_orders
    ]
    locks = state.active_locks(now)
    lines += [f"- `{lock.code.value}` ({lock.level.value}): {lock.message}" for lock in locks]
    if not locks:
        lines.append("- no locks in force")
    lines.append(
        f"- LLM failures in a row: {state.llm_failures}; losing streak: {state.losing_streak}"
    )
    limits = desk.risk.limits
    lines += [f"- limits in force, {line}" for line in limit_lines(limits, SignalSource.AI)]
    lines += [f"- record {line}" for line in last_interventions(desk.store, RISK_SCOPE)]
    return "\n".join(lines)


def decisions_frame(store: Store, limit: int = 50, run_id: str | None = None) -> pd.DataFrame:
    rows = []
    for r in reversed(load_decisions(store, run_id=run_id, limit=limit)):
        reasons = (r.verdict or {}).get("reasons") or (r.verdict or {}).get("adjustments") or []
        codes = [str(x.get("code")) for x in reasons]
        verdict = (r.verdict or {}).get("kind", "")
        if r.outcome == "hold" or codes == ["HOLD"]:  # the model held: nothing was vetoed
            verdict, codes = "hold", []
        rows.append(
            {
                "time": iso_ms(r.decided_ms),
                "decision": r.decision_id,
                "run": r.run_id,
                "symbol": r.symbol,
                "outcome": r.outcome,
                "verdict": verdict,
                "reasons": "; ".join(codes),
                "approved by": (r.approval or {}).get("by", ""),
                "order": _order_text(r.order),
            }
        )
    columns = ["time", "decision", "run", "symbol", "outcome", "verdict", "reasons"]
    return pd.DataFrame(rows, columns=[*columns, "approved by", "order"])


def ledger_frame(store: Store, settings: Settings, account: str | None) -> pd.DataFrame:
    """The loop account's veto ledger by reason code, as `agent-trade ledger` prints it."""
    if not account:
        return pd.DataFrame(columns=["reason", "vetoed", "clamped"])
    ledger = account_ledger(store, account, settings.scorecard.ledger_minutes, log.info)
    card = {"veto_ledger": ledger.model_dump()}
    return pd.DataFrame(ledger_rows(card), columns=ledger_columns(card))


def _order_text(order: dict[str, Any] | None) -> str:
    """'buy 0.01591 BTCUSDT': the quantity as quantized to the step, without padding zeros."""
    if not order:
        return ""
    quantity = format(Decimal(str(order.get("quantity", "0"))).normalize(), "f")
    return f"{order.get('side', '')} {quantity} {order.get('symbol', '')}".strip()


def loop_markdown(store: Store, settings: Settings, account: str | None) -> str:
    """The autonomous loop's account as `agent-trade status` shows it."""
    if not account:
        return (
            "### Autonomous loop\nNo loop has run yet: start one with "
            "`agent-trade --feed replay` (paper, offline)."
        )
    st = account_status(store, account, settings)
    stop = f" ({st['stop_reason']})" if st["stop_reason"] else ""
    lines = [
        f"### Autonomous loop `{account}` ({st['mode']}): {st['status']}{stop}",
        f"**Trading state: {st['trading_state']}** · last bar {st['last_bar']} UTC · "
        f"{st['bars']:,} bars",
        *[f"- {message}" for message in st["locks"]],
        f"**Equity** {st['equity']:,.2f} USDT · **PnL** {st['pnl']:+,.2f} "
        f"({st['pnl_pct']:+.3f}%) · **cash** {st['cash']:,.2f}",
    ]
    for p in st["positions"]:
        lines.append(
            f"- {p['quantity']:g} {p['symbol']} at avg {p['avg_price']:,.2f}, "
            f"mark {p['mark']:,.2f} = {p['value']:,.2f} USDT"
        )
    last = st["last_decision"]
    if last:
        lines.append(
            f"**Last decision** {last['time']} {last['symbol']}: {last['outcome']}"
            + (f" — {last['rationale']}" if last["rationale"] else "")
        )
    lines.append(f"**Last error** {st['last_error'] or 'none'}")
    lines.append("**Limits in force**\n" + "\n".join(f"- {x}" for x in st["limits_text"]))
    if st["interventions"]:
        lines.append("**Record**\n" + "\n".join(f"- {x}" for x in st["interventions"]))
    shadow = with_shadow(store, st, settings)["shadow"]
    if shadow is not None:
        table = side_by_side_lines(st, shadow)
        lines.append(
            "**Shadow book** (the same bars through the same gate: what the model adds)\n"
            "```\n" + "\n".join(table) + "\n```"
        )
    return "\n\n".join(lines)


def fills_frame(store: Store, account: str | None, limit: int = 50) -> pd.DataFrame:
    """The account's latest fills, newest first, as `agent-trade fills` lists them."""
    fills = load_account(store, account).fills[-limit:] if account else []
    rows = [FillOut.of(fill).model_dump() for fill in reversed(fills)]
    frame = pd.DataFrame(rows, columns=list(FillOut.model_fields))
    return frame.round({"price": 2, "fee": 6})


def loop_equity_figure(store: Store, account: str | None) -> go.Figure:
    fig = go.Figure()
    shadow = shadow_account(account) if account else None
    for name, label in ((account, "Equity [$]"), (shadow, "Shadow equity [$]")):
        points = load_equity(store, name) if name else []
        if points:
            times = pd.to_datetime([t for t, _, _ in points], unit="ms", utc=True)
            fig.add_trace(go.Scatter(x=times, y=[e for _, e, _ in points], name=label))
    fig.update_layout(
        height=320, margin={"l": 40, "r": 20, "t": 30, "b": 30}, title="Loop equity [$]"
    )
    return fig


# -- the app ---------------------------------------------------------------------------------


def _user(request: gr.Request | None) -> str:
    return (getattr(request, "username", None) or "user") if request else "user"


def _new_thread() -> str:
    return f"chat-{uuid.uuid4().hex[:10]}"


def build_app(
    settings: Settings,
    store: Store,
    *,
    model: ChatModel | None = None,
    frames: dict[str, pd.DataFrame] | None = None,
    notify: Callable[[str], None] | None = None,
    clock: Clock | None = None,
    account: str = CHAT_ACCOUNT,
    mode: ChatMode = "paper",
    source: ChatMarket | None = None,
) -> gr.Blocks:
    """The whole UI; `model` and `frames` default to the configured model and the sample, or
    `source`, a chat market already opened; `mode` testnet trades the chat's account on
    Binance's spot testnet (keys from the environment), never silently on paper."""
    notices: list[str] = []

    def note(line: str) -> None:
        notices.append(line)
        (notify or log.info)(line)

    model = model or open_model(settings, note)
    clock = clock or SystemClock()
    if source is None:
        source = sample_market(frames) if frames else open_chat_market(settings, store, clock, note)
    frames = source.frames
    source.venues = other_venues(store, list(frames))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    where = chat_venue(settings, mode, source, store, account, note)
    desk = ChatDesk(
        store, account, frames, where.rules, cash=where.cash, limits=where.limits,
        frozen=not source.live, venue=where.venue, wall_ms=clock.now_ms, mode=mode,
    )  # fmt: skip
    channels = channels_from(settings.alerts)
    courier = Courier(channels, attempts=settings.alerts.max_attempts) if channels else None
    watch = AlertWatch(store, settings, [courier] if courier else [])
    if courier is not None:  # the channels hear of news with no page open
        watch.start(settings.alerts.poll_s)
    threads = settings.data_dir / "chat-threads.sqlite"
    books = live_books(settings, list(frames)) if source.live else None
    chat = ChatService(
        store, model, source.market(frames), threads, desk, source, settings, books=books,
    )  # fmt: skip
    reports_dir = settings.data_dir / "ui-reports"
    model_line = (
        "offline (built-in deterministic rules, not an LLM)"
        if model.model == "offline"
        else f"{model.model} at {model.base_url}"
    )
    clock_line = (
        "Binance's last closed bar, moving with time"
        if source.live
        else "the sample replayed: each approved order plays the next bar, whose open fills it"
    )
    banner = (
        f"## agent-trader\n"
        f"**Model:** {model_line} · **Data:** {source.describe} · "
        f"**Clock:** {clock_line} · **Trading mode:** {venue_line(mode, account)}"
    )

    def chat_send(message: str, history: list[Any], thread_id: str) -> Iterator[tuple[Any, ...]]:
        history = list(history or [])
        thread_id = (thread_id or "").strip() or _new_thread()
        hidden = (gr.Markdown(visible=False), gr.Button(visible=False), gr.Button(visible=False))
        if not (message or "").strip():
            gr.Warning("Type a message first.")
            yield (history, "", thread_id, *hidden)
            return
        pending = chat.pending(thread_id)
        if pending is not None:
            gr.Warning("An order is waiting: approve or reject it first.")
            yield (history, message, thread_id, *_approval(pending))
            return
        history.append(ChatMessage(role="user", content=message))
        yield (history, "", thread_id, *hidden)
        steps: dict[str, Any] = {}
        try:
            chat.refresh()
            for node, update in chat.send(thread_id, message):
                if node == "__interrupt__":
                    continue
                apply_update(history, node, update, steps)
                yield (history, "", thread_id, *hidden)
        except (UserError, ConfigError) as exc:
            history.append(ChatMessage(role="assistant", content=f"⚠️ {exc}"))
        pending = chat.pending(thread_id)
        if pending is not None:
            order = pending.get("order") or {}
            what = f"{order.get('side')} {order.get('quantity')} {order.get('symbol')}"
            history.append(
                ChatMessage(
                    role="assistant", content=f"Proposed: {what}. It waits for your approval."
                )
            )
        controls = _approval(pending) if pending is not None else hidden
        yield (history, "", thread_id, *controls)

    def _approval(pending: dict[str, Any]) -> tuple[Any, ...]:
        return (
            gr.Markdown(proposal_markdown(pending, chat.desk), visible=True),
            gr.Button(visible=True),
            gr.Button(visible=True),
        )

    def decide_order(
        approved: bool, history: list[Any], thread_id: str, request: gr.Request
    ) -> Iterator[tuple[Any, ...]]:
        history = list(history or [])
        hidden = (gr.Markdown(visible=False), gr.Button(visible=False), gr.Button(visible=False))
        if chat.pending(thread_id) is None:
            gr.Warning("No order is waiting in this thread.")
            yield (history, *hidden)
            return
        by = _user(request)
        history.append(
            ChatMessage(role="user", content=f"{'✅ Approve' if approved else '❌ Reject'} ({by})")
        )
        steps: dict[str, Any] = {}
        for node, update in chat.resume(thread_id, approved, by):
            apply_update(history, node, update, steps)
            yield (history, *hidden)
        yield (history, *hidden)

    def approve(history: list[Any], thread_id: str, request: gr.Request):
        yield from decide_order(True, history, thread_id, request)

    def reject(history: list[Any], thread_id: str, request: gr.Request):
        yield from decide_order(False, history, thread_id, request)

    def load_thread(thread_id: str) -> tuple[Any, ...]:
        thread_id = (thread_id or "").strip()
        hidden = (gr.Markdown(visible=False), gr.Button(visible=False), gr.Button(visible=False))
        if not thread_id:
            gr.Warning("Give a thread id to load.")
            return ([], *hidden)
        values = chat.snapshot(thread_id).values
        if not values:
            gr.Warning(f"No saved thread {thread_id!r}; a new one starts with your next message.")
            return ([], *hidden)
        history = history_from_messages(values.get("messages", []))
        pending = chat.pending(thread_id)
        return (history, *(_approval(pending) if pending is not None else hidden))

    def new_thread() -> tuple[Any, ...]:
        hidden = (gr.Markdown(visible=False), gr.Button(visible=False), gr.Button(visible=False))
        return (_new_thread(), [], *hidden)

    def show_market(symbol: str, interval: str, span: str, overlays: list[str]) -> tuple[Any, str]:
        try:
            return market_figure(frames, symbol, interval, span, overlays), ""
        except UserError as exc:
            gr.Warning(str(exc))
            return gr.Plot(), f"**Error:** {exc}"

    def backtest(
        strategy: str,
        symbol: str,
        days: float,
        params: str,
        size: str,
        source: str = CLASSIC,
        decide_every: float = 15,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (gradio injects the tracker here)
    ) -> tuple[Any, ...]:
        try:
            if source == AGENT:
                out = run_agent_backtest(
                    store,
                    settings,
                    model,
                    frames,
                    reports_dir,
                    symbol,
                    days,
                    decide_every,
                    lambda done, planned: progress((done, planned), desc="agent deciding"),
                )
            else:
                out = run_classic_backtest(
                    store,
                    settings,
                    frames,
                    reports_dir,
                    strategy,
                    symbol,
                    days,
                    params,
                    size or "all",
                )
        except UserError as exc:
            gr.Warning(str(exc))
            empty = pd.DataFrame(columns=["metric", "value"])
            blank = pd.DataFrame()
            return (f"**Error:** {exc}", empty, gr.Plot(), blank, None, None, blank)
        status = f"Saved as backtest run #{out.run_id}. " + " ".join(out.notes)
        files = (str(out.json_path), str(out.html_path))
        return (status, out.metrics, out.figure, out.trades, *files, out.decisions)

    def trading_view(account: str | None = None) -> tuple[Any, ...]:
        chat.refresh()
        known = accounts(store)
        loops = [a for a in known if a != chat.desk.account]  # the chat's has its own panel
        account = account if account in known else next(iter(loops or known), None)
        return (
            gr.Dropdown(choices=known, value=account),
            desk_markdown(chat.desk),
            loop_markdown(store, settings, account),
            loop_equity_figure(store, account),
            decisions_frame(store, run_id=f"trade-{account}")
            if account
            else decisions_frame(store, run_id=""),
            ledger_frame(store, settings, account),
            decisions_frame(store, run_id=CHAT_RUN_ID),
            fills_frame(store, account),
        )

    def account_panel() -> str:
        return desk_markdown(chat.desk)

    def tick(account: str | None) -> tuple[Any, ...]:
        """The timer: the same view as Refresh, plus what happened since the last tick."""
        view = trading_view(account)
        for alert in watch.poll():
            gr.Info(alert.text)
        return (*view, watch.markdown())

    def kill_switch(account: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Halts the chat desk and the selected loop: its file stops a running loop within
        one bar, and its stored state keeps a stopped one halted."""
        who, reason = _user(request), "pulled in the UI"
        wall, desk = SystemClock().now_ms(), chat.desk
        chat_halt = Intervention(
            scope=desk.scope, action="halt", who=who, reason=reason, at_ms=desk.now_ms
        )
        intervene(store, chat_halt)
        if account:
            halt_account(store, settings.data_dir, account, reason, wall, who)
        gr.Warning("Kill switch pulled: trading is HALTED until a person clears it.")
        return trading_view(account)

    def clear_halt(
        account: str | None,
        target: str,
        action: str,
        reason: str,
        confirmed: bool,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        """The way back: a resume or drawdown reset of the chat desk or the selected loop,
        only once confirmed, and on record with who and why."""
        if not confirmed:
            gr.Warning("Nothing was cleared: tick the confirmation first.")
            return trading_view(account)
        chosen = None if target == CHAT_DESK else account
        try:
            if target != CHAT_DESK and not account:
                raise UserError("choose a loop account first")
            step, state = clear_account(
                store,
                settings,
                chosen,
                CLEAR_ACTIONS[action],
                _user(request),
                reason.strip() or "cleared in the UI",
                SystemClock().now_ms(),
            )
        except UserError as exc:
            gr.Warning(str(exc))
            return trading_view(account)
        gr.Info(f"{describe(step)}; now {state.trading_state(chat.desk.now_ms).value}")
        return trading_view(account)

    with gr.Blocks(title="agent-trader") as app:
        gr.Markdown(banner, elem_id="banner")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                with gr.Row():
                    thread_box = gr.Textbox(
                        label="Thread id (paste one to resume it after a restart)",
                        elem_id="thread-id",
                        scale=4,
                    )
                    load_btn = gr.Button("Load thread", scale=1)
                    new_btn = gr.Button("New thread", scale=1)
                chatbot = gr.Chatbot(label="Assistant", elem_id="chatbot", height=480)
                account_md = gr.Markdown(elem_id="account")
                approval_md = gr.Markdown(visible=False, elem_id="proposal")
                with gr.Row():
                    approve_btn = gr.Button(
                        "Approve", variant="primary", visible=False, elem_id="approve"
                    )
                    reject_btn = gr.Button(
                        "Reject", variant="stop", visible=False, elem_id="reject"
                    )
                with gr.Row():
                    box = gr.Textbox(
                        placeholder="e.g. analyse ETH · buy 10% BTC · backtest sma on BTC · portfolio",
                        show_label=False,
                        elem_id="chat-input",
                        scale=5,
                    )
                    send_btn = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                controls = [approval_md, approve_btn, reject_btn]
                send_outputs = [chatbot, box, thread_box, *controls]
                send_inputs = [box, chatbot, thread_box]
                box.submit(chat_send, send_inputs, send_outputs, api_name="chat").then(
                    account_panel, None, account_md, api_name=False
                )
                send_btn.click(chat_send, send_inputs, send_outputs, api_name=False).then(
                    account_panel, None, account_md, api_name=False
                )
                approve_btn.click(
                    approve, [chatbot, thread_box], [chatbot, *controls], api_name="approve"
                ).then(account_panel, None, account_md, api_name=False)
                reject_btn.click(
                    reject, [chatbot, thread_box], [chatbot, *controls], api_name="reject"
                )
                load_btn.click(
                    load_thread, [thread_box], [chatbot, *controls], api_name="load_thread"
                )
                new_btn.click(new_thread, None, [thread_box, chatbot, *controls], api_name=False)

            with gr.Tab("Market", id="market"):
                with gr.Row():
                    m_symbol = gr.Dropdown(
                        list(frames),
                        value=next(iter(frames)),
                        label="Symbol",
                        allow_custom_value=True,
                    )
                    m_interval = gr.Dropdown(list(INTERVALS), value="15m", label="Interval")
                    m_span = gr.Dropdown(list(RANGES), value="1 day", label="Range")
                    m_overlays = gr.CheckboxGroup(
                        ["SMA", "EMA", "Bollinger"], value=["SMA", "Bollinger"], label="Overlays"
                    )
                m_error = gr.Markdown()
                m_plot = gr.Plot(label="Candles and RSI")
                m_inputs = [m_symbol, m_interval, m_span, m_overlays]
                for control in m_inputs:
                    control.change(show_market, m_inputs, [m_plot, m_error], api_name=False)

            with gr.Tab("Backtest", id="backtest"):
                b_source = gr.Radio(
                    [CLASSIC, AGENT],
                    value=CLASSIC,
                    label="Signal source",
                    info=f"the agent runs on {model_line}",
                    elem_id="backtest-source",
                )
                with gr.Row():
                    b_strategy = gr.Dropdown(list(STRATEGIES), value="sma_cross", label="Strategy")
                    b_symbol = gr.Dropdown(
                        list(frames),
                        value=next(iter(frames)),
                        label="Symbol",
                        allow_custom_value=True,
                    )
                    b_days = gr.Number(value=1, label="Days")
                    b_size = gr.Textbox(value="all", label="Size ('all' or % of equity)")
                    b_every = gr.Number(value=15, label="Agent: decide every (min)", precision=0)
                b_params = gr.Textbox(
                    value=default_params("sma_cross"),
                    label="Parameters (name=value, comma-separated)",
                )
                b_run = gr.Button("Run backtest", variant="primary")
                b_status = gr.Markdown()
                b_metrics = gr.Dataframe(label="Metrics", headers=["metric", "value"])
                b_plot = gr.Plot(label="Equity and drawdown")
                b_trades = gr.Dataframe(label="Trades")
                b_decisions = gr.Dataframe(label="Agent decision log")
                with gr.Row():
                    b_json = gr.File(label="JSON report")
                    b_html = gr.File(label="HTML report")
                b_strategy.change(default_params, [b_strategy], [b_params], api_name=False)
                b_run.click(
                    backtest,
                    [b_strategy, b_symbol, b_days, b_params, b_size, b_source, b_every],
                    [b_status, b_metrics, b_plot, b_trades, b_json, b_html, b_decisions],
                    api_name="backtest",
                )

            with gr.Tab("Trading", id="trading"):
                # Alert toasts stack over the top right ~440 px for 10 s each: the controls take
                # the left half, so each takes a click while they are up, and the notification
                # list, which says what the toasts say, the right.
                with gr.Row():
                    with gr.Column(scale=1):
                        with gr.Row():
                            t_kill = gr.Button(
                                "Kill switch: halt all trading", variant="stop", elem_id="kill"
                            )
                            t_refresh = gr.Button("Refresh", elem_id="refresh")
                        t_account = gr.Dropdown(
                            [],
                            label="Loop account (agent-trade --account)",
                            allow_custom_value=True,
                            elem_id="loop-account",
                        )
                    with gr.Column(scale=1):
                        t_alerts = gr.Markdown(watch.markdown(), elem_id="alerts")
                t_loop = gr.Markdown(elem_id="loop-state")
                t_equity = gr.Plot(label="Loop equity")
                t_loop_decisions = gr.Dataframe(label="The loop's recent decisions and verdicts")
                t_ledger = gr.Dataframe(
                    label="The loop's veto ledger: what each gate rule saved (+) or cost (−) "
                    "[$], by reason, from the next open over each horizon after fees",
                    elem_id="veto-ledger",
                )
                t_state = gr.Markdown(elem_id="desk-state")
                with gr.Accordion("Way back: resume or reset the drawdown lock", open=False):
                    with gr.Row():
                        t_target = gr.Radio(
                            [LOOP_ACCOUNT, CHAT_DESK], value=LOOP_ACCOUNT, label="Which"
                        )
                        t_action = gr.Radio(
                            list(CLEAR_ACTIONS), value=next(iter(CLEAR_ACTIONS)), label="Clear"
                        )
                        t_reason = gr.Textbox(label="Why (kept on record)", elem_id="clear-reason")
                    with gr.Row():
                        t_confirm = gr.Checkbox(
                            label="I have checked why it stopped and want it to trade again",
                            elem_id="clear-confirm",
                        )
                        t_clear = gr.Button("Clear", variant="primary", elem_id="clear-halt")
                t_decisions = gr.Dataframe(label="Chat decisions")
                t_fills = gr.Dataframe(label="The selected account's fills, newest first")
                t_outputs = [
                    t_account, t_state, t_loop, t_equity, t_loop_decisions, t_ledger,
                    t_decisions, t_fills,
                ]  # fmt: skip
                t_refresh.click(trading_view, [t_account], t_outputs, api_name="trading")
                t_account.change(trading_view, [t_account], t_outputs, api_name=False)
                t_kill.click(kill_switch, [t_account], t_outputs, api_name="kill_switch")
                t_clear.click(
                    clear_halt,
                    [t_account, t_target, t_action, t_reason, t_confirm],
                    t_outputs,
                    api_name="clear_halt",
                )
                gr.Timer(settings.ui.refresh_s).tick(
                    tick, [t_account], [*t_outputs, t_alerts], api_name="tick"
                )

        app.load(lambda: _new_thread(), None, thread_box, api_name=False)
        app.load(show_market, m_inputs, [m_plot, m_error], api_name=False)
        app.load(trading_view, None, t_outputs, api_name=False)
        app.load(account_panel, None, account_md, api_name=False)
    app.chat_service = chat  # type: ignore[attr-defined]
    app.alert_watch = watch  # type: ignore[attr-defined]
    return app
