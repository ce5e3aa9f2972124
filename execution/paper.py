"""Paper trading: the backtest's fill model (SimulatedExecutor) run bar by bar on a live or
replayed feed. An order is accepted at the decision and placed at the next bar's open, exactly
as in a backtest (docs/fills.md), and the whole account can be checkpointed and restored; an
order still waiting for its open is stored with the signal that made it, re-gated on restart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from execution.corporate import AppliedAction, rebuild_ledger
from execution.feed import BarArrays, SymbolBars
from execution.fees import FeeFn, FeeSchedule, Liquidity
from execution.ledger import Ledger
from execution.orders import Bracket, ExitReason, Fill, Pending, WorkingOrder
from execution.simulator import SimulatedExecutor
from execution.slippage import FixedBps, Slippage
from market.corporate import CorporateActions
from market.models import Candle, SymbolRules
from risk.approval import verify_approved
from risk.models import ApprovedOrder, OrderType

OrderStatus = Literal["accepted", "open", "filled", "rejected", "cancelled", "unknown"]
_FIELDS = ("open", "high", "low", "close", "volume")


class PaperOrder(BaseModel):
    """What the paper venue knows of one order; persisted, so a restart knows it too."""

    model_config = ConfigDict(frozen=True)

    client_order_id: str
    decision_id: str
    symbol: str
    side: str
    order_type: str
    quantity: str
    status: OrderStatus
    filled_quantity: float = 0.0
    average_price: float | None = None
    reason: str | None = None
    stop_loss: float | None = None  # the protective levels an entry carried
    take_profit: float | None = None
    trailing_stop_pct: float | None = None
    accepted_ms: int
    updated_ms: int


class PaperCheckpoint(BaseModel):
    """Everything but the fills (which rebuild the ledger): orders waiting for the next open,
    orders resting in the book, SL/TP and trailing-stop brackets, and the last bar processed."""

    bars: int = 0  # bars processed by this account, over all restarts
    last_open_time: int | None = None
    marks: dict[str, float] = {}
    queued: list[dict[str, Any]] = []
    working: list[dict[str, Any]] = []
    brackets: list[dict[str, Any]] = []


class GrowingFeed:
    """BarArrays that grow one bar at a time (amortised doubling), in the layout the fill model
    reads; indices count from this process's first bar."""

    def __init__(self, symbols: Sequence[str], capacity: int = 1_024) -> None:
        self.symbols = list(symbols)
        self._size = 0
        self._times = np.empty((2, capacity), dtype=np.int64)
        self._values = {s: np.empty((len(_FIELDS), capacity)) for s in self.symbols}

    def __len__(self) -> int:
        return self._size

    def append(self, open_time: int, close_time: int, bars: Mapping[str, Candle]) -> int:
        if self._size == self._times.shape[1]:
            self._times = np.concatenate([self._times, np.empty_like(self._times)], axis=1)
            self._values = {
                s: np.concatenate([v, np.empty_like(v)], axis=1) for s, v in self._values.items()
            }
        index = self._size
        self._times[:, index] = (open_time, close_time)
        self._size += 1
        self.overwrite(index, bars)
        return index

    def overwrite(self, index: int, bars: Mapping[str, Candle]) -> None:
        """Set the values of the bars given at `index` (a final bar over a partial row)."""
        for symbol, bar in bars.items():
            self._values[symbol][:, index] = [getattr(bar, f) for f in _FIELDS]

    def view(self) -> BarArrays:
        n = self._size
        return BarArrays(
            open_time=self._times[0, :n],
            close_time=self._times[1, :n],
            symbols={s: SymbolBars(*v[:, :n]) for s, v in self._values.items()},
        )


