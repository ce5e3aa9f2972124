"""Testnet or live trading for the loop: gate-approved orders go to Binance through the signed
executor, Binance's own fills are booked in the same ledger a paper account uses, and protective
stops and targets are watched on closed bars, because Binance spot has no bracket order: when one
is crossed the loop sends a reduce-only exit through the gate."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from execution.binance_executor import BinanceExecutor, OrderOutcomeUnknown, OrderStatus
from execution.fees import Liquidity
from execution.ledger import Ledger
from execution.orders import ExitReason, Fill, Pending
from execution.paper import GrowingFeed, PaperCheckpoint, PaperOrder
from market.binance_rest import BinanceError
from market.models import SymbolRules
from risk.approval import verify_approved
from risk.models import ApprovedOrder, OrderType

log = logging.getLogger(__name__)

_STATUS = {"FILLED": "filled", "NEW": "open", "PARTIALLY_FILLED": "open"}
_TOLERANCE = Decimal("0.00000001")


class BinanceVenue:
    """The loop's venue for `--mode testnet|live`; the same surface as PaperExecutor."""

    def __init__(
        self,
        executor: BinanceExecutor,
        rules: Mapping[str, SymbolRules],
        feed: GrowingFeed,
        *,
        cash: float,
        journal: Callable[[PaperOrder], None] = lambda order: None,
    ) -> None:
        self.executor = executor
        self.journal = journal
        self.rules = dict(rules)
        self.feed = feed
        self.ledger = Ledger(cash)
        self.orders: dict[str, PaperOrder] = {}
        self.changed: dict[str, PaperOrder] = {}
        self.new_fills: list[Fill] = []
        self.checkpoint = PaperCheckpoint()
        self.brackets: dict[str, dict[str, float | None]] = {}
        self.bar = 0

    # -- start-up --------------------------------------------------------------------------

    def reconcile(self) -> list[str]:
        """Align with the exchange at start-up: settle orders whose outcome was unknown, and
        report what Binance holds that the ledger cannot account for (nothing is guessed)."""
        snapshot = self.executor.reconcile()
        findings: list[str] = []
        self.settle()
        ours = {o.client_order_id for o in snapshot.open_orders}
        unknown = sorted(c for c in ours if c.startswith("agt-") and c not in self.orders)
        if unknown:
            findings.append(f"open orders on Binance this account never placed: {unknown}")
        quotes = {r.quote_asset for r in self.rules.values()}
        for quote in quotes:
            held = snapshot.balances.get(quote)
            have = held.total if held is not None else Decimal(0)
            if Decimal(repr(self.ledger.cash)) > have + _TOLERANCE:
                findings.append(
                    f"the ledger has {self.ledger.cash:,.2f} {quote} but Binance holds {have}"
                )
        for symbol, quantity in self.ledger.held():
            asset = self.rules[symbol].base_asset
            held = snapshot.balances.get(asset)
            have = held.total if held is not None else Decimal(0)
            if Decimal(repr(quantity)) > have + _TOLERANCE:
                findings.append(f"the ledger holds {quantity:g} {asset} but Binance holds {have}")
        for finding in findings:
            log.warning("reconciliation: %s", finding)
        return findings

    def settle(self) -> None:
        """Ask Binance about orders whose outcome we do not know (a lost reply, a crash between
        the write-ahead and the answer) and book what it says; never resend them."""
        for order in [o for o in self.orders.values() if o.status in ("accepted", "unknown")]:
            try:
                status = self.executor.settled_status(order.symbol, order.client_order_id)
            except BinanceError as exc:
                log.warning("cannot settle %s yet: %s", order.client_order_id, exc)
                continue
            if status is None:
                self._set(order.model_copy(update={"status": "rejected", "reason": "never placed"}))
            else:
                self._book(order, status)

    # -- the OrderSink the graph calls ------------------------------------------------------

    def execute(self, order: ApprovedOrder) -> dict[str, Any]:
        """Send now and book what Binance filled. The seal is checked before anything is
        journalled, so a forged order never even reaches the write-ahead log."""
        order = verify_approved(order)
        if order.order_type is not OrderType.MARKET:
            reason = (
                "only market orders go to Binance from the loop (resting orders are not followed)"
            )
            return {
                "status": "rejected",
                "client_order_id": order.client_order_id,
                "reason": reason,
            }
        unsettled = [
            o.client_order_id
            for o in self.orders.values()
            if o.symbol == order.symbol and o.status in ("accepted", "unknown")
        ]
        if unsettled:
            reason = f"an earlier {order.symbol} order's outcome is not known yet: {unsettled}"
            return {
                "status": "rejected",
                "client_order_id": order.client_order_id,
                "reason": reason,
            }
        known = self.orders.get(order.client_order_id)
        if known is not None:
            return {
                "status": "duplicate",
                "was": known.status,
                "client_order_id": known.client_order_id,
            }
        record = PaperOrder(
            client_order_id=order.client_order_id,
            decision_id=order.decision_id,
            symbol=order.symbol,
            side=order.side.value,
            order_type=order.order_type.value,
            quantity=str(order.quantity),
            status="accepted",
            stop_loss=None if order.stop_loss is None else float(order.stop_loss),
            take_profit=None if order.take_profit is None else float(order.take_profit),
            accepted_ms=order.created_ms,
            updated_ms=order.created_ms,
        )
        self._set(record)
        self.journal(record)  # on disk before the request: a crash is settled by asking Binance
        mark = self.checkpoint.marks.get(order.symbol)
        try:
            status = self.executor.submit(order, reference_price=mark)
        except BinanceError as exc:  # rejected, never sent, or an outcome Binance left unknown
            outcome = "unknown" if isinstance(exc, OrderOutcomeUnknown) else "rejected"
            self._set(record.model_copy(update={"status": outcome, "reason": str(exc)}))
            return {"status": outcome, "client_order_id": order.client_order_id, "reason": str(exc)}
        self._book(record, status)
        return {
            "status": self.orders[order.client_order_id].status,
            "client_order_id": order.client_order_id,
            "exchange_order_id": status.order_id,
            "executed_qty": str(status.executed_qty),
        }

    def _book(self, order: PaperOrder, status: OrderStatus) -> None:
        """Binance's fills into the ledger; a fee taken in the base asset shrinks the position,
        as it does on the exchange."""
        rules = self.rules[order.symbol]
        side = 1 if status.side == "BUY" else -1
        if status.executed_qty > 0 and not status.fills:  # a status query carries no fills
            status = status.model_copy(
                update={"fills": self.executor.order_fills(order.symbol, status.order_id)}
            )
        for part in status.fills:
            quantity, price = float(part.qty), float(part.price)
            fee = float(part.commission)
            if part.commission_asset == rules.base_asset:  # the position moves by the fee too
                quantity, fee = quantity - side * fee, fee * price
            elif part.commission_asset != rules.quote_asset:
                log.warning("fee in %s is not booked in USDT terms", part.commission_asset)
                fee = 0.0
            fill = Fill(
                order.client_order_id,
                order.symbol,
                side,
                quantity,
                price,
                fee,
                Liquidity.TAKER,
                self.bar,
                status.update_ms or order.updated_ms,
                ExitReason.SIGNAL,
            )
            self.ledger.apply(fill)
            self.new_fills.append(fill)
        filled = float(status.executed_qty)
        self._set(
            order.model_copy(
                update={
                    "status": _STATUS.get(status.status, "rejected"),
                    "filled_quantity": filled,
                    "average_price": None
                    if status.average_price is None
                    else float(status.average_price),
                    "reason": None if status.status in _STATUS else status.status,
                    "updated_ms": status.update_ms or order.updated_ms,
                }
            )
        )
        if self._flat(order.symbol):
            self.brackets.pop(order.symbol, None)
        elif filled and (order.stop_loss is not None or order.take_profit is not None):
            self.brackets[order.symbol] = {
                "stop_loss": order.stop_loss,
                "take_profit": order.take_profit,
            }

    def _flat(self, symbol: str) -> bool:
        """Below the minimum order size counts as flat: a base-asset fee leaves unsellable dust."""
        return abs(self.ledger.quantity(symbol)) < float(self.rules[symbol].min_qty)

    def refuse(self, client_order_id: str, reason: str, now_ms: int) -> None:
        """Record an order as rejected without sending anything."""
        known = self.orders.get(client_order_id)
        if known is not None:
            update = {"status": "rejected", "reason": reason, "updated_ms": now_ms}
            self._set(known.model_copy(update=update))

    def _set(self, order: PaperOrder) -> None:
        self.orders[order.client_order_id] = order
        self.changed[order.client_order_id] = order

    # -- the bar loop ----------------------------------------------------------------------

    def on_bar(self, index: int, *, fills: bool = True) -> None:
        """Marks move, and orders whose outcome was left unknown are settled; market orders
        filled when they were sent, so nothing else fills here (`fills` included: Binance
        spot has no closed hours)."""
        self.bar += 1
        self.settle()
        feed = self.feed.view()
        self.checkpoint = self.checkpoint.model_copy(
            update={
                "bars": self.checkpoint.bars + 1,
                "last_open_time": int(feed.open_time[index]),
                "marks": {s: float(b.close[index]) for s, b in feed.symbols.items()},
            }
        )

    def pending(self) -> list[Pending]:
        """Market orders only, filled or settled when sent: nothing waits."""
        return []

    def protective_exits(self, index: int) -> list[tuple[str, str]]:
        """(symbol, why) for held positions whose stop or target bar `index` crossed."""
        feed = self.feed.view()
        due = []
        for symbol, levels in self.brackets.items():
            if symbol not in feed.symbols or self._flat(symbol):
                continue
            low = float(feed.symbols[symbol].low[index])
            high = float(feed.symbols[symbol].high[index])
            stop, target = levels["stop_loss"], levels["take_profit"]
            if stop is not None and low <= stop:
                due.append((symbol, f"stop_loss {stop:g} crossed (low {low:g})"))
            elif target is not None and high >= target:
                due.append((symbol, f"take_profit {target:g} reached (high {high:g})"))
        return due

    # -- the account -----------------------------------------------------------------------

    def equity(self) -> float:
        return self.ledger.equity(self.checkpoint.marks)

    # -- persistence -----------------------------------------------------------------------

    def changes(
        self, signals: Mapping[str, dict[str, Any]]
    ) -> tuple[list[PaperOrder], list[Fill], PaperCheckpoint]:
        brackets = [{"symbol": s, **levels} for s, levels in self.brackets.items()]
        checkpoint = self.checkpoint.model_copy(update={"brackets": brackets})
        return list(self.changed.values()), list(self.new_fills), checkpoint

    def committed(self) -> None:
        self.changed, self.new_fills = {}, []

    def halt(self, now_ms: int, reason: str = "halted") -> list[str]:
        """Market orders only, so nothing is waiting to be cancelled."""
        return []

    def restore(
        self, checkpoint: PaperCheckpoint, fills: Sequence[Fill], orders: Sequence[PaperOrder]
    ) -> list[dict[str, Any]]:
        """Nothing waits for a next open on an exchange: market orders are sent at once."""
        for fill in fills:
            self.ledger.apply(fill)
        self.orders = {o.client_order_id: o for o in orders}
        self.brackets = {
            b["symbol"]: {"stop_loss": b.get("stop_loss"), "take_profit": b.get("take_profit")}
            for b in checkpoint.brackets
        }
        self.checkpoint = checkpoint.model_copy(update={"brackets": []})
        return []
