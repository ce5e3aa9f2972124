"""Protection that survives our process on testnet and live: after an entry fills, its stop (and
target) rest at Binance as one sell OCO (a stop-loss-limit below, a limit-maker above) or, with
no target, one stop-loss-limit. Bybit's spot API has no OCO: the stop rests there alone as a
conditional stop-limit sell, and the loop watches the target. Ids derive from the decision, so
a restart finds the order it placed instead of placing a second one."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from core.errors import UserError, VenueError
from execution.binance_executor import BinanceExecutor, OrderStatus, wire_decimal
from market.models import SymbolRules
from risk.sizing import floor_to

if TYPE_CHECKING:
    from venues.bybit.trading import BybitExecutor

log = logging.getLogger(__name__)

STOP_LIMIT_SLACK = Decimal("0.005")
"""A triggered stop-loss-limit sells down to this fraction below its trigger: a fast market
still fills it, and a crash through it leaves it resting rather than selling at any price."""

_PREFIX = "agp-"  # not "agt-": the venue's own orders, never a gate's


def protection_id(
    decision_id: str,
    level: Decimal | None = None,
    quantity: Decimal | None = None,
    generation: int = 1,
) -> str:
    """The list (or order) client id for the entry `decision_id`'s protection (<= 36 chars); a
    trailing stop's id names its level too, so each move up is a new order, and the quantity
    it holds, so a protection rested again for a position that changed (an add, a part
    exit) is a new order too: a restart finds the one for what is held now, never an earlier
    one (a venue may refuse or recycle a reused id)."""
    key = f"{decision_id}|protect"
    if level is not None:
        key += f"|{level}"
    if quantity is not None:
        key += f"|{quantity}"
    if generation > 1:  # the same protection rested again (`next_unused`)
        key += f"|#{generation}"
    return _PREFIX + hashlib.sha256(key.encode()).hexdigest()[:28]


class Protection(BaseModel):
    """A protective exit resting at the exchange for one position."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    decision_id: str
    kind: Literal["oco", "stop"]
    client_id: str
    quantity: Decimal
    stop: Decimal
    stop_limit: Decimal
    target: Decimal | None = None
    reason: Literal["stop_loss", "trailing_stop"] = "stop_loss"  # what set the stop's level

    @property
    def legs(self) -> dict[str, str]:
        """Client order id -> what it does (stop_loss, take_profit)."""
        if self.kind == "stop":
            return {self.client_id: self.reason}
        return {f"{self.client_id}sl": self.reason, f"{self.client_id}tp": "take_profit"}


def plan(
    symbol: str,
    decision_id: str,
    held: float,
    stop: float,
    target: float | None,
    rules: SymbolRules,
    reason: Literal["stop_loss", "trailing_stop"] = "stop_loss",
    *,
    oco: bool = True,
) -> Protection | str:
    """The protection for `held` units, on the exchange's grid, or why none can rest there.
    `oco=False`: the exchange holds no OCO, so the stop rests alone (the loop keeps the
    target)."""
    target = target if oco else None
    quantity = floor_to(Decimal(repr(held)), rules.step_size)
    stop_price = floor_to(Decimal(repr(stop)), rules.tick_size)
    limit = floor_to(stop_price * (1 - STOP_LIMIT_SLACK), rules.tick_size)
    if quantity < rules.min_qty or quantity * limit < rules.min_notional:
        return f"{quantity} {symbol} at {limit} is below the exchange's minimums"
    return Protection(
        symbol=symbol,
        decision_id=decision_id,
        kind="stop" if target is None else "oco",
        client_id=protection_id(
            decision_id, stop_price if reason == "trailing_stop" else None, quantity
        ),
        quantity=quantity,
        stop=stop_price,
        stop_limit=limit,
        target=None if target is None else floor_to(Decimal(repr(target)), rules.tick_size),
        reason=reason,
    )


