"""Bybit v5 spot orders (testnet by default, live on explicit confirmation), with the surface of
Binance's signed executor so the same venue books them: only gate-approved orders, checked
against the exchange's filters before sending, signed with X-BAPI-* headers, and idempotent by
`orderLinkId` (the client order id): after an unknown outcome the order's status is queried
before any resubmission."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Unpack

import httpx
from pydantic import SecretStr

from core.errors import OutcomeUnknown, UserError
from execution.binance_executor import (
    Balance,
    ExchangeSnapshot,
    OrderFill,
    OrderStatus,
    wire_decimal,
)
from execution.rules import rule_breaches
from execution.signed_access import Endpoints
from execution.signed_retry import MaybeSent, NotSent, SignedClient, SignedOptions
from market.models import SymbolRules, parse_symbol
from market.rest_client import reads_reply
from risk.approval import verify_approved
from risk.models import ApprovedOrder, OrderType, ReasonCode
from venues.bybit.rest import (
    _AUTH,
    _RATE_LIMITED,
    _SERVER_BUSY,
    CATEGORY,
    BybitAuthError,
    BybitError,
    BybitRequestError,
    BybitUnavailable,
    rules_from_instrument,
)
from venues.bybit.signing import (
    DEFAULT_RECV_WINDOW_MS,
    get_payload,
    post_payload,
    signed_headers,
)

log = logging.getLogger(__name__)

TESTNET_URL = "https://api-testnet.bybit.com"
LIVE_URL = "https://api.bybit.com"
CREATE_PATH = "/v5/order/create"
ENDPOINTS = Endpoints(
    exchange="Bybit",
    testnet_url=TESTNET_URL,
    live_url=LIVE_URL,
    live_host=re.compile(r"^api\.(bybit\.com|bytick\.com|bybit\.nl|bybit-tr\.com)$"),
    key_vars=("BYBIT_API_KEY", "BYBIT_API_SECRET"),
    testnet_keys_from="https://testnet.bybit.com",
)
_CLOCK_SKEW = 10002  # "request time exceeds the time window": re-sync and send again
_DUPLICATE_LINK_ID = (170141, 10014)  # spot and unified: "duplicate orderLinkId"
_NO_SUCH_ORDER = (170213, 110001)  # "order does not exist"
_STATUS = {  # Bybit's orderStatus in Binance's words, which the venue books by
    "New": "NEW",
    "PartiallyFilled": "PARTIALLY_FILLED",
    "Untriggered": "NEW",
    "Triggered": "NEW",  # a conditional order on its way from Untriggered to New: still live
    "Filled": "FILLED",
    "Cancelled": "CANCELED",
    "PartiallyFilledCanceled": "CANCELED",
    "Rejected": "REJECTED",
    "Deactivated": "EXPIRED",
}
_OPEN = frozenset({"New", "PartiallyFilled", "Untriggered"})
_CONDITIONAL = "StopOrder"  # spot's orderFilter for a conditional order (one with a trigger)


class BybitRefused(BybitRequestError):
    """Bybit refused a signed request with a retCode retrying cannot cure."""

    def __init__(self, method: str, code: int, msg: str, path: str) -> None:
        super().__init__(code, msg, path)
        self.args = (f"Bybit refused {method} {path}: retCode {code}: {msg}",)


class BybitOrderRejected(BybitError):
    """The order was not placed (a filter breach caught here, or Bybit's refusal); sending it
    again unchanged cannot help."""


class BybitOutcomeUnknown(BybitUnavailable, OutcomeUnknown):
    """Bybit never confirmed the order either way; reconcile before trading this symbol."""


def order_body(order: ApprovedOrder, rules: SymbolRules) -> dict[str, str]:
    """The order as /v5/order/create's body. A spot market buy's qty is in the quote coin
    unless `marketUnit` says otherwise, so it always says baseCoin."""
    body = {
        "category": CATEGORY,
        "symbol": order.symbol,
        "side": order.side.value.capitalize(),
        "orderType": "Market" if order.order_type is OrderType.MARKET else "Limit",
        "qty": wire_decimal(order.quantity, rules.step_size),
    }
    if order.order_type is OrderType.MARKET:
        body["marketUnit"] = "baseCoin"
    else:
        assert order.limit_price is not None  # the gate vetoes a limit order without one
        body["price"] = wire_decimal(order.limit_price, rules.tick_size)
        body["timeInForce"] = "GTC"
    body["orderLinkId"] = order.client_order_id
    return body


def order_status(entry: Mapping[str, Any]) -> OrderStatus:
    """One /v5/order/realtime or /history entry in the executor's shared model."""
    return OrderStatus(
        symbol=entry["symbol"],
        order_id=str(entry["orderId"]),
        client_order_id=entry.get("orderLinkId") or "",
        status=_STATUS.get(entry["orderStatus"], str(entry["orderStatus"]).upper()),
        side=str(entry["side"]).upper(),
        order_type=str(entry["orderType"]).upper(),
        price=Decimal(entry.get("price") or 0),
        orig_qty=Decimal(entry.get("qty") or 0),
        executed_qty=Decimal(entry.get("cumExecQty") or 0),
        cummulative_quote_qty=Decimal(entry.get("cumExecValue") or 0),
        time_in_force=entry.get("timeInForce") or None,
        update_ms=int(entry["updatedTime"]) if entry.get("updatedTime") else None,
    )


def execution_fill(entry: Mapping[str, Any], rules: SymbolRules) -> OrderFill:
    """One /v5/execution/list entry. Bybit spot takes a buy's fee in the base coin and a
    sell's in the quote coin; `feeCurrency` says so where Bybit sends it."""
    fee_asset = entry.get("feeCurrency") or (
        rules.base_asset if entry["side"] == "Buy" else rules.quote_asset
    )
    return OrderFill(
        price=Decimal(entry["execPrice"]),
        qty=Decimal(entry["execQty"]),
        commission=Decimal(entry.get("execFee") or 0),
        commission_asset=fee_asset,
    )


class BybitExecutor(SignedClient):
    """Signed Bybit v5 spot REST for gate-approved orders; one instance per account and process.
    Inject `transport`/`base_url`, `clock_ms` and `sleep` to run it against a loopback server."""

    protection = "stop"  # spot has no OCO: the stop rests alone, the loop keeps the target
    endpoints = ENDPOINTS
    default_recv_window_ms = DEFAULT_RECV_WINDOW_MS
    unavailable = BybitUnavailable
    query_errors = (BybitError,)

    def __init__(
        self,
        api_key: str | SecretStr | None,
        api_secret: str | SecretStr | None,
        **options: Unpack[SignedOptions],
    ) -> None:
        super().__init__(api_key, api_secret, **options)
        self.limit_status: dict[str, int] = {}

    # --- public API ---------------------------------------------------------------------------

    @reads_reply
    def sync_time(self) -> int:
        """Bybit's clock minus ours, taken at the midpoint of the round trip."""
        sent = self._clock_ms()
        data = self._call("GET", "/v5/market/time", {}, signed=False)
        received = self._clock_ms()
        self._offset_ms = int(data["timeNano"]) // 1_000_000 - (sent + received) // 2
        return self._offset_ms

    @reads_reply
    def symbol_rules(self, symbol: str) -> SymbolRules:
        """The symbol's filters as this venue states them (testnet's differ from live)."""
        symbol = parse_symbol(symbol)
        if symbol not in self._rules:
            params = {"category": CATEGORY, "symbol": symbol}
            found = self._call("GET", "/v5/market/instruments-info", params, signed=False)["list"]
            if not found:
                raise UserError(f"unknown symbol {symbol}: Bybit spot does not list it")
            self._rules[symbol] = rules_from_instrument(found[0])
        return self._rules[symbol]

    def submit(
        self, order: object, *, reference_price: Decimal | float | None = None
    ) -> OrderStatus:
        """Place a gate-approved order and return Bybit's view of it with its fills.
        `reference_price` is the price a market order's notional is checked at."""
        approved = verify_approved(order)
        rules = self.symbol_rules(approved.symbol)
        cid = approved.client_order_id
        price = approved.limit_price if approved.order_type is not OrderType.MARKET else None
        price = price or (Decimal(repr(reference_price)) if reference_price is not None else None)
        breaches = [] if price is None else rule_breaches(rules, approved.quantity, price)
        if rules.status != "TRADING":
            breaches.append(
                (ReasonCode.UNKNOWN_SYMBOL, f"{approved.symbol} is {rules.status}, not trading")
            )
        if breaches:
            reasons = "; ".join(message for _, message in breaches)
            raise BybitOrderRejected(
                f"order {cid} for {approved.symbol} breaks Bybit's filters, not sent: {reasons}"
            )
        body = order_body(approved, rules)
        log.info("placing %s %s %s on Bybit %s as %s", body["side"], body["qty"], approved.symbol,
                 self.mode, cid)  # fmt: skip
        self._place(body, approved.symbol, cid)
        return self._settled(approved.symbol, cid)

    @reads_reply
    def order_status(self, symbol: str, client_order_id: str) -> OrderStatus | None:
        """The order Bybit holds under this orderLinkId (open, then recent history), or None."""
        params = {
            "category": CATEGORY,
            "symbol": parse_symbol(symbol),
            "orderLinkId": client_order_id,
        }
        for path in ("/v5/order/realtime", "/v5/order/history"):
            found = self._call("GET", path, params)["list"]
            if found:
                return order_status(found[0])
        return None

    @reads_reply
    def order_fills(self, symbol: str, order_id: int | str) -> list[OrderFill]:
        """The executions of one order with their fees (GET /v5/execution/list)."""
        rules = self.symbol_rules(symbol)
        params = {"category": CATEGORY, "symbol": rules.symbol, "orderId": str(order_id)}
        found = self._call("GET", "/v5/execution/list", params)["list"]
        return [execution_fill(entry, rules) for entry in found]

    @reads_reply
    def cancel_order(
        self, symbol: str, client_order_id: str, *, conditional: bool = False
    ) -> OrderStatus | None:
        """Cancel an open order and return its final status; one that already ended is
        returned as it is. Bybit's cancel finds a spot conditional order (`conditional`) only
        under its orderFilter, and one that has triggered under the plain one, so both are
        asked."""
        body = {
            "category": CATEGORY,
            "symbol": parse_symbol(symbol),
            "orderLinkId": client_order_id,
        }
        for where in ({"orderFilter": _CONDITIONAL}, {}) if conditional else ({},):
            try:
                self._call("POST", "/v5/order/cancel", body | where)
                break
            except BybitRefused as exc:
                if exc.code not in _NO_SUCH_ORDER:
                    raise
        return self.order_status(symbol, client_order_id)

    def place_stop_sell(
        self, symbol: str, client_id: str, quantity: Decimal, trigger: Decimal, limit: Decimal
    ) -> None:
        """Rest a spot conditional sell at Bybit: untriggered until the last price falls to
        `trigger`, then a GTC limit sell at `limit`. Sent like any order, under `client_id`,
        so a resend after a lost reply is recognised and a restart finds it."""
        rules = self.symbol_rules(symbol)
        body = {
            "category": CATEGORY,
            "symbol": rules.symbol,
            "side": "Sell",
            "orderType": "Limit",
            "qty": wire_decimal(quantity, rules.step_size),
            "price": wire_decimal(limit, rules.tick_size),
            "triggerPrice": wire_decimal(trigger, rules.tick_size),
            "orderFilter": _CONDITIONAL,
            "timeInForce": "GTC",
            "orderLinkId": client_id,
        }
        log.info("resting a stop sell of %s %s at Bybit %s: trigger %s, limit %s, as %s",
                 body["qty"], rules.symbol, self.mode, body["triggerPrice"], body["price"],
                 client_id)  # fmt: skip
        self._place(body, rules.symbol, client_id)

    @reads_reply
    def open_orders(self) -> list[OrderStatus]:
        params = {"category": CATEGORY, "openOnly": "0"}
        return [order_status(o) for o in self._call("GET", "/v5/order/realtime", params)["list"]]

    @reads_reply
    def balances(self) -> dict[str, Balance]:
        """Non-zero coins of the unified account (wallet balance, and what orders lock)."""
        params = {"accountType": "UNIFIED"}
        accounts = self._call("GET", "/v5/account/wallet-balance", params)["list"]
        held: dict[str, Balance] = {}
        for coin in (c for account in accounts for c in account.get("coin", [])):
            total, locked = Decimal(coin["walletBalance"] or 0), Decimal(coin.get("locked") or 0)
            if total:
                held[coin["coin"]] = Balance(asset=coin["coin"], free=total - locked, locked=locked)
        return held

    @reads_reply
    def api_key_info(self) -> dict[str, Any]:
        """What this API key may do (GET /v5/user/query-api; testnet and live both have it)."""
        return self._call("GET", "/v5/user/query-api", {})

    def reconcile(self) -> ExchangeSnapshot:
        """Start-up view of the account: open orders and non-zero balances, on a fresh clock."""
        self.sync_time()
        orders, balances = self.open_orders(), self.balances()
        log.info("reconciled with Bybit %s: %d open order(s), %d coin(s) held", self.mode,
                 len(orders), len(balances))  # fmt: skip
        return ExchangeSnapshot(
            mode=self.mode,
            base_url=self.base_url,
            server_time_ms=self._clock_ms() + (self._offset_ms or 0),
            open_orders=orders,
            balances=balances,
        )

    # --- placement ----------------------------------------------------------------------------

    def _place(self, body: dict[str, str], symbol: str, cid: str) -> None:
        """POST the order with the shared idempotent retries; a duplicate orderLinkId that
        Bybit holds counts as placed."""
        try:
            self._place_once(
                lambda: self._send("POST", CREATE_PATH, body, signed=True),
                symbol,
                cid,
                rest_after_last=True,
                name_unknown_cause=False,
            )
        except BybitRefused as exc:
            if exc.code in _DUPLICATE_LINK_ID:  # ours already, unless it ended unfilled
                existing = self._existing(symbol, cid)
                if existing is not None and (existing.is_open or existing.executed_qty > 0):
                    return
            raise BybitOrderRejected(
                f"Bybit rejected order {cid} for {symbol}: retCode {exc.code}: {exc.msg}; "
                "not retried"
            ) from None

    def _outcome_unknown(self, message: str, cid: str, symbol: str) -> Exception:
        return BybitOutcomeUnknown(message)

    def _settled(self, symbol: str, cid: str) -> OrderStatus:
        """Bybit's create answer holds only ids: the fills come from a status query, asked
        again while a market order is still being matched. Bybit took the order, so a query
        that fails leaves its outcome unknown, never 'not placed'."""
        for attempt in range(1, self._max_attempts + 1):
            try:
                status = self.settled_status(symbol, cid)
            except BybitError as exc:
                raise BybitOutcomeUnknown(
                    f"Bybit took order {cid} for {symbol} but its status could not be read "
                    f"({exc}): reconcile before trading this symbol again"
                ) from None
            if status is not None and not (status.is_open and status.order_type == "MARKET"):
                return status
            self._sleep(min(self._backoff_s * attempt, self._max_retry_after_s))
        raise BybitOutcomeUnknown(
            f"Bybit took order {cid} for {symbol} but it was not settled after "
            f"{self._max_attempts} status queries: reconcile before trading this symbol again"
        )

    # --- transport ----------------------------------------------------------------------------

    def _send(self, method: str, path: str, params: Mapping[str, str], *, signed: bool) -> Any:
        """One HTTP exchange, its answer classified. Headers carry the key and signature, so
        httpx errors are described, never chained."""
        payload = post_payload(params) if method == "POST" else get_payload(params)
        headers = {"Content-Type": "application/json"} if method == "POST" else {}
        if signed:
            if self._offset_ms is None:
                self.sync_time()
            stamp = self._clock_ms() + (self._offset_ms or 0)
            headers |= signed_headers(payload, api_key=self._key, secret=self._secret,
                                      timestamp_ms=stamp, recv_window_ms=self._recv_window_ms)  # fmt: skip
        url = path if method == "POST" or not payload else f"{path}?{payload}"
        response = self._request(
            method, url, headers=headers, content=payload if method == "POST" else None
        )
        self._note_limits(response)
        if response.status_code == 403:
            raise BybitUnavailable(
                f"Bybit at {self.base_url} refused this IP (HTTP 403, access too frequent)"
            )
        if response.status_code == 429:
            raise NotSent("HTTP 429 (rate limited)", self._until_reset())
        if response.status_code >= 500:
            raise MaybeSent(f"HTTP {response.status_code}")
        try:
            body = response.json()
            code, msg = int(body["retCode"]), self._redact(str(body.get("retMsg", "")))
            result = body["result"] if code == 0 else None
        except (ValueError, KeyError, TypeError):
            raise MaybeSent(f"HTTP {response.status_code} but not a v5 body") from None
        if code == 0:
            return result
        if code == _RATE_LIMITED:
            raise NotSent(f"retCode {code} ({msg})", self._until_reset())
        if code == _CLOCK_SKEW:
            self.sync_time()
            raise NotSent(f"retCode {code} ({msg}; clock re-synced)", 0.0)
        if code in _SERVER_BUSY:
            raise MaybeSent(f"retCode {code} ({msg})")
        if code in _AUTH:
            raise BybitAuthError(code, msg, path)
        raise BybitRefused(method, code, msg, path)

    def _note_limits(self, response: httpx.Response) -> None:
        for name, value in response.headers.items():
            if name.startswith("x-bapi-limit") and value.strip().isdigit():
                self.limit_status[name.removeprefix("x-bapi-")] = int(value)

    def _until_reset(self) -> float | None:
        reset_ms = self.limit_status.get("limit-reset-timestamp")
        return None if reset_ms is None else max(0.0, (reset_ms - self._clock_ms()) / 1000)
