"""The unattended loop: a stream of closed bars assembled into minutes, each stepped through the
one runner (runtime.runner) that a backtest drives, on a paper or exchange venue, with one atomic
checkpoint per bar. A restart resumes after the last committed bar, so nothing is done twice;
the kill-switch file halts it."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from agent.loop_state import LastDecision, LoopState, LoopStatus, Waiting, risk_scope, wall_now_ms
from agent.records import DecisionRecord, loop_run_id, write_decisions
from agent.step_commit import commit_step
from agent.stopping import StopWhileWaiting
from backtest.veto_ledger import blocked
from core.errors import UserError
from execution.corporate import AppliedAction
from execution.orders import Fill
from execution.paper import GrowingFeed, PaperCheckpoint, PaperExecutor, PaperOrder
from execution.paper_records import load_account
from market.binance_ws import Bar, BarGap, BarRefused, MarketClosed, Reconnected, StreamEvent
from market.books import Books
from market.corporate import CorporateActions
from market.models import CANDLE_COLUMNS, INTERVAL_MS, SymbolRules, iso_ms
from risk.desk import RiskDesk
from risk.gate import assess_facts
from risk.interventions import Catchup
from risk.limits import RiskLimits
from risk.models import Approved, ApprovedOrder, Elsewhere, ReasonCode, TradeSignal, Verdict
from risk.protections import TradingState
from risk.records import load_state
from risk.state import clear_kill, in_safe_mode, kill, on_budget_spent
from runtime.hours import TradingHours
from runtime.market import Market
from runtime.runner import GateCall, Runner, Sizing
from runtime.strategy import Strategy
from store.candles import upsert_candles
from store.db import Store

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
STALL_S = 120.0  # wall seconds a minute may wait for a quiet symbol
_BAR_FIELDS = ("open", "high", "low", "close", "volume")


class Venue(Protocol):
    """The runner's venue plus what the loop persists: PaperExecutor or BinanceVenue."""

    ledger: Any
    checkpoint: PaperCheckpoint  # what a restart and `status` read: the marks among it

    def on_bar(self, index: int, *, fills: bool = True) -> None: ...

    def execute(self, order: ApprovedOrder) -> dict[str, Any]: ...

    def pending(self) -> list[Any]: ...

    def protective_exits(self, index: int) -> list[tuple[str, str]]: ...

    def equity(self) -> float: ...

    def changes(
        self, signals: Mapping[str, dict[str, Any]]
    ) -> tuple[list[PaperOrder], list[Fill], PaperCheckpoint]: ...

    def committed(self) -> None: ...

    def halt(self, now_ms: int, reason: str = ...) -> list[str]: ...

    def refuse(self, client_order_id: str, reason: str, now_ms: int) -> None: ...

    def restore(
        self,
        checkpoint: PaperCheckpoint,
        fills: Sequence[Fill],
        orders: Sequence[PaperOrder],
        applied: Sequence[AppliedAction] = (),
    ) -> list[dict[str, Any]]: ...


VenueFactory = Callable[[float, GrowingFeed], Venue]


class LoopObserver(Protocol):
    """Progress bars and metrics watch the loop through this."""

    def on_bar(self, loop: TradingLoop, seconds: float) -> None: ...

    def on_decision(self, record: DecisionRecord) -> None: ...


