"""Alpaca under the signed executor's surface that the loop's exchange venue books from
(execution.binance_venue): submit, settled_status and reconcile in Binance's terms, so paper
(paper-api) and live (api) stock trading use the same write-ahead journal, settling and
start-up reconciliation as Binance and Bybit.

Alpaca answers a new order with `accepted` and fills it a moment later, or at the next open for
a DAY order sent while the market is closed. An order is watched for `fill_wait_s`; one still
working after that is an outcome not known yet: the venue asks for it by its client_order_id on
every later bar and after a restart, and never sends it again."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

import pandas as pd

from execution.binance_executor import Balance, ExchangeSnapshot, OrderFill, OrderStatus
from execution.equity_fees import EquityFees, sale_fees
from execution.fees import Liquidity
from venues.alpaca.data import AlpacaError
from venues.alpaca.trading import AlpacaOrder, AlpacaPaper, AlpacaUnknown

# Alpaca's order states in Binance's words; the ones absent here are still working.
_ENDED = {
    "filled": "FILLED",
    "canceled": "CANCELED",
    "expired": "EXPIRED",
    "done_for_day": "EXPIRED",
    "replaced": "CANCELED",
    "rejected": "REJECTED",
    "suspended": "REJECTED",
    "stopped": "REJECTED",
}


class AlpacaBroker:
    """A paper or live Alpaca account, seen as the loop's exchange venue sees an exchange."""

    def __init__(
        self,
        paper: AlpacaPaper,
        *,
        base_url: str,
        mode: str,
        fees: EquityFees,
        fill_wait_s: float,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.paper = paper
        self.base_url = base_url
        self.mode = mode
        self.fees = fees
        self.fill_wait_s = fill_wait_s
        self._sleep = sleep
        self._monotonic = monotonic

    def submit(self, order: object, *, reference_price: object = None) -> OrderStatus:
        """Send a sealed order (AlpacaPaper checks the seal) and watch it until it ends."""
        del reference_price  # Alpaca checks a market order's buying power itself
        placed = self.paper.submit(order)
        deadline = self._monotonic() + self.fill_wait_s
        while placed.status not in _ENDED and self._monotonic() < deadline:
            self._sleep(0.2)
            try:
                placed = self.paper.order(placed.client_order_id) or placed
            except AlpacaError as exc:  # Alpaca took it: unknown from here, never 'not placed'
                raise AlpacaUnknown(
                    f"Alpaca took {placed.client_order_id} but could not be asked about it "
                    f"({exc}); settled on a later bar"
                ) from None
        return self._ended(placed)

    def settled_status(self, symbol: str, client_order_id: str) -> OrderStatus | None:
        """The order as it ended; None if Alpaca never took it; still working: unknown yet."""
        del symbol  # a client_order_id is unique across the account
        found = self.paper.order(client_order_id)
        return None if found is None else self._ended(found)

    def reconcile(self) -> ExchangeSnapshot:
        """Open orders, cash in USD and shares held, at start-up."""
        account = self.paper.account()
        balances = {account.currency: Balance(asset=account.currency, free=account.cash,
                                              locked=Decimal(0))}  # fmt: skip
        for position in self.paper.positions():
            balances[position.symbol] = Balance(
                asset=position.symbol, free=position.qty, locked=Decimal(0)
            )
        clock = self.paper.clock()
        return ExchangeSnapshot(
            mode=self.mode,
            base_url=self.base_url,
            server_time_ms=int(clock.time.value // 1_000_000),
            open_orders=[_status(o, []) for o in self.paper.open_orders()],
            balances=balances,
        )

    def _ended(self, order: AlpacaOrder) -> OrderStatus:
        if order.status not in _ENDED:
            raise AlpacaUnknown(
                f"{order.client_order_id} is {order.status} at Alpaca (a DAY order sent while "
                "the market is closed waits for the open); settled on a later bar"
            )
        fills = []
        if order.filled_qty > 0 and order.filled_avg_price is not None:
            quantity, price = float(order.filled_qty), float(order.filled_avg_price)
            fee = self.fees(quantity, price, Liquidity.TAKER)
            if order.side == "sell":  # Alpaca passes the SEC fee and FINRA TAF on
                fee += sale_fees(self.fees, quantity, price)
            fills.append(
                OrderFill(
                    price=order.filled_avg_price,
                    qty=order.filled_qty,
                    commission=Decimal(repr(round(fee, 2))),
                    commission_asset="USD",
                )
            )
        return _status(order, fills)


def _ms(text: str) -> int:
    return int(pd.Timestamp(text).value // 1_000_000)


def _status(order: AlpacaOrder, fills: list[OrderFill]) -> OrderStatus:
    price = order.filled_avg_price or Decimal(0)
    return OrderStatus(
        symbol=order.symbol,
        order_id=order.id,
        client_order_id=order.client_order_id,
        status=_ENDED.get(order.status, "NEW"),
        side=order.side.upper(),
        order_type=order.order_type.upper(),
        orig_qty=order.qty,
        executed_qty=order.filled_qty,
        cummulative_quote_qty=order.filled_qty * price,
        update_ms=None if order.filled_at is None else _ms(order.filled_at),
        fills=fills,
    )
