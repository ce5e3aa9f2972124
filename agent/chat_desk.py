"""The chat's paper account: the paper venue, market view, portfolio view and persisted risk desk
that `agent-trade` runs on, stepped by the one runner, with orders that come from a person's
approvals instead of a strategy. Stored like an `agent-trade` account, so a position bought in
one session is there to sell in the next.

The chat's clock is its market data's: each closed bar the data adds is stepped through the
runner (its open fills what waits, its close marks the account). With Binance, bars close as
time passes; the bundled sample is frozen, so there an approval plays the next bar of the sample,
whose open fills the order, exactly as it would live (docs/fills.md).

With `agent-ui --mode testnet` the venue is Binance's spot testnet behind the signed executor
instead (execution.venues.binance_venue): the same gate and approval, market orders sent at
once, the account reconciled with the exchange at start."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from agent.loop_state import CHAT_STRATEGY, LoopState, risk_scope
from agent.step_commit import commit_step
from agent.trading_loop import Venue, history_rows
from core.errors import UserError
from execution.feed import SymbolBars
from execution.paper import GrowingFeed, PaperExecutor
from execution.paper_records import load_account
from execution.venues import VenueFactory, reconcile
from market.models import SymbolRules, iso_ms
from risk.desk import RiskDesk
from risk.limits import RiskLimits
from risk.models import ApprovedOrder, MarketView, PortfolioView, TradeSignal, Verdict
from risk.protections import TradingState
from risk.records import load_state
from runtime.market import Market
from runtime.runner import Runner
from runtime.strategy import Prepared, Strategy
from tools.env import AccountBook, OpenOrder

SAMPLE_START_BARS = 1_500  # on the frozen sample: a day of history and an hour, then trade


class NoParams(BaseModel):
    pass


class PersonDecides(Strategy):
    """The chat account's runner decides nothing itself: a person's approved proposals reach
    the venue through the graph's gate and approval nodes."""

    name = CHAT_STRATEGY
    Params = NoParams

    def __init__(self) -> None:
        super().__init__(NoParams())

    @property
    def warmup(self) -> int:
        return 0

    def prepare(self, bars: SymbolBars) -> Prepared:
        return {"close": bars.close}

    def wake(self, prepared: Prepared) -> np.ndarray:
        return np.zeros(len(prepared["close"]), dtype=bool)

    def decide(self, ctx: Any) -> list[TradeSignal]:
        return []