class PaperExecutor:
    """The paper venue: the backtest's fill model on the loop's growing feed, plus the order
    records and the checkpoint a restart needs. Orders enter only through `execute`."""

    def __init__(
        self,
        rules: Mapping[str, SymbolRules],
        feed: GrowingFeed,
        *,
        cash: float,
        fees: FeeFn | None = None,
        slippage: Slippage | None = None,
        symbol_slippage: Mapping[str, Slippage] | None = None,
        actions: CorporateActions | None = None,
    ) -> None:
        self.rules = dict(rules)
        self.ledger = Ledger(cash)
        self.feed = feed
        self.sim = SimulatedExecutor(
            feed.view(), self.ledger, self.rules, fees=fees or FeeSchedule(),
            slippage=slippage or FixedBps(bps=2.0), actions=actions,
        )  # fmt: skip
        self.sim.symbol_slippage = dict(symbol_slippage or {})
        self.orders: dict[str, PaperOrder] = {}
        self.checkpoint = PaperCheckpoint()
        self.changed: dict[str, PaperOrder] = {}  # orders touched since the last commit
        self.new_fills: list[Fill] = []
        self.new_actions: list[AppliedAction] = []  # splits and dividends, stored with the bar
        self._regating: set[str] = set()  # stored as waiting; the gate is asked again

    # -- the runner's venue ------------------------------------------------------------------

    def execute(self, order: ApprovedOrder) -> dict[str, Any]:
        """Accept a sealed order for the next bar's open; the same id twice is not re-sent."""
        approved = verify_approved(order)
        cid = approved.client_order_id
        known = self.orders.get(cid)
        if known is not None and cid not in self._regating:
            return {**_summary(known), "status": "duplicate", "was": known.status}
        self._regating.discard(cid)  # re-approved after a restart: it waits for its open again
        self.sim.accept(approved)
        self._set(
            PaperOrder(
                client_order_id=approved.client_order_id,
                decision_id=approved.decision_id,
                symbol=approved.symbol,
                side=approved.side.value,
                order_type=approved.order_type.value,
                quantity=str(approved.quantity),
                status="accepted",
                accepted_ms=approved.created_ms,
                updated_ms=approved.created_ms,
            )
        )
        return {**_summary(self.orders[approved.client_order_id]), "fills": "at the next open"}

    def pending(self) -> list[Pending]:
        return self.sim.pending()

    def on_bar(self, index: int, *, fills: bool = True) -> None:
        """Bar `index` of the feed: resting orders at its open, then the accepted ones placed
        there, then everything against its high and low, as in a backtest (none of it outside
        market hours)."""
        sim = self.sim
        sim.feed = self.feed.view()
        fills_before, rejections_before = len(sim.fills), len(sim.rejections)
        actions_before = len(sim.applied)
        placed = sim.on_bar(index, fills=fills)
        self.new_actions.extend(sim.applied[actions_before:])
        fills = sim.fills[fills_before:]
        close_time = int(sim.feed.close_time[index])
        self._after_bar(placed, fills, sim.rejections[rejections_before:], close_time)
        self.new_fills.extend(fills)
        self.checkpoint = self.checkpoint.model_copy(
            update={
                "bars": self.checkpoint.bars + 1,
                "last_open_time": int(sim.feed.open_time[index]),
                "marks": {s: float(b.close[index]) for s, b in sim.feed.symbols.items()},
            }
        )

    def protective_exits(self, index: int) -> list[tuple[str, str]]:
        """None to send: stops and targets fill inside the fill model, as in a backtest."""
        return []

    def _after_bar(
        self, placed: list[ApprovedOrder], fills: list[Fill], rejections: list, now_ms: int
    ) -> None:
        resting = {order.order_id for order in self.sim.working}
        for order in placed:
            cid = order.client_order_id
            self._set(self.orders[cid].model_copy(update={"status": "open", "updated_ms": now_ms}))
        for fill in fills:
            known = self.orders.get(fill.order_id)
            if known is None:  # a stop-loss or take-profit exit the venue created itself
                known = PaperOrder(
                    client_order_id=fill.order_id,
                    decision_id="",
                    symbol=fill.symbol,
                    side="buy" if fill.side > 0 else "sell",
                    order_type=OrderType.MARKET.value,
                    quantity=repr(fill.quantity),
                    status="open",
                    reason=fill.reason.value,
                    accepted_ms=fill.time_ms,
                    updated_ms=fill.time_ms,
                )
            filled = known.filled_quantity + fill.quantity
            average = ((known.average_price or 0.0) * known.filled_quantity) + (
                fill.price * fill.quantity
            )
            self._set(
                known.model_copy(
                    update={
                        "filled_quantity": filled,
                        "average_price": average / filled,
                        "updated_ms": now_ms,
                    }
                )
            )
        for rejection in rejections:
            self.refuse(rejection.order_id, f"{rejection.code}: {rejection.message}", now_ms)
        for cid, known in list(self.changed.items()):
            if known.status == "open" and cid not in resting:
                self._set(known.model_copy(update={"status": "filled"}))

    def cancel(self, client_order_id: str, now_ms: int) -> str:
        """A person's cancel of one order that has not filled; says what became of it."""
        known = self.orders.get(client_order_id)
        if known is None:
            return f"no order {client_order_id} on this account"
        if not self.sim.cancel(client_order_id):
            return f"not cancelled: the order is {known.status}"
        self._cancelled(client_order_id, "cancelled by the user", now_ms)
        return "cancelled"

    def refuse(self, client_order_id: str, reason: str, now_ms: int) -> None:
        """Record an order as rejected (by the fill model or a restart's re-check)."""
        self._end(client_order_id, "rejected", reason, now_ms)

    def _cancelled(self, client_order_id: str, reason: str, now_ms: int) -> None:
        self._end(client_order_id, "cancelled", reason, now_ms)

    def _end(self, client_order_id: str, status: OrderStatus, reason: str, now_ms: int) -> None:
        known = self.orders.get(client_order_id)
        if known is not None:
            update = {"status": status, "reason": reason, "updated_ms": now_ms}
            self._set(known.model_copy(update=update))

    def _set(self, order: PaperOrder) -> None:
        self.orders[order.client_order_id] = order
        self.changed[order.client_order_id] = order

    # -- the account -----------------------------------------------------------------------

    def equity(self) -> float:
        return self.ledger.equity(self.checkpoint.marks)

    # -- persistence -----------------------------------------------------------------------

    def changes(
        self, signals: Mapping[str, dict[str, Any]]
    ) -> tuple[list[PaperOrder], list[Fill], PaperCheckpoint]:
        """What changed since the last commit, and the checkpoint to store with it atomically;
        kept until `committed`, so a failed save loses nothing. An order still waiting for the
        next open is stored with its signal (from `signals`, by client order id): a restart
        re-gates the signal, never trusting a sealed order read back from disk."""
        changed, fills = list(self.changed.values()), list(self.new_fills)
        position = len(self.feed)
        self.sim.settle_trails(position)  # a trailing stop keeps its level, not old bars
        checkpoint = self.checkpoint.model_copy(
            update={
                "queued": [
                    {"signal": signals[o.client_order_id], "order": o.model_dump(mode="json")}
                    for o in self.sim.accepted
                ],
                "working": [_relative(asdict(w), position) for w in self.sim.working],
                "brackets": [_relative(asdict(b), position) for b in self.sim.brackets.values()],
            }
        )
        return changed, fills, checkpoint

    def committed(self) -> None:
        self.changed, self.new_fills, self.new_actions = {}, [], []

    def halt(self, now_ms: int, reason: str = "halted") -> list[str]:
        """HALTED: entries not yet placed or still resting are cancelled, each recorded with
        the reason; the brackets that protect open positions stay. Returns the cancelled ids."""
        resting = [o for o in self.sim.working if not o.reduce_only]
        cancelled = [o.client_order_id for o in self.sim.cancel_accepted()]
        for order in resting:
            self.sim.working.remove(order)
        ids = [*cancelled, *(o.order_id for o in resting)]
        for cid in ids:
            self._cancelled(cid, f"cancelled: {reason}", now_ms)
        return ids

    def restore(
        self,
        checkpoint: PaperCheckpoint,
        fills: Sequence[Fill],
        orders: Sequence[PaperOrder],
        applied: Sequence[AppliedAction] = (),
    ) -> list[dict[str, Any]]:
        """Rebuild from the store: the ledger from every fill in order with the splits and
        dividends it took between them (which are not taken again), resting orders and
        brackets from the checkpoint (bar indices relative to the bar after the last one).
        Returns the orders that were waiting for the next open, for the runner to re-gate."""
        rebuild_ledger(self.ledger, fills, applied)
        self.sim.applied.extend(applied)
        self.sim.fills.extend(fills)
        self.orders = {o.client_order_id: o for o in orders}
        position = len(self.feed)  # the next bar's index in this process's feed
        self.sim.working = [_working(_absolute(w, position)) for w in checkpoint.working]
        self.sim.brackets = {
            b["symbol"]: Bracket(**_absolute(b, position)) for b in checkpoint.brackets
        }
        self.checkpoint = checkpoint.model_copy(
            update={"queued": [], "working": [], "brackets": []}
        )
        self._regating = {q["order"]["client_order_id"] for q in checkpoint.queued}
        return list(checkpoint.queued)


