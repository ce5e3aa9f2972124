"""Testnet or live trading for the loop: gate-approved orders go to Binance (or Bybit) through
the signed executor, and the exchange's own fills are booked in the same ledger a paper account
uses. An entry's stop and target rest at Binance as a sell OCO (or a stop-loss-limit) once it
fills, and its stop at Bybit as a conditional stop-limit sell (Bybit's spot API has no OCO: the
loop watches the target), so the position stays protected while our process is down
(execution.exchange_protection); our own exit cancels it first. Where none can rest (below the
exchange's minimums, refused), the loop watches the levels on closed bars and sends a
reduce-only exit through the gate.

A trailing stop lives in the bracket and ratchets on each closed bar with the fill model's own
functions (execution.fills, the same-bar rule of docs/fills.md); when the trail passes the stop
resting at the exchange, that order is replaced at the new level, so the exchange always holds
the latest level while our process is down."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from core.errors import OutcomeUnknown, UserError, VenueError
from execution import exchange_protection as protection
from execution.binance_executor import BinanceExecutor, OrderStatus
from execution.exchange_protection import Protection
from execution.fees import Liquidity
from execution.fills import protective_stop, trail_level, trail_levels
from execution.ledger import Ledger
from execution.orders import ExitReason, Fill, Pending
from execution.paper import GrowingFeed, PaperCheckpoint, PaperOrder
from market.models import SymbolRules
from risk.approval import verify_approved
from risk.models import ApprovedOrder, OrderType
from risk.sizing import floor_to

if TYPE_CHECKING:
    from venues.bybit.trading import BybitExecutor

log = logging.getLogger(__name__)

_STATUS = {"FILLED": "filled", "NEW": "open", "PARTIALLY_FILLED": "open"}
_TOLERANCE = Decimal("0.00000001")
_BRACKET = (
    "stop_loss",
    "take_profit",
    "decision_id",
    "trail_pct",  # a long's trailing stop, as a fraction below the highest high
    "trail_stop",  # its level once the last closed bar's high was seen
    "trail_in_force",  # its level when the last closed bar opened: what that bar's low meets
    "trail_open_time",  # the last bar folded in, so a bar seen twice does not move it
)


class FillsUnread(VenueError):
    """The exchange executed an order whose fills cannot be read in full yet."""


class BinanceVenue:
    """The loop's venue for `--mode testnet|live`; the same surface as PaperExecutor. Bybit's
    signed executor has the same surface as Binance's, so it backs this venue too."""

    def __init__(
        self,
        executor: BinanceExecutor | BybitExecutor,
        rules: Mapping[str, SymbolRules],
        feed: GrowingFeed,
        *,
        cash: float,
        journal: Callable[[PaperOrder], None] = lambda order: None,
        exchange: str = "Binance",
    ) -> None:
        self.executor = executor
        self.exchange = exchange
        self.journal = journal
        self.rules = dict(rules)
        self.feed = feed
        self.ledger = Ledger(cash)
        self.orders: dict[str, PaperOrder] = {}
        self.changed: dict[str, PaperOrder] = {}
        self.new_fills: list[Fill] = []
        self.checkpoint = PaperCheckpoint()
        self.brackets: dict[str, dict[str, Any]] = {}  # the _BRACKET levels, by symbol
        self.protections: dict[str, Protection] = {}  # resting at the exchange, by symbol
        self._due: dict[str, ExitReason] = {}  # why this bar's protective exit is due
        self._rested: dict[str, Decimal] = {}  # the stop that rested at the exchange this bar
        self._exit_now: dict[str, str] = {}  # a refused move that leaves a market exit due
        self._taken_down: set[str] = set()  # symbols whose protection this process cancelled
        self._no_rest: dict[str, str] = {}  # why a position's stop cannot rest (its minimums)
        self._rested_late: set[str] = set()  # rested again at this bar's close, not through it
        self.bar = 0

    # -- start-up --------------------------------------------------------------------------

    def reconcile(self) -> list[str]:
        """Align with the exchange at start-up: settle orders whose outcome was unknown, and
        report what Binance holds that the ledger cannot account for (nothing is guessed)."""
        snapshot = self.executor.reconcile()
        findings: list[str] = []
        self.settle()
        self.watch_protections()
        for symbol in list(self.brackets):
            if symbol not in self.protections and not self._flat(symbol):
                self._protect(symbol, placed_before=True)  # the process died after the entry
        ours = {o.client_order_id for o in snapshot.open_orders}
        unknown = sorted(c for c in ours if c.startswith("agt-") and c not in self.orders)
        if unknown:
            findings.append(f"open orders on {self.exchange} this account never placed: {unknown}")
        quotes = {r.quote_asset for r in self.rules.values()}
        for quote in quotes:
            held = snapshot.balances.get(quote)
            have = held.total if held is not None else Decimal(0)
            if Decimal(repr(self.ledger.cash)) > have + _TOLERANCE:
                findings.append(
                    f"the ledger has {self.ledger.cash:,.2f} {quote} but {self.exchange} holds "
                    f"{have}"
                )
        for symbol, quantity in self.ledger.held():
            asset = self.rules[symbol].base_asset
            held = snapshot.balances.get(asset)
            have = held.total if held is not None else Decimal(0)
            if Decimal(repr(quantity)) > have + _TOLERANCE:
                findings.append(
                    f"the ledger holds {quantity:g} {asset} but {self.exchange} holds {have}"
                )
        for finding in findings:
            log.warning("reconciliation: %s", finding)
        return findings

    def settle(self) -> None:
        """Ask Binance about orders whose outcome we do not know (a lost reply, a crash between
        the write-ahead and the answer) and book what it says; never resend them."""
        for order in [o for o in self.orders.values() if o.status in ("accepted", "unknown")]:
            try:
                status = self.executor.settled_status(order.symbol, order.client_order_id)
            except UserError:  # a key or permission the exchange refuses stops the run
                raise
            except VenueError as exc:
                log.warning("cannot settle %s yet: %s", order.client_order_id, exc)
                continue
            if status is None:
                self._set(order.model_copy(update={"status": "rejected", "reason": "never placed"}))
                continue
            try:
                self._book(order, status)
            except FillsUnread as exc:
                log.warning("cannot settle %s yet: %s", order.client_order_id, exc)
                continue
            self._cover(order.symbol)

    # -- the OrderSink the graph calls ------------------------------------------------------

    def execute(self, order: ApprovedOrder) -> dict[str, Any]:
        """Send now and book what Binance filled. The seal is checked before anything is
        journalled, so a forged order never even reaches the write-ahead log."""
        order = verify_approved(order)
        if order.order_type is not OrderType.MARKET:
            reason = (
                f"only market orders go to {self.exchange} from the loop (resting orders are not "
                "followed)"
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
        protected = order.reduce_only and order.symbol in self.protections
        standing = self._unprotect(order.symbol) if protected else "gone"
        if standing != "gone":
            reason = (
                "the protective order at the exchange could not be cancelled, and nothing may "
                "sell under it: the exit waits for a later bar"
                if standing == "open"
                else "the protective order at the exchange closed the position first"
                if self._flat(order.symbol)
                else "the protective order at the exchange sold part of the position first: "
                "what is left exits on a later bar, its stop watched here until then"
            )
            return {
                "status": "rejected",
                "client_order_id": order.client_order_id,
                "reason": reason,
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
            trailing_stop_pct=None
            if order.trailing_stop_pct is None
            else float(order.trailing_stop_pct),
            accepted_ms=order.created_ms,
            updated_ms=order.created_ms,
        )
        self._set(record)
        self.journal(record)  # on disk before the request: a crash is settled by asking Binance
        mark = self.checkpoint.marks.get(order.symbol)
        try:
            status = self.executor.submit(order, reference_price=mark)
        except UserError:
            raise
        except VenueError as exc:  # rejected, never sent, or an outcome the exchange left unknown
            outcome = "unknown" if isinstance(exc, OutcomeUnknown) else "rejected"
            self._set(record.model_copy(update={"status": outcome, "reason": str(exc)}))
            if outcome == "rejected":
                self._cover(order.symbol)  # an exit's protection came down before it was refused
            return {"status": outcome, "client_order_id": order.client_order_id, "reason": str(exc)}
        why = self._due.get(order.symbol, ExitReason.SIGNAL) if order.reduce_only else None
        try:
            self._book(record, status, why or ExitReason.SIGNAL)
        except UserError:
            raise
        except VenueError as exc:  # taken by the exchange, its fills not read: settled later
            self._set(record.model_copy(update={"status": "unknown", "reason": str(exc)}))
            return {
                "status": "unknown",
                "client_order_id": order.client_order_id,
                "reason": str(exc),
            }
        self._due.pop(order.symbol, None)
        self._cover(order.symbol)
        return {
            "status": self.orders[order.client_order_id].status,
            "client_order_id": order.client_order_id,
            "exchange_order_id": status.order_id,
            "executed_qty": str(status.executed_qty),
        }

    def _book(
        self, order: PaperOrder, status: OrderStatus, reason: ExitReason = ExitReason.SIGNAL
    ) -> None:
        """Binance's fills into the ledger; a fee taken in the base asset shrinks the position,
        as it does on the exchange."""
        rules = self.rules[order.symbol]
        side = 1 if status.side == "BUY" else -1
        status = self._with_fills(order, status)
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
                reason,
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
            self._taken_down.discard(order.symbol)  # the next entry's protection has new ids
            return
        if filled and (
            order.stop_loss is not None
            or order.take_profit is not None
            or order.trailing_stop_pct is not None
        ):
            self.brackets[order.symbol] = _bracket(order, status)

    def _with_fills(self, order: PaperOrder, status: OrderStatus) -> OrderStatus:
        """The order's status with every fill of what it executed; raises FillsUnread when they
        cannot be read in full yet (the query fails, or lags the order's status), so nothing is
        booked until they can: a filled order that moved no coins would drop its bracket."""
        if status.executed_qty > 0 and not status.fills:  # a status query carries no fills
            status = status.model_copy(
                update={"fills": self.executor.order_fills(order.symbol, status.order_id)}
            )
        read = sum((part.qty for part in status.fills), Decimal(0))
        if read < status.executed_qty:
            raise FillsUnread(
                f"{self.exchange} executed {status.executed_qty} {order.symbol} of order "
                f"{order.client_order_id} but its fills show {read} so far; booked once they "
                "all read"
            )
        return status

    def _cover(self, symbol: str) -> None:
        """One protection at the exchange for all that is held, after anything that changed it:
        an entry that added to the position (the old protection would lock its coins against
        the new one, or rest on as an orphan that sells a later position), a buy that filled
        in part, or an exit that sold part or was refused after its protection came down."""
        self._no_rest.pop(symbol, None)  # the position changed: its minimums are asked again
        if symbol not in self.brackets or self._flat(symbol):
            return
        held = self.protections.get(symbol)
        if held is not None:
            if held.quantity == self._protectable(symbol):
                return
            if self._unprotect(symbol) == "open" or self._flat(symbol):
                return  # it could not come down (the loop watches the rest), or it sold all
        self._protect(symbol, again=held is not None or symbol in self._taken_down)

    def _protectable(self, symbol: str) -> Decimal:
        """The held quantity on the exchange's step grid, as a protection would hold it."""
        return floor_to(Decimal(repr(self.ledger.quantity(symbol))), self.rules[symbol].step_size)

    # -- protection at the exchange ------------------------------------------------------

    def _protect(self, symbol: str, *, placed_before: bool = False, again: bool = False) -> bool:
        """Rest the bracket's stop (the trailing stop's latest level where that is higher), and
        its target where the exchange holds an OCO, for the whole position; False when nothing
        could rest. `placed_before`: a restart after the process died between sending this
        protection and storing it; its ids are asked for first, as one may rest, or have
        filled while we were down (booked, never sold again). `again`: the same position's
        protection came down (for an exit that was then refused): the next unused id."""
        planned = self._plan(symbol)
        if planned is None:
            return False
        try:
            if placed_before or again:
                planned = self._unused(planned, adopt=placed_before)
                if planned is None:
                    return symbol in self.protections
            self._rest(planned)
        except UserError:
            raise
        except VenueError as exc:
            log.warning("%s: no stop at the exchange (%s); the loop watches it", symbol, exc)
            return False
        return True

    def _plan(self, symbol: str) -> Protection | None:
        """The protection the bracket asks for, or None (said why) when none can rest."""
        levels = self.brackets[symbol]
        stop, why = protective_stop(levels["stop_loss"], levels.get("trail_stop"))
        target = levels["take_profit"]
        if stop is None:
            return None  # a target alone is not protection: the loop watches it
        close = self.checkpoint.marks.get(symbol)
        if close is not None and close <= stop:
            log.warning("%s: the close %g is through the stop %g: none rests at %s (Binance "
                        "refuses such a stop, Bybit fires it only on a rise); the loop watches it",
                        symbol, close, stop, self.exchange)  # fmt: skip
            return None
        rests = getattr(self.executor, "protection", None)
        if rests is None:  # Alpaca: no resting stop is sent from here
            log.info("%s: %s holds no stop for us; the loop watches it", symbol, self.exchange)
            return None
        planned = protection.plan(
            symbol,
            str(levels.get("decision_id") or symbol),
            self.ledger.quantity(symbol),
            float(stop),
            None if target is None else float(target),
            self.rules[symbol],
            why.value,
            oco=rests == "oco",
        )
        if isinstance(planned, str):
            log.warning("%s: no stop at the exchange (%s); the loop watches it", symbol, planned)
            self._no_rest[symbol] = planned
            return None
        return planned

    def _unused(self, planned: Protection, *, adopt: bool) -> Protection | None:
        """The planned protection under the first of its ids the exchange never held, to rest
        it under; `adopt` (a restart): one that rests is followed instead (None), and one that
        filled while we were down is booked, unless it was booked already."""
        for candidate in protection.generations(planned):
            if not protection.ever_held(self.executor, candidate):
                return candidate
            if not adopt:
                continue
            state, leg = protection.standing(self.executor, candidate)
            if state == "open":
                self.protections[planned.symbol] = candidate
                log.info("%s: protective %s %s found resting at %s", planned.symbol,
                         candidate.kind, candidate.client_id, self.exchange)  # fmt: skip
                return None
            if leg is not None and leg.client_order_id not in self.orders:
                try:
                    self._book_protective(candidate, leg)
                except FillsUnread as exc:  # followed: each bar's check books it once they read
                    log.warning("%s: %s", planned.symbol, exc)
                    self.protections[planned.symbol] = candidate
                return None
        raise VenueError(
            f"{planned.symbol}: {protection.GENERATIONS} protections of this position were "
            f"rested and ended at {self.exchange}; no other is placed"
        )

    def _rest(self, planned: Protection) -> None:
        """Place the protection at the exchange and follow it; raises a VenueError when it
        surely does not rest. One whose outcome the exchange left unknown may rest and hold the
        coins, so it is followed too: each bar's check keeps it or hands its stop back to the
        loop (`watch_protections`)."""
        symbol = planned.symbol
        try:
            protection.place(self.executor, planned, self.rules[symbol])
        except OutcomeUnknown as exc:
            log.warning("%s: the protective %s %s may rest at %s (%s); checked again each bar",
                        symbol, planned.kind, planned.client_id, self.exchange, exc)  # fmt: skip
        else:
            log.info("%s: protective %s %s rests at %s", symbol, planned.kind, planned.client_id,
                     self.exchange)  # fmt: skip
        self.protections[symbol] = planned

    def _unprotect(self, symbol: str) -> protection.Standing:
        """Cancel the symbol's protection before our own exit: 'gone' (the exit may go),
        'filled' (booked now: nothing left to exit) or 'open' (the cancel failed: it stays
        followed, and nothing may sell under it)."""
        held = self.protections[symbol]
        state, leg = protection.cancel(self.executor, held)
        if state == "open":
            return state
        self._taken_down.add(symbol)
        if leg is not None:
            try:
                self._book_protective(held, leg)
            except FillsUnread as exc:  # followed until its fills read: the exit waits
                log.warning("%s: %s", symbol, exc)
                return "open"
        del self.protections[symbol]
        return state

    def watch_protections(self) -> None:
        """Each bar, and at start-up: book a protection that filled while we looked away; one
        that is gone unfilled (cancelled by hand) leaves the levels to the loop's watch."""
        for symbol, held in list(self.protections.items()):
            try:
                state, leg = protection.standing(self.executor, held)
            except UserError:
                raise
            except VenueError as exc:
                log.warning("cannot check the protection of %s yet: %s", symbol, exc)
                continue
            if state == "open":
                continue
            self._taken_down.add(symbol)  # its ids are spent: a new one takes the next
            if leg is not None:
                try:
                    self._book_protective(held, leg)
                except FillsUnread as exc:  # followed until its fills read
                    log.warning("%s: %s", symbol, exc)
                    continue
                del self.protections[symbol]
            else:
                del self.protections[symbol]
                log.warning(
                    "%s: the protective order %s is gone from %s unfilled; the loop "
                    "watches the stop again",
                    symbol,
                    held.client_id,
                    self.exchange,
                )

    def _book_protective(self, held: Protection, leg: OrderStatus) -> None:
        why = held.legs.get(leg.client_order_id, "stop_loss")
        record = PaperOrder(
            client_order_id=leg.client_order_id,
            decision_id=held.decision_id,
            symbol=held.symbol,
            side="sell",
            order_type=leg.order_type.lower(),
            quantity=str(held.quantity),
            status="accepted",
            reason=why,
            accepted_ms=leg.update_ms or 0,
            updated_ms=leg.update_ms or 0,
        )
        self._set(record)
        self._book(record, leg, ExitReason(why))
        if self._flat(held.symbol):
            self.brackets.pop(held.symbol, None)
        # else it filled in part (then was cancelled or expired): the bracket stays, and the
        # loop watches its levels for what is left (the market went through them: no stop
        # rests again)

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
        self._due, self._exit_now = {}, {}
        self.settle()
        self.watch_protections()
        self._rested = {s: p.stop for s, p in self.protections.items()}
        feed = self.feed.view()
        self.checkpoint = self.checkpoint.model_copy(
            update={
                "bars": self.checkpoint.bars + 1,
                "last_open_time": int(feed.open_time[index]),
                "marks": {s: float(b.close[index]) for s, b in feed.symbols.items()},
            }
        )
        self._trail(index)
        self._rest_again()

    def _rest_again(self) -> None:
        """A position whose stop could not rest (refused, the exchange unreachable, the close
        through it) has the loop watch it meanwhile, and tries again each bar: the stop must
        rest at the exchange for when the process stops, not only after a restart. A stop
        too small for the exchange's minimums is not asked again until the position changes."""
        if getattr(self.executor, "protection", None) is None:
            return  # Alpaca: the loop watches its stops
        self._rested_late = set()
        for symbol in list(self.brackets):
            if symbol in self.protections or symbol in self._no_rest or self._flat(symbol):
                continue
            if self._protect(symbol, again=symbol in self._taken_down):
                self._rested_late.add(symbol)

    def _trail(self, index: int) -> None:
        """Bar `index`'s high raises the trailing stops for the next bar (its own low meets the
        level in force when it opened); a resting stop the trail passed moves up with it."""
        feed = self.feed.view()
        open_time = int(feed.open_time[index])
        for symbol, levels in list(self.brackets.items()):
            pct = levels.get("trail_pct")
            seen = levels.get("trail_open_time")
            if (
                pct is None
                or symbol not in feed.symbols
                or (seen is not None and seen >= open_time)
            ):
                continue
            highs = feed.symbols[symbol].high[index : index + 1]
            levels["trail_in_force"] = levels["trail_stop"]
            levels["trail_stop"] = float(trail_levels(levels["trail_stop"], pct, highs)[-1])
            levels["trail_open_time"] = open_time
            held = self.protections.get(symbol)
            tick = self.rules[symbol].tick_size
            if held is not None and floor_to(Decimal(repr(levels["trail_stop"])), tick) > held.stop:
                self._move_up(symbol, open_time)

    def _move_up(self, symbol: str, open_time: int) -> None:
        """Cancel the resting protection and rest it again at the trail's level; killed in
        between, the restart finds the old one gone and rests the latest level. A refused
        move never leaves the position bare (docs/fills.md, "Trailing stop")."""
        held = self.protections[symbol]
        level, close = float(self.brackets[symbol]["trail_stop"]), self.checkpoint.marks[symbol]
        if close <= level and getattr(self.executor, "protection", None) == "stop":
            # Bybit takes a sell stop above the market and fires it only on a rise (Binance
            # refuses it, below): the trail is through the close, so exit now; the old stop
            # rests until the exit cancels it.
            self._exit_now[symbol] = f"trailing_stop {level:g} crossed (close {close:g})"
            return
        if self._unprotect(symbol) != "gone":  # filled, or the old stop rests on: no second one
            return
        if self._protect(symbol):
            log.info("%s: the trailing stop moved up at the exchange", symbol)
            return
        refused = float(self.brackets[symbol]["trail_stop"])
        close = self.checkpoint.marks[symbol]
        again = held.model_copy(
            update={"client_id": protection.protection_id(f"{held.decision_id}|{open_time}")}
        )
        try:
            self._rest(again)
        except UserError:
            raise
        except VenueError as exc:
            log.error(
                "%s: the trailing stop at %g does not rest at %s, and %s refused the stop at %s "
                "again (%s); exiting at market",
                symbol,
                refused,
                self.exchange,
                self.exchange,
                held.stop,
                exc,
            )
            self._exit_now[symbol] = f"trailing_stop {refused:g}: no stop rests at the exchange"
            return
        crossed = close <= refused
        log.error(
            "%s: the trailing stop at %g does not rest at %s (refused, or through the close); "
            "the stop at %s rests again%s",
            symbol,
            refused,
            self.exchange,
            held.stop,
            f" and the close {close:g} is through it: exiting at market" if crossed else "",
        )
        if crossed:
            self._exit_now[symbol] = f"trailing_stop {refused:g} crossed (close {close:g})"

    def pending(self) -> list[Pending]:
        """Market orders only, filled or settled when sent: nothing waits."""
        return []

    def protective_exits(self, index: int) -> list[tuple[str, str]]:
        """(symbol, why) for held positions whose stop or target bar `index` crossed."""
        feed = self.feed.view()
        due = []
        for symbol, text in self._exit_now.items():
            self._due[symbol] = ExitReason.TRAILING_STOP
            due.append((symbol, text))
        for symbol, levels in self.brackets.items():
            if symbol not in feed.symbols or self._flat(symbol) or symbol in self._exit_now:
                continue
            stop, why = protective_stop(levels["stop_loss"], levels.get("trail_in_force"))
            target = levels["take_profit"]
            held = self._held_at_exchange(symbol, stop)  # what rests there fires there
            if held and (target is None or self.protections[symbol].kind == "oco"):
                continue  # Binance's OCO holds the target too; Bybit's lone stop does not
            low = float(feed.symbols[symbol].low[index])
            high = float(feed.symbols[symbol].high[index])
            if stop is not None and low <= stop and not held:
                self._due[symbol] = why
                due.append((symbol, f"{why.value} {stop:g} crossed (low {low:g})"))
            elif target is not None and high >= target:
                self._due[symbol] = ExitReason.TAKE_PROFIT
                due.append((symbol, f"take_profit {target:g} reached (high {high:g})"))
        return due

    def _held_at_exchange(self, symbol: str, stop: float | None) -> bool:
        """True when the stop that rested at the exchange through the bar holds the level in
        force for all that is held; one left lower by a refused move leaves the higher level
        to the loop."""
        held = self.protections.get(symbol)
        if held is None or held.quantity < self._protectable(symbol):
            return False  # none, or one for part of the position: the loop watches it all
        if symbol in self._rested_late:
            return False  # rested at this bar's close (`_rest_again`): it did not guard the bar
        rested = self._rested.get(symbol, held.stop)
        tick = self.rules[symbol].tick_size
        return stop is None or floor_to(Decimal(repr(stop)), tick) <= rested

    # -- the account -----------------------------------------------------------------------

    def equity(self) -> float:
        return self.ledger.equity(self.checkpoint.marks)

    # -- persistence -----------------------------------------------------------------------

    def changes(
        self, signals: Mapping[str, dict[str, Any]]
    ) -> tuple[list[PaperOrder], list[Fill], PaperCheckpoint]:
        brackets = [
            {"symbol": s, **levels, "protection": _dump(self.protections.get(s))}
            for s, levels in self.brackets.items()
        ]
        checkpoint = self.checkpoint.model_copy(update={"brackets": brackets})
        return list(self.changed.values()), list(self.new_fills), checkpoint

    def committed(self) -> None:
        self.changed, self.new_fills = {}, []

    def halt(self, now_ms: int, reason: str = "halted") -> list[str]:
        """Market orders only, so nothing is waiting to be cancelled."""
        return []

    def restore(
        self,
        checkpoint: PaperCheckpoint,
        fills: Sequence[Fill],
        orders: Sequence[PaperOrder],
        applied: Sequence[object] = (),
    ) -> list[dict[str, Any]]:
        """Nothing waits for a next open on an exchange: market orders are sent at once. A
        crypto account takes no splits or dividends, so `applied` is always empty here."""
        del applied
        for fill in fills:
            self.ledger.apply(fill)
        self.orders = {o.client_order_id: o for o in orders}
        self.brackets = {b["symbol"]: {k: b.get(k) for k in _BRACKET} for b in checkpoint.brackets}
        self.protections = {
            b["symbol"]: Protection.model_validate(b["protection"])
            for b in checkpoint.brackets
            if b.get("protection")
        }
        self.checkpoint = checkpoint.model_copy(update={"brackets": []})
        return []


def _bracket(order: PaperOrder, status: OrderStatus) -> dict[str, Any]:
    """An entry's protective levels; a long's trailing stop starts `pct` below its fill."""
    trail = order.trailing_stop_pct if status.side == "BUY" else None
    start = None
    if trail is not None:
        price = status.average_price if status.average_price is not None else status.fills[0].price
        start = trail_level(float(price), trail)
    return {
        "stop_loss": order.stop_loss,
        "take_profit": order.take_profit,
        "decision_id": order.decision_id,
        "trail_pct": trail,
        "trail_stop": start,
        "trail_in_force": start,
        "trail_open_time": None,
    }


def _dump(held: Protection | None) -> dict[str, Any] | None:
    return None if held is None else held.model_dump(mode="json")