def place(executor: BinanceExecutor | BybitExecutor, p: Protection, rules: SymbolRules) -> None:
    """Rest the protection at the exchange; raises a VenueError if it cannot."""
    if not isinstance(executor, BinanceExecutor):  # Bybit: `plan(oco=False)` gave a stop
        executor.place_stop_sell(p.symbol, p.client_id, p.quantity, p.stop, p.stop_limit)
        return
    tick, qty = rules.tick_size, wire_decimal(p.quantity, rules.step_size)
    if p.kind == "stop":
        params = {
            "symbol": p.symbol,
            "side": "SELL",
            "type": "STOP_LOSS_LIMIT",
            "quantity": qty,
            "stopPrice": wire_decimal(p.stop, tick),
            "price": wire_decimal(p.stop_limit, tick),
            "timeInForce": "GTC",
            "newClientOrderId": p.client_id,
            "newOrderRespType": "FULL",
        }
        executor.place_order(params, p.symbol, p.client_id)
        return
    assert p.target is not None
    sl, tp = list(p.legs)
    params = {
        "symbol": p.symbol,
        "side": "SELL",
        "quantity": qty,
        "listClientOrderId": p.client_id,
        "aboveType": "LIMIT_MAKER",
        "abovePrice": wire_decimal(p.target, tick),
        "aboveClientOrderId": tp,
        "belowType": "STOP_LOSS_LIMIT",
        "belowStopPrice": wire_decimal(p.stop, tick),
        "belowPrice": wire_decimal(p.stop_limit, tick),
        "belowTimeInForce": "GTC",
        "belowClientOrderId": sl,
        "newOrderRespType": "FULL",
    }
    executor.place_oco_sell(params, p.symbol, p.client_id)


GENERATIONS = 8
"""Ids one protection may take as it is rested again for the same position (a stop taken
down for an exit the exchange then refused): more would mean something keeps failing."""


def generations(p: Protection) -> Iterator[Protection]:
    """`p` under its own id, then under each next one: a venue refuses an id it has held
    (Bybit) or answers a query by it ambiguously (Binance), so a protection rested again for
    the same position takes the next id, and a restart asks for them in this order."""
    level = p.stop if p.reason == "trailing_stop" else None
    for generation in range(1, GENERATIONS + 1):
        client_id = protection_id(p.decision_id, level, p.quantity, generation)
        yield p.model_copy(update={"client_id": client_id})


def ever_held(executor: BinanceExecutor | BybitExecutor, p: Protection) -> bool:
    """Whether the exchange has held any leg of `p` under its id, open or ended."""
    return any(executor.order_status(p.symbol, cid) is not None for cid in p.legs)


Standing = Literal["open", "filled", "gone"]


def standing(
    executor: BinanceExecutor | BybitExecutor, p: Protection
) -> tuple[Standing, OrderStatus | None]:
    """Where the protection stands: still resting, filled (with the leg that filled, fills
    included), or gone without a fill (cancelled or expired by someone else, or never placed)."""
    for cid in p.legs:
        status = executor.settled_status(p.symbol, cid)
        if status is None:
            continue
        if status.is_open:
            return "open", None
        if status.executed_qty > 0:
            return "filled", status
    return "gone", None


def cancel(
    executor: BinanceExecutor | BybitExecutor, p: Protection
) -> tuple[Standing, OrderStatus | None]:
    """Take the protection off the exchange before our own exit sells the coins it holds;
    returns where it stands after: gone, filled (with the leg that filled), or still open when
    the cancel failed or cannot be confirmed, so that nothing sells under a stop that rests
    on (a Bybit conditional order holds no coins: it would sell the next ones bought)."""
    try:
        if not isinstance(executor, BinanceExecutor):
            executor.cancel_order(p.symbol, p.client_id, conditional=True)
        elif p.kind == "oco":
            executor.cancel_order_list(p.symbol, p.client_id)
        else:
            executor.cancel_order(p.symbol, p.client_id)
    except UserError:  # the key refused: nothing can take the stop down, the run ends
        raise
    except VenueError as exc:
        log.warning("cancelling the protection %s of %s: %s", p.client_id, p.symbol, exc)
    try:
        return standing(executor, p)
    except UserError:
        raise
    except VenueError as exc:
        log.warning("the protection %s of %s cannot be checked: %s", p.client_id, p.symbol, exc)
        return "open", None