class TradingLoop:
    """Inject the strategy, the venue and the store; feed it `StreamEvent`s with `run`."""

    def __init__(
        self,
        *,
        account: str,
        symbols: Sequence[str],
        store: Store,
        strategy: Strategy,
        strategy_label: str,
        rules: Mapping[str, SymbolRules],
        history: Mapping[str, pd.DataFrame],
        cash: float,
        kill_switch: Path,
        limits: RiskLimits | None = None,
        sizing: Sizing | None = None,
        observers: Sequence[LoopObserver] = (),
        mode: str = "paper",
        venue: VenueFactory | None = None,
        books: Books | None = None,
        realtime: bool = False,
        exchange: str = "binance",
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        bar_every_ms: int = MINUTE_MS,
        interval: str = "1m",
        hours: TradingHours | None = None,
        actions: CorporateActions | None = None,
        shadow: TradingLoop | None = None,
        collect: bool = True,
        portfolio: Callable[[], Elsewhere] | None = None,
    ) -> None:
        self.account = account
        self.actions = actions or CorporateActions({})  # indicators read adjusted prices
        # A shadow book (agent.shadow_book): a second loop, stepped by this one on each bar.
        self.shadow = shadow
        self.interval = interval  # the feed's bars: 1m from an exchange, a user's file its own
        self.symbols = list(symbols)
        self.store = store
        unknown = [s for s in self.symbols if s not in rules]
        if unknown:
            raise UserError(
                f"no exchange rules for {', '.join(unknown)}: rules are known for "
                f"{', '.join(sorted(rules))}"
            )
        self.rules = {s: rules[s] for s in self.symbols}
        self.limits = limits or RiskLimits()
        self.kill_switch = kill_switch
        self.observers = list(observers)
        self.wall_ms = wall_ms
        self.run_id = loop_run_id(account)
        stored = load_account(store, account)
        if stored.state_json is None:
            self.state = LoopState(
                account=account,
                mode=mode,
                initial_cash=cash,
                strategy=strategy_label,
                currency=self.rules[self.symbols[0]].quote_asset,
            )
        else:  # a restart: the account keeps its own starting cash, whatever --cash says now
            self.state = LoopState.model_validate_json(stored.state_json)
        if self.state.mode != mode:
            raise UserError(
                f"account {account!r} trades in {self.state.mode} mode, not {mode}: "
                "use another --account"
            )
        if self.state.strategy != strategy_label:
            raise UserError(
                f"account {account!r} trades {self.state.strategy}, not {strategy_label}: "
                "use another --account"
            )
        self.feed = GrowingFeed(self.symbols)
        for open_time, close_time, bars in history_rows(history, self.symbols):
            self.feed.append(open_time, close_time, bars)
        make = venue or (lambda c, f: PaperExecutor(self.rules, f, cash=c))
        self.venue: Venue = make(self.state.initial_cash, self.feed)
        queued = self.venue.restore(self.state.paper, stored.fills, stored.orders, stored.actions)
        self.state = self.state.model_copy(
            update={
                "status": "running",
                "pid": os.getpid(),
                "stop_reason": None,
                "limits": self.limits,
                "bar_every_ms": bar_every_ms,
                "wall_updated_ms": wall_now_ms(),
                "waiting": None,
            }
        )
        involved = (
            {s for s, _ in self.venue.ledger.held()}
            | {q["order"]["symbol"] for q in queued}
            | {o["symbol"] for o in self.state.paper.working}
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
        # A live feed's gate judges freshness by the wall clock (STALE_DATA after a backlog),
        # and so does `_fresh`; a replay's clock is its bars. The runner passes its own views
        # to `judge`.
        self.gate_now = self.wall_ms if realtime else (lambda: self.now_ms)
        self.desk = RiskDesk(
            store,
            self.scope,
            self.limits,
            lambda: self.runner.portfolio(len(self.feed) - 1),
            lambda symbol: self.runner.market.view(symbol, len(self.feed) - 1),
            self.gate_now,
            buffered=True,
        )
        self.interventions = Catchup(store, self.scope)  # a person's resume or reset
        self.realtime = realtime  # a live feed: its bars are kept in the store as they close
        self.collect = collect  # a shadow's bars are the main loop's, kept once
        self.exchange = exchange  # whose bars they are, in the store
        self.books = books
        self.records: dict[str, DecisionRecord] = {}  # this bar's, saved with its commit
        self.signals: dict[str, dict[str, Any]] = {}  # by client order id, while queued
        # The agent's decision records are saved with each bar. Checked by attribute, so a
        # classic strategy's loop never imports the agent (and LangGraph under it).
        if hasattr(strategy, "on_decision"):
            strategy.on_decision = self._agent_record
        self.runner = Runner(
            strategy=strategy,
            market=Market(
                self.feed.view(),
                self.rules,
                book=books.quote if books else None,
                hours=hours,
                actions=self.actions,
            ),
            venue=self.venue,
            risk=self.desk,
            prepared=self._prepared,
            sizing=sizing,
            run_id=self.run_id,
            observer=self._gated,
            decision_failed=self._decision_failed,
            hours=hours,
            elsewhere=portfolio,
            # Each signal is in the store with its verdict: an unattended loop's memory must
            # not grow with every decision it ever made.
            keep_signals=False,
        )
        self._prepared_at: tuple[int, dict[str, Any]] = (-1, {})
        self.bars_this_run = 0
        self.undecided = 0  # catch-up bars stepped without decisions, not yet logged
        self._last_seen: dict[str, int] = {}  # newest bar open time per symbol, from the feed
        self._pending_since: dict[int, float] = {}  # when each waiting minute was first seen
        self._regate(queued)

    @property
    def last_open_time(self) -> int | None:
        return self.state.paper.last_open_time

    def equity(self) -> float:
        return self.venue.equity()

    def _prepared(self, symbol: str) -> dict[str, Any]:
        """A classic strategy's arrays over the bars held so far, once per bar."""
        size = len(self.feed)
        if self._prepared_at[0] != size:
            self._prepared_at = (size, {})
        cache = self._prepared_at[1]
        if symbol not in cache:
            view = self.feed.view()
            bars = self.actions.adjusted(symbol, view.open_time, view.symbols[symbol])
            cache[symbol] = self.runner.strategy.prepare(bars)
        return cache[symbol]

    def _regate(self, queued: list[dict[str, Any]]) -> None:
        """Orders that waited for the next open when the last run stopped: their signals go
        through the gate again on the restored account and bar. An order the gate would not
        approve exactly as stored (a changed or forged row) is refused, never sent."""
        if not queued:
            return
        index = len(self.feed) - 1
        for entry in queued:
            stored = entry["order"]
            signal = TradeSignal.model_validate(entry["signal"])
            verdict = self._recheck(signal, index, int(stored["created_ms"]))
            fresh = verdict.order.model_dump(mode="json") if isinstance(verdict, Approved) else {}
            same = {k: v for k, v in fresh.items() if k != "seal"} == {
                k: v for k, v in stored.items() if k != "seal"
            }
            if same:
                self.signals[stored["client_order_id"]] = entry["signal"]
                self.venue.execute(verdict.order)  # type: ignore[union-attr]
                continue
            reason = "refused on restart: the stored order is not what the gate approves now"
            log.warning("%s %s", stored["client_order_id"], reason)
            self.venue.refuse(stored["client_order_id"], reason, self.now_ms)
            self.state = self.state.model_copy(
                update={"last_error": f"{stored['client_order_id']}: {reason}"}
            )

    def _recheck(self, signal: TradeSignal, index: int, counted_ms: int) -> Verdict:
        """The gate's verdict without counting the order again (it was counted when made)."""
        state = self.desk.state
        orders = list(state.recent_orders_ms)
        if counted_ms in orders:
            orders.remove(counted_ms)
        state = state.model_copy(update={"recent_orders_ms": tuple(orders)})
        market = self.runner.market.facts(signal.symbol, index)
        portfolio = self.runner.facts(index)
        return assess_facts(signal, portfolio, market, signal.created_ms, self.limits, state)

    # -- one bar -----------------------------------------------------------------------------

    def step(self, open_time: int, bars: Mapping[str, Bar]) -> None:
        """One minute of every symbol through the runner, then one commit. A shadow steps and
        commits first: after a kill between the two commits, the restart steps this bar again
        here, and the shadow, which has it, only adds it to its feed."""
        if self.shadow is not None:
            self.shadow.step(open_time, bars)
        started = time.perf_counter()
        close_time = max(b.close_time for b in bars.values())
        newest = int(self.feed.view().open_time[-1]) if len(self.feed) else None
        if newest is not None and open_time < newest:
            log.warning("a bar of %s arrived after newer history; skipped", iso_ms(open_time))
            return
        if open_time == newest:
            index = len(self.feed) - 1  # the REST history fetched at start holds it already
            if self.last_open_time is None or open_time > self.last_open_time:
                # a row fetched while the minute was forming by the exchange's clock: the
                # stream's final bar is what the minute is decided on
                self.feed.overwrite(index, {s: b for s, b in bars.items() if b.source != "flat"})
        else:
            index = self.feed.append(open_time, close_time, bars)
        self.runner.extend(self.feed.view())
        if self.last_open_time is not None and open_time <= self.last_open_time:
            return  # committed already (only a shadow sees such a bar; see above)
        self.now_ms = close_time
        self.state = self.state.model_copy(update={"waiting": None})
        if self.realtime and self.collect:
            self._collect(bars)
        self.interventions.apply_to(self.desk)
        self._kill_switch(close_time)
        try:
            self.runner.step(index, decide=self._fresh(close_time))
            if self.runner.hours is not None:
                self._mark(index)
            self._budget_spent(close_time)
        finally:
            self.bars_this_run += 1
            self._commit(close_time)
        for observer in self.observers:
            observer.on_bar(self, time.perf_counter() - started)

    def _fresh(self, close_time: int) -> bool:
        """Whether the strategy is asked about the bar closing at `close_time`: not when it is
        older than the gate's freshness limit by the gate's clock (the minutes missed while the
        loop was down: stepped so their stops and targets fill, but a model call or an exit sent
        now on a week-old bar would be paid for or traded on what is long gone). A replay's
        clock is its bars, so a replay decides on every bar."""
        if self.gate_now() - close_time > self.limits.max_data_age_ms:
            self.undecided += 1
            return False
        self._log_undecided()
        return True

    def _log_undecided(self) -> None:
        """One line for a run of catch-up bars stepped without decisions."""
        if self.undecided:
            log.warning(
                "%d catch-up bar(s) older than risk.max_data_age_ms (%g s) stepped without "
                "decisions: stops and targets were checked, the strategy was not asked",
                self.undecided,
                self.limits.max_data_age_ms / 1000,
                extra={"account": self.account},
            )
            self.undecided = 0

    def _mark(self, index: int) -> None:
        """A stock account is valued, stored and shown at the runner's marks (the last close
        it could trade at, Market.mark_series), not the venue's last print, as a backtest
        values it. Crypto's marks are the closes the venue holds already."""
        marks = dict(self.runner.market.marks(index))
        self.venue.checkpoint = self.venue.checkpoint.model_copy(update={"marks": marks})

    def _budget_spent(self, now: int) -> None:
        """The agent stopped asking its model (--budget-usd or an llm.max_* cap spent): the
        account goes to safe mode, on record in `status`, instead of trading on ACTIVE with
        no decision behind it."""
        stopped = getattr(self.runner.strategy, "stopped", None)
        if stopped != "budget" or in_safe_mode(self.desk.state):
            return
        why = "the model's budget is spent (--budget-usd or llm.max_calls/max_tokens/max_usd)"
        self.desk.update(lambda s: on_budget_spent(s, why, now, self.limits))
        log.warning("%s: safe mode, exits only", why, extra={"account": self.account})

    def _collect(self, bars: Mapping[str, Bar]) -> None:
        """Closed bars from the exchange go to the store, so `agent-data list` shows them."""
        for symbol, bar in bars.items():
            if bar.source != "flat":
                frame = pd.DataFrame([bar.model_dump(include=set(CANDLE_COLUMNS))])
                upsert_candles(self.store, symbol, bar.interval, frame, exchange=self.exchange)

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
            log.info("halted: no decision at %s", iso_ms(now), extra={"account": self.account})

    # -- decisions -----------------------------------------------------------------------------

    def _decision_failed(self, symbol: str, now: int, exc: Exception) -> None:
        """A bug must not kill an unattended loop: it is logged and shown in `status`. A refused
        key or request stops it: every later decision would be refused the same way."""
        if isinstance(exc, UserError):
            raise exc
        log.error("decision for %s at %s failed", symbol, iso_ms(now), exc_info=exc)
        self.state = self.state.model_copy(
            update={"last_error": f"{iso_ms(now)} {symbol}: {type(exc).__name__}: {exc}"}
        )

    def _agent_record(self, record: DecisionRecord) -> None:
        """The agent's record of a decision; the runner's verdict is added when it gates."""
        self.records[record.decision_id] = record
        if record.signal is None or record.signal.get("action") == "hold":
            self._count(record)

    def _gated(self, call: GateCall) -> None:
        """The runner gated a signal: complete its decision record, keep a queued order's
        signal for the checkpoint, and say why a protective exit was refused."""
        signal, verdict, execution = call.signal, call.verdict, call.execution
        approved = isinstance(verdict, Approved)
        if approved:
            self.signals[verdict.order.client_order_id] = signal.model_dump(mode="json")
        if signal.protective:
            if approved:
                log.warning("%s: %s; exit %s", signal.symbol, signal.rationale, execution)
            else:
                reasons = "; ".join(r.message for r in verdict.reasons)
                self.state = self.state.model_copy(
                    update={
                        "last_error": f"{iso_ms(self.now_ms)} {signal.symbol}: exit vetoed: "
                        f"{reasons}"
                    }
                )
            return
        codes = {r.code for r in getattr(verdict, "reasons", [])}
        outcome = "approved" if approved else "hold" if codes == {ReasonCode.HOLD} else "vetoed"
        cut = blocked(call, self.limits, self.limits.fee_rate)
        update = {
            "outcome": outcome,
            "verdict": verdict.model_dump(mode="json"),
            "order": verdict.order.model_dump(mode="json") if approved else None,
            "execution": execution,
            "blocked": None if cut is None else cut.model_dump(),
        }
        known = self.records.get(signal.decision_id)
        if known is None:  # a classic strategy: the runner's record is the whole decision
            known = DecisionRecord(
                decision_id=signal.decision_id,
                run_id=self.run_id,
                mode="decide",
                symbol=signal.symbol,
                decided_ms=signal.created_ms,
                outcome=outcome,
                model=f"strategy:{self.state.strategy}",
                base_url="",
                prompt_version="",
                inputs_sha256="",
                signal=signal.model_dump(mode="json"),
            )
        record = known.model_copy(update=update)
        self.records[signal.decision_id] = record
        self._count(record)

    def _count(self, record: DecisionRecord) -> None:
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

    # -- the commit ----------------------------------------------------------------------------

    def heartbeat(self, closed: MarketClosed) -> None:
        """The market is shut and nothing is due: commit that the loop is alive and waits for
        the open, so `status` says so instead of stalled. A step stands for itself."""
        waiting = Waiting(next_open_ms=closed.next_open_ms, poll_every_ms=closed.poll_every_ms)
        self.state = self.state.model_copy(update={"waiting": waiting})
        self._commit(self.now_ms, equity=False)

    def _commit(self, now: int, *, equity: bool = True) -> None:
        """One transaction; the venue forgets its changes only once they are stored. Progress
        is stamped by this machine's clock, the one `status` compares it with."""
        records = list(self.records.values())
        self.state, self.signals, _ = commit_step(
            self.store,
            self.state,
            self.venue,
            self.signals,
            now_ms=now,
            wall_ms=wall_now_ms(),
            equity=self.venue.equity() if equity and self.bars_this_run > 0 else None,
            also=(self.desk.write, lambda conn: write_decisions(conn, records)),
        )
        self.desk.committed()
        self.records = {}
        for record in records:
            for observer in self.observers:
                observer.on_decision(record)

    def finish(self, status: LoopStatus, reason: str) -> None:
        """Record why the loop stopped; the last committed bar is where a restart resumes."""
        self._log_undecided()
        self.state = self.state.model_copy(update={"status": status, "stop_reason": reason})
        self._commit(self.now_ms)
        if self.shadow is not None:
            self.shadow.finish(status, reason)
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
        stopping = StopWhileWaiting(stop)
        try:
            while True:
                if stop.is_set():
                    return "stop requested"
                try:
                    with stopping.waiting():
                        event = await anext(iterator)
                except StopAsyncIteration:
                    return "the feed ended"
                except asyncio.CancelledError:
                    if stopping.stopped():  # the stream has unwound (a reconnect's sleep, say)
                        return "stop requested"
                    raise
                if isinstance(event, MarketClosed):
                    await asyncio.to_thread(self.heartbeat, event)
                    continue
                if self.books is not None:
                    await self.books.on_event(event)
                for open_time, bars in self._ready(pending, event):
                    await asyncio.to_thread(self.step, open_time, bars)
                    if max_bars is not None and self.bars_this_run >= max_bars:
                        return f"processed {max_bars} bars (--max-bars)"
                    if end_open_time is not None and open_time >= end_open_time:
                        return "the replay reached its last bar"
                    if stop.is_set():
                        return "stop requested"
        finally:
            stopping.close()

    def _ready(
        self, pending: dict[int, dict[str, Bar]], event: StreamEvent
    ) -> list[tuple[int, dict[str, Bar]]]:
        """Bars grouped by minute, stepped in order; a symbol that lacks a ready minute gets a
        flat bar at its last close (counted in the feed's `flat_bars`)."""
        if isinstance(event, Reconnected | BarGap | BarRefused):
            self._feed_event(event)
            return []
        if not isinstance(event, Bar) or event.symbol not in self.symbols:
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
        feed = self.feed.view()
        close = float(feed.symbols[symbol].close[-1]) if len(feed) else 0.0
        log.warning("%s: no bar at %s; using a flat bar at %g", symbol, iso_ms(open_time), close)
        counts = Counter(self.state.feed)
        counts["flat_bars"] += 1
        self.state = self.state.model_copy(update={"feed": dict(counts)})
        return Bar(
            symbol=symbol,
            interval=self.interval,
            source="flat",
            open_time=open_time,
            open=close,
            high=close,
            low=close,
            close=close,
            volume=0.0,
            close_time=open_time + INTERVAL_MS[self.interval] - 1,
        )

    def _feed_event(self, event: Reconnected | BarGap | BarRefused) -> None:
        counts = Counter(self.state.feed)
        update: dict[str, Any] = {}
        if isinstance(event, Reconnected):
            counts["reconnects"] += 1
        elif isinstance(event, BarRefused):
            counts["refused_bars"] += 1
            update["last_error"] = (
                f"{event.symbol}: the bar of {iso_ms(event.open_time)} refused ({event.reason})"
            )
        else:
            counts["missing_bars"] += len(event.missing_open_times)
            update["last_error"] = (
                f"{event.symbol}: {len(event.missing_open_times)} bar(s) missing ({event.reason})"
            )
        self.state = self.state.model_copy(update={**update, "feed": dict(counts)})


def history_rows(
    history: Mapping[str, pd.DataFrame], symbols: Sequence[str]
) -> list[tuple[int, int, dict[str, Any]]]:
    """The minutes every symbol's history holds, oldest first, as the feed's rows. Read a column
    at a time: a pandas lookup per minute and symbol was ~0.1 s of each loop's start on a day's
    history."""
    common = None
    for symbol in symbols:
        times = set(history[symbol]["open_time"].astype("int64").tolist())
        common = times if common is None else common & times
    opens = sorted(common or ())
    rows = {s: history[s].set_index("open_time").reindex(opens) for s in symbols}
    bars = {
        s: [
            _Row(*values)
            for values in zip(
                *(rows[s][f].astype("float64").tolist() for f in _BAR_FIELDS), strict=True
            )
        ]
        for s in symbols
    }
    closes = [rows[s]["close_time"].astype("int64").tolist() for s in symbols]
    return [
        (open_time, max(c[i] for c in closes), {s: bars[s][i] for s in symbols})
        for i, open_time in enumerate(opens)
    ]


class _Row:
    """A history row with the attribute access the feed reads from a streamed Bar."""

    def __init__(self, *values: float) -> None:
        for name, value in zip(_BAR_FIELDS, values, strict=True):
            setattr(self, name, value)
