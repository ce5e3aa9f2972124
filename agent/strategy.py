"""The LLM agent as a backtest strategy: the same graph and tools as live, decided every N minutes
on closed bars only. Stateless prompts depend on market data alone, so they are computed
concurrently up front and applied in time order; `stateful` decides bar by bar with positions.
Ctrl-C while deciding stops asking for decisions and keeps those made (stateless: the ones in
flight finish first; stateful: the interrupted one is dropped); `stopped` is then "interrupted"
and the run goes on to a partial report."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from agent.chain import DecisionChain
from agent.decide import decide, decision_prompt_version, decision_text, system_prompt
from agent.graph import AgentDeps, AgentState, model_request
from agent.in_flight import InFlight, NotSent, Turns
from agent.levels import with_levels
from agent.llm import LLMError
from agent.model import ChatModel
from agent.offline import OfflineModel
from agent.outage import OUTAGE, LLMRefused, OutageBreaker, refusal
from agent.records import DecisionRecord, loop_run_id
from agent.samples import Vote, merged_record, sample_version, vote
from execution.feed import BarArrays, SymbolBars
from market.models import INTERVAL_MS, SymbolRules
from risk.limits import RiskLimits
from risk.models import SignalSource, TradeSignal
from runtime.strategy import Context, Prepared, Strategy
from tools import MarketData, ToolEnv, decision_tools, flat_portfolio
from tools.trading import TradeIdea, to_signal

MINUTE_MS = 60_000
STOPPING_CAUSES = ("budget", "cache_miss")  # every later call would fail the same way
PARTIAL_STOPS = ("interrupted", OUTAGE)  # the report covers only the decisions made
Progress = Callable[[DecisionRecord], None]
Interrupted = Callable[[int], None]  # called with the number of requests on the wire


class AgentParams(BaseModel):
    decide_every: int = Field(15, ge=1, le=1_440, description="minutes between decisions")
    stateful: bool = Field(False, description="put positions in the prompt; decide in order")
    concurrency: int = Field(8, ge=1, le=64, description="decisions in flight at once")
    samples: int = Field(1, ge=1, le=16, description="times the model is asked per decision")


class AgentStrategy(Strategy):
    name: ClassVar[str] = "agent"
    Params: ClassVar[type[BaseModel]] = AgentParams
    source: ClassVar[SignalSource] = SignalSource.AI

    def __init__(
        self,
        params: AgentParams,
        *,
        model: ChatModel,
        market: MarketData | None,
        close_time: np.ndarray | None,
        rules: dict[str, SymbolRules],
        cash: float,
        run_id: str,
        limits: RiskLimits | None = None,
        on_decision: Progress | None = None,
        on_interrupt: Interrupted | None = None,
        trip_after: int | None = None,
        market_state: Callable[[int], str] | None = None,
    ) -> None:
        super().__init__(params)
        self.p = params
        self.model = model
        self.started = model.stats  # the model's own before this run: the run spends the rest
        self.market = market or MarketData({}, "1m")
        self._unframed: BarArrays | None = None  # bars bound but not framed for the tools yet
        self.close_time = np.empty(0, dtype=np.int64) if close_time is None else close_time
        self.rules = rules
        self.cash = cash
        self.run_id = run_id
        self.limits = limits or RiskLimits()
        self.on_decision = on_decision
        self.on_interrupt = on_interrupt
        self.market_state = market_state  # US stocks: open or closed and the next open
        # The offline model is pure CPU under the GIL: threads would only add hand-offs.
        self.workers = 1 if isinstance(model, OfflineModel) else params.concurrency
        self._in_flight = InFlight(self.workers)
        self.graph = DecisionChain()  # the graph's nodes, stepped without LangGraph
        # One registry for the run: its tool schemas are built once here, not on every decision.
        self.tools = decision_tools()
        self.tools.schemas()
        self.prompt_version = decision_prompt_version()
        self.system_prompt = system_prompt()
        self.records: dict[tuple[str, int], DecisionRecord] = {}
        self.states: dict[tuple[str, int], AgentState] = {}
        self.votes: dict[tuple[str, int], Vote] = {}  # with --samples K > 1
        self.stopped: str | None = None  # budget, cache_miss, interrupted, outage or refused
        self.refused: LLMRefused | None = None
        self.breaker = OutageBreaker(trip_after)
        self.levels: Counter[str] = Counter()  # where each --stop-loss/--take-profit came from
        self._lock = threading.Lock()
        self._precomputed = False

    def bind(self, feed: BarArrays) -> None:
        """Paper and live: the schedule follows the runner's bars at once; the tools' frames
        are built from them only when a decision needs them (most bars decide nothing). A
        backtest's bars, with its warm-up or without, are ones the tools hold already: its
        tools keep the warm-up before them."""
        if len(feed) == len(self.close_time):
            return
        self.close_time = feed.close_time
        if self._last_close() < int(feed.close_time[-1]):
            self._unframed = feed

    def _last_close(self) -> int:
        """The close of the last bar the tools hold of every symbol (-1: none)."""
        frames = [self.market.frames[s]["close_time"] for s in self.market.symbols]
        return min((int(f.iloc[-1]) if len(f) else -1 for f in frames), default=-1)

    def _frames(self) -> MarketData:
        feed, self._unframed = self._unframed, None
        if feed is not None:
            frames = {
                symbol: pd.DataFrame(
                    {
                        "open_time": feed.open_time,
                        "open": bars.open,
                        "high": bars.high,
                        "low": bars.low,
                        "close": bars.close,
                        "volume": bars.volume,
                        "close_time": feed.close_time,
                    }
                )
                for symbol, bars in feed.symbols.items()
            }
            self.market = MarketData(
                frames,
                self.market.interval,
                self.market.indicator_config,
                exchange=self.market.exchange,
            )
        return self.market

    @property
    def warmup(self) -> int:
        return self.market.indicator_config.sma_slow

    @property
    def cadence_min(self) -> int:
        """The minutes between decisions on these bars: a decision waits for a bar's close, so
        a `decide_every` finer than the bars, or out of step with them, falls where both meet
        (15 on 1h bars decides hourly; 90 on 1h bars every 3 h)."""
        every = self.p.decide_every * MINUTE_MS
        return math.lcm(every, INTERVAL_MS[self.market.interval]) // MINUTE_MS

    @property
    def warmup_left(self) -> int:
        """The warm-up still inside the run's bars: none when the tools hold as many bars before
        them (a backtest's warm-up, as the paper loop's history)."""
        if not len(self.close_time):
            return self.warmup
        first = int(self.close_time[0])
        held = [self.market.visible_rows(s, first - 1) for s in self.market.symbols]
        return max(self.warmup - min(held, default=0), 0)

    def schedule(self) -> np.ndarray:
        """Decision bars: every `decide_every` minutes on the clock, after the warm-up."""
        step = self.p.decide_every * MINUTE_MS
        mask = (self.close_time + 1) % step == 0
        mask[: self.warmup_left] = False
        return mask

    def prepare(self, bars: SymbolBars) -> Prepared:
        return {"wake": self.schedule()}

    def wake(self, prepared: Prepared) -> np.ndarray:
        return prepared["wake"]

    def planned(self) -> int:
        """Decisions the run will ask for (the last bar never decides: it could not fill)."""
        return int(self.schedule()[:-1].sum()) * len(self.market.symbols)

    def first_decision(self) -> tuple[str, ToolEnv]:
        """The run's first planned decision: its symbol and what its tools see (for the
        pre-run estimate; the run must plan at least one decision)."""
        now = int(self.close_time[:-1][self.schedule()[:-1]][0])
        return self.market.symbols[0], self._env(now, None)

    def decide(self, ctx: Context) -> list[TradeSignal]:
        key = (ctx.symbol, ctx.time_ms)
        if not self.p.stateful and not self._precomputed:
            self._precompute()
        if self.p.stateful and self.stopped is None and key not in self.states:
            try:
                self._run_one(ctx.symbol, ctx.time_ms, ctx)
            except KeyboardInterrupt:  # Ctrl-C: this decision is dropped, the earlier ones kept
                self.stopped = "interrupted"
                if self.on_interrupt is not None:
                    self.on_interrupt(0)
        if self.refused is not None:
            raise self.refused
        state = self.states.get(key)
        if state is None:
            return []
        abstain = state.get("abstain")
        if ctx.llm_result is not None and (abstain or {}).get("cause") not in STOPPING_CAUSES:
            ctx.llm_result(abstain is None, ctx.time_ms)
        idea = state.get("signal")
        if idea is None or idea["action"] == "hold":
            return []
        env = self._env(ctx.time_ms, ctx)
        env.decision_id = state["decision_id"]
        signal = to_signal(env, TradeIdea.model_validate(idea))
        ballot = self.votes.get(key)
        if ballot is not None:
            signal = signal.model_copy(update={"agreement": ballot.agreement})
        signal, used = with_levels(
            signal,
            ctx.close,
            ctx.position,
            ctx.stop_loss_pct,
            ctx.take_profit_pct,
            ctx.trailing_stop_pct,
        )
        self.levels.update(used)
        return [signal]

    # -- running decisions ----------------------------------------------------------------------

    def _env(self, now_ms: int, ctx: Context | None) -> ToolEnv:
        """A stateful decision sees the runner's account, risk state and market view; a
        stateless one (decided up front, concurrently) a flat account and market data alone."""
        if ctx is None or not self.p.stateful:
            return ToolEnv(
                market=self.market,
                now_ms=now_ms,
                rules=self.rules,
                portfolio=flat_portfolio(self.cash),
                limits=self.limits,
                stateful=False,
                market_state=self.market_state,
            )
        return ToolEnv(
            market=self._frames(),
            now_ms=now_ms,
            rules=self.rules,
            portfolio=ctx.portfolio,
            limits=self.limits,
            risk_state=ctx.risk_state,
            view=ctx.market_view,
            market_state=self.market_state,
        )

    def _deps(
        self, now_ms: int, ctx: Context | None, index: int, turns: Turns | None = None
    ) -> AgentDeps:
        return AgentDeps(
            model=self.model,
            tools=self.tools,
            env=self._env(now_ms, ctx),
            system_prompt=self.system_prompt,
            prompt_version=sample_version(self.prompt_version, index),
            run_id=self.run_id,
            turns=turns,
        )

    def _ask(
        self, symbol: str, now_ms: int, ctx: Context | None, index: int, turns: Turns
    ) -> AgentState:
        return decide(self.graph, self._deps(now_ms, ctx, index, turns), symbol)

    def cached_decisions(self) -> int:
        """How many planned decisions the model would answer from its cache, every sample's
        first call: none for a stateful run, whose prompts hold positions not reached yet."""
        if self.p.stateful:
            return 0
        times = self.close_time[:-1][self.schedule()[:-1]].tolist()
        return sum(
            all(self._first_answer_cached(symbol, int(t), i) for i in range(self.p.samples))
            for t in times
            for symbol in self.market.symbols
        )

    def _first_answer_cached(self, symbol: str, now_ms: int, index: int = 0) -> bool:
        """Whether the model would answer this decision's first call (of sample `index`) from
        its cache."""
        cached = getattr(self.model, "cached", None)
        if cached is None:
            return False
        deps = self._deps(now_ms, None, index)
        turn = {"role": "user", "content": decision_text(deps.env, symbol)}
        try:
            messages, tools, options = model_request(deps, "decide", symbol, [turn])
        except LLMError:  # the format probe failed: the decision itself meets it and abstains
            return False
        return bool(cached(messages, tools, deps.prompt_version, options))

    def _sampled(self, symbol: str, now_ms: int, ctx: Context | None, turns: Turns) -> AgentState:
        """K samples and their vote; a sample that must stop the run (budget, cache miss, a
        refused key) ends the asking and stands for the decision, as a single answer would."""
        states: list[AgentState] = []
        for index in range(self.p.samples):
            state = self._ask(symbol, now_ms, ctx, index, turns)
            abstain = state.get("abstain")
            stops = (abstain or {}).get("cause") in STOPPING_CAUSES
            if stops or refusal(abstain, True, self.model.base_url) is not None:
                return state
            states.append(state)
        if self.p.samples == 1:
            return states[0]
        ballot = vote([dict(s) for s in states])
        chosen = states[ballot.chosen]
        record = merged_record([dict(s) for s in states], ballot, self.prompt_version)
        with self._lock:
            self.votes[(symbol, now_ms)] = ballot
        return AgentState(**{**chosen, "record": record})  # type: ignore[typeddict-item]

    def _run_one(self, symbol: str, now_ms: int, ctx: Context | None = None) -> None:
        turns = self._in_flight.turns(rank=now_ms)  # the run's earliest decisions go first
        try:
            state = self._sampled(symbol, now_ms, ctx, turns)
            record = DecisionRecord.model_validate(state["record"])
            tripped = self.breaker.observe(state)
            refused = refusal(state.get("abstain"), self.breaker.answered, self.model.base_url)
            with self._lock:
                self.states[(symbol, now_ms)] = state
                self.records[(symbol, now_ms)] = record
                cause = (state.get("abstain") or {}).get("cause")
                if refused is not None and self.refused is None:
                    self.refused, self.stopped = refused, "refused"
                elif tripped and self.stopped is None:
                    self.stopped = OUTAGE
                elif cause in STOPPING_CAUSES and self.stopped is None:
                    self.stopped = cause
            if self.stopped is not None:  # decisions that have sent nothing yet are not sent
                self._in_flight.close(every=self.stopped in (*STOPPING_CAUSES, "refused"))
        finally:
            turns.finish()
        if self.on_decision is not None:
            self.on_decision(record)

    def _precompute(self) -> None:
        """All stateless decisions, submitted in time order so a budget stop or Ctrl-C keeps a
        prefix of the run; later decisions are not made. Twice `workers` decisions run at once:
        `workers` requests on the wire, and as many next ones built and waiting for their turn."""
        self._precomputed = True
        for symbol in self.market.symbols:
            self.market.indicators(symbol, 0)  # compute once, before the threads share it
        times = self.close_time[:-1][self.schedule()[:-1]].tolist()
        planned = [(s, int(t)) for t in times for s in self.market.symbols]
        jobs = iter(planned)
        # With nothing to wait for (the offline model, or answers already in the cache)
        # decisions run in this thread: threads would only hand the GIL around. The first
        # decision that sends a request hands the rest to the pool.
        offline = isinstance(self.model, OfflineModel)
        inline = offline or (bool(planned) and self._first_answer_cached(*planned[0]))
        if not inline:
            self.model.open()
        ahead = 2 * self.workers
        pool = ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="decide")
        running: set[Future[Any]] = set()
        try:
            while True:
                while self.stopped is None and len(running) < ahead:
                    job = next(jobs, None)
                    if job is None:
                        break
                    if inline and not running:
                        sent = self.model.stats.calls
                        self._run_one(*job)
                        inline = offline or self.model.stats.calls == sent
                        continue
                    running.add(pool.submit(self._run_one, *job))
                if not running:
                    break
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    if not isinstance(future.exception(), NotSent):
                        future.result()
        except KeyboardInterrupt:  # Ctrl-C: keep what was decided, report it as partial
            self.stopped = "interrupted"
            self._in_flight.close()
            if self.on_interrupt is not None:
                self.on_interrupt(self._in_flight.sending)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def trading_agent(
    model: ChatModel,
    rules: dict[str, SymbolRules],
    *,
    account: str,
    decide_every: int,
    cash: float,
    limits: RiskLimits | None = None,
    market_state: Callable[[int], str] | None = None,
) -> AgentStrategy:
    """The agent as the unattended loop runs it: stateful, one decision at a time, on the bars
    the runner hands it."""
    return AgentStrategy(
        AgentParams(decide_every=decide_every, stateful=True, concurrency=1),
        model=model,
        market=None,
        close_time=None,
        rules=rules,
        cash=cash,
        run_id=loop_run_id(account),
        limits=limits,
        market_state=market_state,
    )
