"""Alpaca paper trading (paper-api.alpaca.markets/v2): orders sent under the client_order_id
the gate derived from the decision id, so a resend after an unknown outcome (timeout, 5xx) is
preceded by a status query and never doubles an order; positions, account and clock. Only
sealed ApprovedOrders are sent. Opt-in, like live Binance: nothing here runs unless asked."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from core.errors import OutcomeUnknown, UserError
from core.plain_http import sync_transport_options
from market.rest_client import SHAPE_ERRORS, reads_reply, shape
from risk.approval import verify_approved
from risk.models import ApprovedOrder
from venues.alpaca.account import AlpacaAccount
from venues.alpaca.data import PAPER_URL, AlpacaError, AlpacaKeys, Clock, parse_clock


class AlpacaOrder(BaseModel):
    """What Alpaca says about one order."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: str
    client_order_id: str
    symbol: str
    side: str
    qty: Decimal
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    status: str
    order_type: str = Field("market", alias="type")
    filled_at: str | None = None


class AlpacaPosition(BaseModel):
    model_config = ConfigDict(frozen=True)

    symbol: str
    qty: Decimal
    avg_entry_price: Decimal
    market_value: Decimal


class AlpacaUnknown(OutcomeUnknown):
    """The order may or may not have reached Alpaca: ask before sending anything again."""


class AlpacaPaper:
    """A paper account at `base_url`. `attempts` sends at most; each after the first follows
    a status query that found nothing under the order's client_order_id."""

    def __init__(
        self,
        keys: AlpacaKeys,
        *,
        base_url: str = PAPER_URL,
        timeout_s: float = 10.0,
        attempts: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s),
            headers={"Accept": "application/json", **keys.headers()},
            **sync_transport_options(base_url, transport),
        )
        self.attempts = attempts

    def __enter__(self) -> AlpacaPaper:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._http.close()

    def submit(self, order: object) -> AlpacaOrder:
        """Send a sealed order once: after an unknown outcome, ask for it by its
        client_order_id and resend only if Alpaca has never seen it."""
        approved = verify_approved(order)
        body, cid = order_body(approved), approved.client_order_id
        for _ in range(self.attempts):
            try:
                return AlpacaOrder.model_validate(self._call("POST", "/v2/orders", json=body))
            except (AlpacaUnknown, *SHAPE_ERRORS) as exc:  # a reply that is not an order too
                try:
                    known = self.order(cid)
                except AlpacaError as asked:  # the order may exist: unknown, never 'not placed'
                    raise AlpacaUnknown(
                        f"order {cid}: its outcome is unknown ({exc}) and Alpaca could not be "
                        f"asked about it ({asked}); settled on a later bar"
                    ) from None
                if known is not None:
                    return known
        raise AlpacaUnknown(
            f"order {cid} not confirmed after {self.attempts} attempts and absent at the last "
            "check, but it may still appear: settled on a later bar"
        )

    @reads_reply
    def order(self, client_order_id: str) -> AlpacaOrder | None:
        """The order sent under this id, or None if Alpaca has none."""
        try:
            found = self._call(
                "GET",
                "/v2/orders:by_client_order_id",
                params={"client_order_id": client_order_id},
            )
        except _NotFound:
            return None
        return AlpacaOrder.model_validate(found)

    @reads_reply
    def open_orders(self) -> list[AlpacaOrder]:
        found = self._call("GET", "/v2/orders", params={"status": "open", "limit": 500})
        return [AlpacaOrder.model_validate(o) for o in found]

    @reads_reply
    def positions(self) -> list[AlpacaPosition]:
        return [AlpacaPosition.model_validate(p) for p in self._call("GET", "/v2/positions")]

    @reads_reply
    def account(self) -> AlpacaAccount:
        return AlpacaAccount.model_validate(self._call("GET", "/v2/account"))

    @reads_reply
    def clock(self) -> Clock:
        return parse_clock(self._call("GET", "/v2/clock"))

    def unreadable(self, what: str, exc: Exception) -> Exception:
        return AlpacaError(f"Alpaca's reply to {what} cannot be read: {shape(exc)}")

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise AlpacaUnknown(str(exc)) from exc
        except httpx.TransportError as exc:
            raise AlpacaError(f"Alpaca unreachable at {path}: {exc}") from exc
        status = response.status_code
        if status in (401, 403):
            raise UserError(f"Alpaca refused the keys ({status}) for {path}")
        if status == 404:
            raise _NotFound(path)
        if status >= 500:
            raise AlpacaUnknown(f"{status} from {path}")
        if status >= 400:
            raise AlpacaError(f"Alpaca refused {method} {path} ({status}): {response.text}")
        return response.json()


class _NotFound(Exception):
    pass


def order_body(order: ApprovedOrder) -> dict[str, str]:
    """Alpaca's order JSON: quantities and prices as text (no float rounding), a DAY order."""
    body = {
        "symbol": order.symbol,
        "qty": str(order.quantity),
        "side": order.side.value,
        "type": order.order_type.value,  # Alpaca names the four types as we do
        "time_in_force": "day",
        "client_order_id": order.client_order_id,
    }
    if order.limit_price is not None:
        body["limit_price"] = str(order.limit_price)
    if order.stop_price is not None:
        body["stop_price"] = str(order.stop_price)
    return body
