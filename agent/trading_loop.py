"""The unattended loop: closed bars → paper fills → a decision every N minutes through the same
graph, gate and fill model as a backtest → one atomic checkpoint per bar. A restart resumes after
the last committed bar, so nothing is done twice; the kill-switch file halts it."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from agent.decide import decide, decision_prompt_version, system_prompt
from agent.graph import AgentDeps, build_graph
from agent.loop_state import LastDecision, LoopState, LoopStatus, risk_scope
from agent.model import ChatModel
from agent.records import DecisionRecord, save_decisions
from core.errors import UserError
from execution.ledger import Ledger
from execution.orders import Fill
from execution.paper import PaperCheckpoint, PaperExecutor, PaperOrder
from execution.paper_records import load_account, save_step
from market.binance_ws import Bar, BarGap, Reconnected, StreamEvent
from market.models import SymbolRules
from market.validation import iso_ms
from risk.desk import RiskDesk
from risk.limits import RiskLimits
from risk.models import Approved, ApprovedOrder, MarketView, PortfolioView, ReasonCode
from risk.protections import TradingState
from risk.records import load_state
from risk.state import clear_kill, kill, on_equity, on_trade_closed
from store.db import Store
from tools import MarketData, ToolEnv, decision_tools
from tools.trading import TradeIdea, market_view, to_signal

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
DAY_BARS = 1_440
STALL_S = 120.0  # wall seconds a minute may wait for a quiet symbol


class Venue(Protocol):
    """Where orders go: PaperExecutor (the fill model) or BinanceVenue (testnet, live)."""

    ledger: Ledger

    def execute(self, order: ApprovedOrder) -> dict[str, Any]: ...

    def on_bar(self, open_time: int, close_time: int, bars: Mapping[str, Bar]) -> list[Fill]: ...

    def protective_exits(self, bars: Mapping[str, Bar]) -> list[tuple[str, str]]: ...

    def equity(self) -> float: ...

    def portfolio(self, peak_equity: float, day_start_equity: float) -> PortfolioView: ...

    def changes(self) -> tuple[list[PaperOrder], list[Fill], PaperCheckpoint]: ...

    def committed(self) -> None: ...

    def halt(self, now_ms: int) -> None: ...

    def restore(
        self, checkpoint: PaperCheckpoint, fills: Sequence[Fill], orders: Sequence[PaperOrder]
    ) -> None: ...


class LoopObserver(Protocol):
    """Progress bars and metrics watch the loop through this."""

    def on_bar(self, loop: TradingLoop, seconds: float) -> None: ...

    def on_decision(self, record: DecisionRecord) -> None: ...


class TradingLoop:
    """Inject the model, the venue and the store; feed it `StreamEvent`s with `run`."""

    def __init__(
        self,
        *,
        account: str,
        symbols: Sequence[str],
        store: Store,
        model: ChatModel,
        rules: Mapping[str, SymbolRules],
        history: Mapping[str, pd.DataFrame],
        cash: float,
        decide_every: int,
        kill_switch: Path,
        limits: RiskLimits | None = None,
        history_bars: int = DAY_BARS,
        observers: Sequence[LoopObserver] = (),
        mode: str = "paper",
        venue: Callable[[float], Venue] | None = None,
        realtime: bool = False,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.account = account
        self.symbols = list(symbols)
        self.store = store
        self.model = model
        unknown = [s for s in self.symbols if s not in rules]
        if unknown:
            raise UserError(
                f"no exchange rules for {', '.join(unknown)}: rules are known for "
                f"{', '.join(sorted(rules))}"
            )
        self.rules = {s: rules[s] for s in self.symbols}
        self.limits = limits or RiskLimits()
        self.decide_every_ms = decide_every * MINUTE_MS
        self.kill_switch = kill_switch
        self.observers = list(observers)
        self.wall_ms = wall_ms
        self.run_id = f"trade-{account}"
        self.graph = build_graph()
        self.tools = decision_tools()
        self.system_prompt = system_prompt()
        self.prompt_version = decision_prompt_version()
        self.frames: dict[str, deque[dict[str, Any]]] = {
            s: deque(history[s].to_dict("records")[-history_bars:], maxlen=history_bars)
            for s in self.symbols
        }
        stored = load_account(store, account)
        if stored.state_json is None:
            self.state = LoopState(account=account, mode=mode, initial_cash=cash)
        else:  # a restart: the account keeps its own starting cash, whatever --cash says now
            self.state = LoopState.model_validate_json(stored.state_json)
        if self.state.mode != mode:
            raise UserError(
                f"account {account!r} trades in {self.state.mode} mode, not {mode}: "
                "use another --account"
            )
        make = venue or (lambda c: PaperExecutor(self.rules, self.symbols, cash=c))
        self.venue: Venue = make(self.state.initial_cash)
        self.venue.restore(self.state.paper, stored.fills, stored.orders)
        self.state = self.state.model_copy(
            update={"status": "running", "pid": os.getpid(), "stop_reason": None}
        )
        involved = (
            {s for s, _ in self.venue.ledger.held()}
            | {o["symbol"] for o in self.state.paper.working + self.state.paper.queued}
            | {b["symbol"] for b in self.state.paper.brackets}
        )
        uncovered = sorted(involved - set(self.symbols))
        if uncovered:
            raise UserError(
                f"account {account!r} holds or has orders in {', '.join(uncovered)}: "
                f"include them in --symbol ({','.join([*self.symbols, *uncovered])})"
            )
        self.now_ms = self.state.paper.last_open_time or 0
        self.scope = risk_scope(account)
        # A live feed's gate judges freshness by the wall clock (STALE_DATA after a backlog);
        # a replay's clock is its bars.
        gate_now = self.wall_ms if realtime else (lambda: self.now_ms)
        self.desk = RiskDesk(
            store, self.scope, self.limits, self._portfolio, self._market, gate_now
        )
        self.trades_seen = len(self.venue.ledger.trades)
        self.bars_this_run = 0
        self._market_data: MarketData | None = None
        self._last_seen: dict[str, int] = {}  # newest bar open time per symbol, from the feed
        self._pending_since: dict[int, float] = {}  # when each waiting minute was first seen
        self._tracked: tuple[float, int] | None = None

    @property
    def last_open_time(self) -> int | None:
        return self.state.paper.last_open_time

    # -- what the gate and the tools read ----------------------------------------------------

    def _portfolio(self) -> PortfolioView:
        risk = self.desk.state
        equity = self.venue.equity()
        return self.venue.portfolio(
            peak_equity=risk.peak_equity or equity, day_start_equity=risk.day_start_equity or equity
        )

    def _market(self, symbol: str) -> MarketView:
        return market_view(self._env(), symbol)

    def _env(self) -> ToolEnv:
        if self._market_data is None:
            frames = {s: pd.DataFrame(list(rows)) for s, rows in self.frames.items()}
            self._market_data = MarketData(frames, "1m")
        return ToolEnv(
            market=self._market_data,
            now_ms=self.now_ms,
            rules=self.rules,
            portfolio=self._portfolio,
            limits=self.limits,
            risk_state=lambda: self.desk.state,
            stateful=True,
        )

    # -- one bar -----------------------------------------------------------------------------

    def step(self, open_time: int, bars: Mapping[str, Bar]) -> None:
        """Fills for this bar, risk bookkeeping, the decisions due at its close, then commit."""
        started = time.perf_counter()
        close_time = max(b.close_time for b in bars.values())
        for symbol, bar in bars.items():
            rows = self.frames[symbol]
            if not rows or bar.open_time > rows[-1]["open_time"]:  # REST history may hold it
                rows.append(bar.model_dump(exclude={"symbol", "interval", "source"}))
        self._market_data = None
        self.now_ms = close_time
        self._kill_switch(close_time)
        self.venue.on_bar(open_time, close_time, bars)
        self._risk_bookkeeping(close_time)
        for symbol, why in self.venue.protective_exits(bars):
            self._protective_exit(symbol, why, close_time)
        if (close_time + 1) % self.decide_every_ms == 0:
            self._decide_all(close_time)
        self.bars_this_run += 1
        self._commit(close_time)
        for observer in self.observers:
            observer.on_bar(self, time.perf_counter() - started)

    def _risk_bookkeeping(self, now: int) -> None:
        equity = self.venue.equity()
        key = (round(equity, 8), now // 86_400_000)
        if key != self._tracked:
            self.desk.update(lambda s: on_equity(s, equity, now, self.limits))
            self._tracked = key
        trades = self.venue.ledger.trades
        for trade in trades[self.trades_seen :]:
            self.desk.update(lambda s, t=trade: on_trade_closed(s, t.pnl, t.exit_time))
        self.trades_seen = len(trades)

    def _kill_switch(self, now: int) -> None:
        """The file halts within a bar and cancels what has not filled; `agent-trade resume`
        (file gone, the stored kill cleared) lets a running loop trade again."""
        killed = any(lock.code is ReasonCode.KILL_SWITCH for lock in self.desk.state.locks)
        if self.kill_switch.exists():
            if not killed:
                reason = f"kill-switch file {self.kill_switch}"
                self.desk.update(lambda s: kill(s, reason, now))
                log.warning("halted by %s", reason, extra={"account": self.account})
        elif killed and not any(
            lock.code is ReasonCode.KILL_SWITCH for lock in load_state(self.store, self.scope).locks
        ):
            self.desk.update(clear_kill)
            log.warning("kill switch cleared; trading again", extra={"account": self.account})
        if self.desk.state.trading_state(now) is TradingState.HALTED:
            self.venue.halt(now)

    def _protective_exit(self, symbol: str, why: str, now: int) -> None:
        """A venue without brackets asks for the exit; it goes through the gate like any order."""
        env = self._env()
        env.decision_id = f"{self.run_id}:{symbol}:{now}:exit"
        idea = TradeIdea(symbol=symbol, action="close", confidence=1.0, rationale=why)
        signal = to_signal(env, idea).model_copy(update={"protective": True})
        verdict = self.desk.review(signal)
        if isinstance(verdict, Approved):
            result = self.venue.execute(verdict.order)
            log.warning("%s: %s; exit %s", symbol, why, result.get("status"))
        else:
            reasons = "; ".join(r.message for r in verdict.reasons)
            self.state = self.state.model_copy(
                update={"last_error": f"{iso_ms(now)} {symbol}: exit vetoed: {reasons}"}
            )

    def _decide_all(self, now: int) -> None:
        if self.desk.state.trading_state(now) is TradingState.HALTED:
            log.info("halted: no decision at %s", iso_ms(now), extra={"account": self.account})
            return
        for symbol in self.symbols:
            deps = AgentDeps(
                model=self.model,
                tools=self.tools,
                env=self._env(),
                system_prompt=self.system_prompt,
                prompt_version=self.prompt_version,
                run_id=self.run_id,
                gate=self.desk,
                executor=self.venue,
                recorder=self._record,
            )
            try:
                decide(self.graph, deps, symbol)
            except Exception as exc:  # a bug must not kill an unattended loop; it is recorded
                log.exception("decision for %s at %s failed", symbol, iso_ms(now))
                self.state = self.state.model_copy(
                    update={"last_error": f"{iso_ms(now)} {symbol}: {type(exc).__name__}: {exc}"}
                )

    def _record(self, record: DecisionRecord) -> None:
        save_decisions(self.store, [record])
        outcomes = Counter(self.state.outcomes)
        outcomes[record.outcome] += 1
        vetoes = Counter(self.state.vetoes)
        for reason in (record.verdict or {}).get("reasons", []):
            if reason["code"] != "HOLD":  # a hold is the model's choice, not a veto
                vetoes[reason["code"]] += 1
        signal, order = record.signal or {}, record.order or {}
        last = LastDecision(
            time=iso_ms(record.decided_ms + 1),
            symbol=record.symbol,
            outcome=record.outcome,
            action=signal.get("action"),
            rationale=(signal.get("rationale") or (record.abstain or {}).get("message") or "")[
                :200
            ],
            order=f"{order['side']} {order['quantity']} {order['symbol']}" if order else None,
        )
        update: dict[str, Any] = {
            "decisions": self.state.decisions + 1,
            "outcomes": dict(outcomes),
            "vetoes": dict(vetoes),
            "last_decision": last,
        }
        if record.abstain is not None:
            update["last_error"] = f"{last.time} {record.symbol} abstained: {last.rationale}"
        self.state = self.state.model_copy(update=update)
        for observer in self.observers:
            observer.on_decision(record)

    def _commit(self, now: int) -> None:
        """One transaction; the venue forgets its changes only once they are stored."""
        orders, fills, checkpoint = self.venue.changes()
        self.state = self.state.model_copy(
            update={"paper": checkpoint, "wall_updated_ms": self.wall_ms()}
        )
        stepped = self.bars_this_run > 0
        save_step(
            self.store,
            self.account,
            orders=orders,
            fills=fills,
            state_json=self.state.model_dump_json(),
            now_ms=now,
            equity=(now, self.venue.equity(), self.venue.ledger.cash) if stepped else None,
        )
        self.venue.committed()

    def finish(self, status: LoopStatus, reason: str) -> None:
        """Record why the loop stopped; the last committed bar is where a restart resumes."""
        self.state = self.state.model_copy(update={"status": status, "stop_reason": reason})
        self._commit(self.now_ms)
        log.info("loop %s: %s", status, reason, extra={"account": self.account})

    # -- the event loop ----------------------------------------------------------------------

    async def run(
        self,
        events: AsyncIterator[StreamEvent],
        stop: asyncio.Event,
        *,
        max_bars: int | None = None,
        end_open_time: int | None = None,
    ) -> str:
        """Consume events until `stop` is set, the feed ends, `max_bars` bars were processed or
        the bar opening at `end_open_time` is done. A step in progress always completes."""
        pending: dict[int, dict[str, Bar]] = {}
        iterator = aiter(events)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while True:
                receive = asyncio.ensure_future(anext(iterator))
                done, _ = await asyncio.wait({receive, stopper}, return_when="FIRST_COMPLETED")
                if receive not in done:
                    receive.cancel()
                    return "stop requested"
                try:
                    event = receive.result()
                except StopAsyncIteration:
                    return "the feed ended"
                for open_time, bars in self._ready(pending, event):
                    await asyncio.to_thread(self.step, open_time, bars)
                    if max_bars is not None and self.bars_this_run >= max_bars:
                        return f"processed {max_bars} bars (--max-bars)"
                    if end_open_time is not None and open_time >= end_open_time:
                        return "the replay reached its last bar"
                    if stop.is_set():
                        return "stop requested"
        finally:
            stopper.cancel()

    def _ready(
        self, pending: dict[int, dict[str, Bar]], event: StreamEvent
    ) -> list[tuple[int, dict[str, Bar]]]:
        """Bars grouped by minute, stepped in order; a symbol that lacks a ready minute gets a
        flat bar at its last close (counted in the feed's `flat_bars`)."""
        if isinstance(event, Reconnected | BarGap):
            self._feed_event(event)
            return []
        if not isinstance(event, Bar) or event.symbol not in self.frames:
            return []
        last = self.last_open_time
        if last is not None and event.open_time <= last:
            return []  # committed before a restart
        pending.setdefault(event.open_time, {})[event.symbol] = event
        self._last_seen[event.symbol] = event.open_time
        self._pending_since.setdefault(event.open_time, time.monotonic())
        # A minute is ready when every symbol has it, or has moved past it (the stream delivers a
        # symbol's bars in order, backfill first, so it will never come), or after STALL_S: a
        # symbol that went quiet must not stall the others, their stops included.
        complete = [
            t
            for t, got in pending.items()
            if all(s in got or self._last_seen.get(s, -1) > t for s in self.symbols)
            or time.monotonic() - self._pending_since.get(t, time.monotonic()) > STALL_S
        ]
        if not complete:
            return []
        upto = max(complete)
        ready = []
        for open_time in sorted(t for t in pending if t <= upto):
            bars = pending.pop(open_time)
            self._pending_since.pop(open_time, None)
            for symbol in self.symbols:
                if symbol not in bars:
                    bars[symbol] = self._flat_bar(symbol, open_time)
            ready.append((open_time, bars))
        return ready

    def _flat_bar(self, symbol: str, open_time: int) -> Bar:
        close = float(self.frames[symbol][-1]["close"]) if self.frames[symbol] else 0.0
        log.warning("%s: no bar at %s; using a flat bar at %g", symbol, iso_ms(open_time), close)
        counts = Counter(self.state.feed)
        counts["flat_bars"] += 1
        self.state = self.state.model_copy(update={"feed": dict(counts)})
        return Bar(
            symbol=symbol,
            interval="1m",
            source="backfill",
            open_time=open_time,
            open=close,
            high=close,
            low=close,
            close=close,
            volume=0.0,
            close_time=open_time + MINUTE_MS - 1,
        )

    def _feed_event(self, event: Reconnected | BarGap) -> None:
        counts = Counter(self.state.feed)
        update: dict[str, Any] = {}
        if isinstance(event, Reconnected):
            counts["reconnects"] += 1
        else:
            counts["missing_bars"] += len(event.missing_open_times)
            update["last_error"] = (
                f"{event.symbol}: {len(event.missing_open_times)} bar(s) missing ({event.reason})"
            )
        self.state = self.state.model_copy(update={**update, "feed": dict(counts)})