def _summary(order: PaperOrder) -> dict[str, Any]:
    return {
        "status": order.status,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side,
        "quantity": order.quantity,
    }


_BAR_FIELDS = ("submitted_bar", "active_from", "last_fill_bar", "created_bar", "trail_next")


def _relative(fields: dict[str, Any], position: int) -> dict[str, Any]:
    """Bar indices as offsets from the next bar, so a new process (whose feed holds other
    history) keeps every comparison the fill model makes."""
    out = {k: (v - position if k in _BAR_FIELDS else v) for k, v in fields.items()}
    for key in ("kind", "reason"):
        if key in out:
            out[key] = str(out[key].value)
    return out


def _absolute(fields: dict[str, Any], position: int) -> dict[str, Any]:
    """The inverse of `_relative` in this process, whose next bar has index `position`."""
    return {k: (v + position if k in _BAR_FIELDS else v) for k, v in fields.items()}


def _working(fields: dict[str, Any]) -> WorkingOrder:
    return WorkingOrder(
        **{**fields, "kind": OrderType(fields["kind"]), "reason": ExitReason(fields["reason"])}
    )


def fill_from_row(row: Mapping[str, Any]) -> Fill:
    return Fill(
        row["order_id"],
        row["symbol"],
        int(row["side"]),
        float(row["quantity"]),
        float(row["price"]),
        float(row["fee"]),
        Liquidity(row["liquidity"]),
        int(row["bar"]),
        int(row["time_ms"]),
        ExitReason(row["reason"]),
    )