class ChatDesk:
    """One paper account for the chat. `frozen`: the data never grows by itself (the bundled
    sample), so an approval steps one bar; otherwise `refresh` steps the bars that closed."""

    def __init__(
        self,
        store: Any,
        account: str,
        frames: Mapping[str, pd.DataFrame],
        rules: Mapping[str, SymbolRules],
        *,
        cash: float,
        limits: RiskLimits,
        frozen: bool,
        venue: VenueFactory,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        mode: str = "paper",
    ) -> None:
        self.store, self.account, self.frozen, self.wall_ms = store, account, frozen, wall_ms
        self.mode = mode
        symbols = list(frames)
        self.rules = {s: rules[s] for s in symbols}
        stored = load_account(store, account)
        if stored.state_json is None:
            self.state = LoopState(
                account=account, mode=mode, initial_cash=cash, strategy=CHAT_STRATEGY
            )
        else:
            self.state = LoopState.model_validate_json(stored.state_json)
        if self.state.strategy != CHAT_STRATEGY:
            raise UserError(
                f"account {account!r} is an agent-trade account ({self.state.mode}, "
                f"{self.state.strategy}): give the chat its own account"
            )
        if self.state.mode != mode:
            raise UserError(
                f"chat account {account!r} trades in {self.state.mode} mode, not {mode}: "
                "give this mode its own --account"
            )
        self._rows = history_rows(frames, symbols)
        if not self._rows:
            raise UserError(f"no minute that {', '.join(symbols)} all have: nothing to trade on")
        start = self.state.paper.last_open_time
        if start is None:
            first = min(SAMPLE_START_BARS, len(self._rows)) - 1 if frozen else -1
            start = self._rows[first][0]
        self.feed = GrowingFeed(symbols)
        for open_time, close_time, bars in self._rows:
            if open_time <= start:
                self.feed.append(open_time, close_time, bars)
        if not len(self.feed):  # away longer than the data reaches back: resume at its start
            self.feed.append(*self._rows[0])
            gap = f"bars from {iso_ms(start)} to {iso_ms(self._rows[0][0])} UTC were not stepped"
            self.state = self.state.model_copy(update={"last_error": gap})
        self.venue: Venue = venue(self.state.initial_cash, self.feed)
        queued = self.venue.restore(self.state.paper, stored.fills, stored.orders, stored.actions)
        self.fills = list(stored.fills)
        if mode != "paper":  # the exchange holds the truth: agree with it before trading
            reconcile(self.venue, mode, account)  # type: ignore[arg-type]
        self.state = self.state.model_copy(
            update={"status": "running", "pid": os.getpid(), "stop_reason": None}
        )
        self.scope = risk_scope(account)
        self.risk = RiskDesk(store, self.scope, limits, self.portfolio, self.view, self.gate_now)
        self.runner = Runner(
            strategy=PersonDecides(),
            market=Market(self.feed.view(), self.rules),
            venue=self.venue,
            risk=self.risk,
            prepared=lambda symbol: {},
            run_id=f"chat-{account}",
            keep_signals=False,  # the store keeps each with its verdict, not the desk's memory
        )
        self._signals: dict[str, dict[str, Any]] = {}  # by decision id, from the gate
        self._queued: dict[str, dict[str, Any]] = {}  # by client order id, until it fills
        for entry in queued:  # a person approved it for an open that passed while we were down
            cid = entry["order"]["client_order_id"]
            self.venue.refuse(cid, "cancelled: agent-ui restarted before its open", self.now_ms)
        self.commit()

    # -- the clock -------------------------------------------------------------------------

    @property
    def index(self) -> int:
        return len(self.feed) - 1

    @property
    def now_ms(self) -> int:
        """The close of the last bar stepped: the decision time of the chat's tools."""
        return int(self.feed.view().close_time[-1])

    def gate_now(self) -> int:
        """The gate judges freshness by the wall clock on live data, by the bars on the sample."""
        return self.now_ms if self.frozen else self.wall_ms()

    def refresh(self, frames: Mapping[str, pd.DataFrame]) -> int:
        """Live data grew: step every bar that closed since the last one. Returns how many."""
        self._rows = history_rows(frames, list(self.feed.symbols))
        self.reload_risk()
        return self._advance(None)

    def _advance(self, limit: int | None) -> int:
        last = int(self.feed.view().open_time[-1])
        ahead = [row for row in self._rows if row[0] > last][:limit]
        for open_time, close_time, bars in ahead:
            index = self.feed.append(open_time, close_time, bars)
            self.runner.extend(self.feed.view())
            self.runner.step(index, decide=False)
        if ahead:
            self.commit()
        return len(ahead)

    # -- the views the gate and the tools read -------------------------------------------------

    def portfolio(self) -> PortfolioView:
        return self.runner.portfolio(self.index)

    def view(self, symbol: str) -> MarketView:
        return self.runner.market.view(symbol, self.index)

    def book(self) -> AccountBook:
        """What `get_portfolio` and the Trading tab add to the gate's view of the account."""
        ledger = self.venue.ledger
        return AccountBook(
            account=self.account,
            initial_cash_usdt=round(self.state.initial_cash, 2),
            realised_pnl_usdt=round(ledger.realised, 2),
            unrealised_pnl_usdt=round(ledger.unrealised(self.runner.market.marks(self.index)), 2),
            fees_usdt=round(ledger.fees, 2),
            fills=len(self.fills),
            open_orders=[
                OpenOrder(
                    client_order_id=o.client_order_id,
                    symbol=o.symbol,
                    side=o.side,
                    order_type=o.order_type,
                    quantity=o.quantity,
                    status=o.status,
                )
                for o in self.venue.orders.values()
                if o.status in ("accepted", "open")
            ],
        )

    # -- the graph's gate and venue --------------------------------------------------------

    def reload_risk(self) -> None:
        """Take the risk state as stored: a kill switch pulled (or cleared) elsewhere applies to
        the next message at once, and an approved order still waiting for its open is cancelled
        before that open comes, on record with the halt's reason."""
        self.risk.state = load_state(self.store, self.scope)
        halts = [
            lock
            for lock in self.risk.state.active_locks(self.gate_now())
            if lock.level is TradingState.HALTED
        ]
        if halts:
            why = "; ".join(f"{lock.code.value}: {lock.message}" for lock in halts)
            if self.venue.halt(self.now_ms, f"halted ({why})"):
                self.commit()

    def review(self, signal: TradeSignal) -> Verdict:
        self._signals[signal.decision_id] = signal.model_dump(mode="json")
        return self.risk.review(signal)

    def preview(self, signal: TradeSignal) -> Verdict:
        self._signals[signal.decision_id] = signal.model_dump(mode="json")
        return self.risk.preview(signal)

    def llm_result(self, ok: bool) -> None:
        self.risk.llm_result(ok)

    def execute(self, order: ApprovedOrder) -> dict[str, Any]:
        """A person approved it: the paper venue takes it for the next bar's open; on the frozen
        sample that bar is played at once."""
        result = self.venue.execute(order)
        self._queued[order.client_order_id] = self._signals.get(order.decision_id, {})
        self.commit()
        if self.frozen and not self._advance(1):
            result["note"] = "the sample has no later bar: the order waits for one"
        known = self.venue.orders[order.client_order_id]
        fills = [f for f in self.fills if f.order_id == order.client_order_id]
        return {
            **result,
            "status": known.status,
            "fills": [
                {
                    "time": iso_ms(f.time_ms),
                    "quantity": f.quantity,
                    "price": f.price,
                    "fee_usdt": round(f.fee, 6),
                }
                for f in fills
            ],
        }

    def cancel(self, client_order_id: str) -> str:
        if not isinstance(self.venue, PaperExecutor):
            return f"not cancelled: {self.mode} orders are market orders, filled when sent"
        said = self.venue.cancel(client_order_id, self.now_ms)
        self.commit()
        return said

    # -- the store ---------------------------------------------------------------------------

    def commit(self) -> None:
        """Orders, fills, equity and checkpoint in one transaction, as the loop writes them."""
        self.state, self._queued, fills = commit_step(
            self.store,
            self.state,
            self.venue,
            self._queued,
            now_ms=self.now_ms,
            wall_ms=self.wall_ms(),
            equity=self.runner.equity(self.index),
        )
        self.fills += fills
