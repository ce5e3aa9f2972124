"""Arbitrage legs on the exchanges (testnet or live): each leg is a market order judged by the
risk gate against its own venue's holdings and book, sent by that venue's signed executor under
a client order id derived from the pair id and the leg, and read back as a LegFill. After a
restart, `recover` asks each venue for the legs the journal had not seen end, by the same ids,
so nothing is sent twice."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from arbitrage.pairs import (
    Holdings,
    Inventory,
    LegFill,
    Pair,
    PairState,
    Side,
    close_leg,
    fill_pnl,
    unwinds,
)
from arbitrage.spread import VenueBook
from core.errors import UserError
from execution.binance_executor import (
    BinanceExecutor,
    OrderRejected,
    OrderStatus,
)
from market.binance_rest import BinanceError
from market.models import SymbolRules
from risk.approval import client_order_id
from risk.gate import decide
from risk.limits import RiskLimits
from risk.models import (
    Approved,
    MarketView,
    PortfolioView,
    PositionView,
    ReasonCode,
    SignalAction,
    SignalSource,
    TradeSignal,
)
from risk.state import RiskState
from venues.bybit.rest import BybitError
from venues.bybit.trading import BybitExecutor, BybitOrderRejected

Executor = BinanceExecutor | BybitExecutor
# What no retry can cure: too small for the venue, or a sell of coins it does not hold.
_NEVER = (
    ReasonCode.MIN_QTY,
    ReasonCode.MIN_NOTIONAL,
    ReasonCode.SHORT_NOT_ALLOWED,
    ReasonCode.NO_POSITION,
)


def decision_id(account: str, pair_id: str, leg: str) -> str:
    """One decision per leg: the gate derives the client order id from it."""
    return f"arb|{account}|{pair_id}|{leg}"


class SignedLegs:
    """The LegVenue of `agent-arb run --mode testnet|live`; the gate's portfolio view of a venue
    is the desk's `inventory` there (base and quote after fees)."""

    def __init__(
        self,
        account: str,
        symbol: str,
        executors: Mapping[str, Executor],
        rules: Mapping[str, SymbolRules],
        limits: RiskLimits,
        inventory: Inventory,
    ) -> None:
        self.account = account
        self.symbol = symbol
        self.executors = dict(executors)
        self.rules = dict(rules)
        self.limits = limits
        self.inventory = inventory
        self._states = {venue: RiskState() for venue in executors}

    def lot(self, quantity: float) -> float:
        """`quantity` rounded down to the coarser step of the two venues."""
        step = max(r.step_size for r in self.rules.values())
        return float((Decimal(repr(quantity)) // step) * step)

    def take(
        self, pair_id: str, venue: str, side: Side, quantity: float, book: VenueBook, leg: str
    ) -> LegFill:
        now_ms = book.time_ms
        rules = self.rules[venue]
        signal = TradeSignal(
            decision_id=decision_id(self.account, pair_id, leg),
            source=SignalSource.STRATEGY,
            symbol=self.symbol,
            action=SignalAction.BUY if side == "buy" else SignalAction.SELL,
            quantity=quantity,
            rationale=f"arbitrage {pair_id}: {leg} leg on {venue}",
            created_ms=now_ms,
            unwinds=unwinds(leg),
        )
        mid = (book.bids[0][0] + book.asks[0][0]) / 2
        market = MarketView(
            symbol=self.symbol,
            last_price=mid,
            data_time_ms=now_ms,
            best_bid=book.bids[0][0],
            best_ask=book.asks[0][0],
            rules=rules,
        )
        verdict, self._states[venue] = decide(
            signal, self._portfolio(venue, mid), market, now_ms, self.limits, self._states[venue]
        )
        fee = book.taker_fee_bps
        if not isinstance(verdict, Approved):
            why = "; ".join(r.message for r in verdict.reasons)
            return LegFill.missed(
                venue,
                side,
                quantity,
                fee,
                f"vetoed by the risk gate: {why}",
                untradable=all(r.code in _NEVER for r in verdict.reasons),
            )
        try:
            status = self.executors[venue].submit(verdict.order, reference_price=mid)
        except (OrderRejected, BybitOrderRejected) as exc:
            return LegFill.missed(venue, side, quantity, fee, f"rejected: {exc}")
        except (BinanceError, BybitError) as exc:
            raise UserError(
                f"{venue} {leg} leg of {pair_id}: {exc}; run again with the same --account to "
                "reconcile it"
            ) from None
        fill = leg_fill(status, venue, side, quantity, book.taker_fee_bps, rules)
        waived = [
            f"{r.code.value}: {r.message}"
            for r in verdict.adjustments
            if r.code is ReasonCode.UNWIND
        ]
        if waived:  # the journal keeps which entry limits the close passed
            fill = fill.model_copy(update={"reason": "; ".join([fill.reason, *waived])})
        return fill

    def recover(self, pair: Pair) -> Pair:
        """An open or lone-leg pair from the journal, completed by what the venues did with the
        legs it had not recorded; a leg the venue never took is recorded as not sent."""
        if pair.state not in (PairState.OPEN, PairState.LONE_LEG):
            return pair
        pair = pair.model_copy(deep=True)
        edge = pair.edge
        if pair.state == PairState.OPEN:  # journaled before its legs: the venues know what
            pair.legs = [  # became of them
                self._ask(pair, edge.buy_venue, "buy", "buy", edge.quantity),
                self._ask(pair, edge.sell_venue, "sell", "sell", edge.quantity),
            ]
            mark = (edge.buy_vwap + edge.sell_vwap) / 2
            pair.pnl_quote = sum(fill_pnl(f, mark) for f in pair.legs)
        unmatched = pair.unmatched
        if unmatched is not None:
            venue, held_side, quantity = unmatched
            reverse: Side = "sell" if held_side == "buy" else "buy"
            close = self._ask(pair, venue, reverse, close_leg(len(pair.closes) + 1), quantity)
            if close.filled > 0:
                pair.closes.append(close)
                pair.pnl_quote += fill_pnl(close, (edge.buy_vwap + edge.sell_vwap) / 2)
        filled = any(f.filled for f in pair.legs)
        if not filled:
            pair.state = PairState.FAILED
        elif pair.unmatched is not None:
            pair.state = PairState.LONE_LEG
        else:
            pair.state = PairState.CLOSED if pair.closes else PairState.COMPLETE
        pair.note = (pair.note + "; " if pair.note else "") + "reconciled after a restart"
        return pair

    def _ask(self, pair: Pair, venue: str, side: Side, leg: str, quantity: float) -> LegFill:
        cid = client_order_id(decision_id(self.account, pair.pair_id, leg))
        try:
            status = self.executors[venue].settled_status(self.symbol, cid)
        except (BinanceError, BybitError) as exc:
            raise UserError(f"cannot reconcile {pair.pair_id} on {venue}: {exc}") from None
        fee = pair.edge.costs_bps / 2
        if status is None:
            return LegFill.missed(
                venue, side, quantity, fee, "never reached the venue (absent after a restart)"
            )
        # What the order asked for: a second leg hedges the first's fill, not the pair's size.
        return leg_fill(status, venue, side, float(status.orig_qty), fee, self.rules[venue])

    def _portfolio(self, venue: str, mid: float) -> PortfolioView:
        held = self.inventory.holdings[venue]
        base, quote = held.base, held.quote
        equity = quote + base * mid
        positions = {self.symbol: PositionView(quantity=base, avg_price=mid)} if base > 0 else {}
        return PortfolioView(
            cash=quote,
            equity=equity,
            peak_equity=equity,
            day_start_equity=equity,
            positions=positions,
        )


def holdings_on(executor: Executor, rules: SymbolRules) -> Holdings:
    """The free base and quote the venue's account holds: a signed run's starting inventory."""
    balances = executor.balances()
    free = {asset: float(b.free) for asset, b in balances.items()}
    return Holdings(base=free.get(rules.base_asset, 0.0), quote=free.get(rules.quote_asset, 0.0))


def leg_fill(
    status: OrderStatus,
    venue: str,
    side: Side,
    requested: float,
    fee_bps: float,
    rules: SymbolRules,
) -> LegFill:
    """The venue's answer as a leg: what filled, at its average price, and the fee it charged
    in the coin the inventory books it in (the base coin on a buy, the quote on a sell)."""
    filled = float(status.executed_qty)
    price = status.average_price
    paid_in = rules.base_asset if side == "buy" else rules.quote_asset
    charged = [f.commission for f in status.fills if f.commission_asset == paid_in]
    if price is not None and charged and len(charged) == len(status.fills):
        basis = status.executed_qty if side == "buy" else status.cummulative_quote_qty
        fee_bps = float(sum(charged) / basis * 10_000)
    reason = "filled" if filled >= requested else f"{status.status.lower()}: filled {filled:g}"
    return LegFill(
        venue=venue,
        side=side,
        requested=requested,
        filled=filled if price is not None else 0.0,
        price=float(price) if price is not None else None,
        fee_bps=fee_bps,
        reason=reason,
    )
