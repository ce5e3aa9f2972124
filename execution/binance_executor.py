"""Binance spot orders (testnet by default, live on explicit confirmation): only gate-approved
orders, checked against the exchange's filters before sending, signed, and idempotent by client
order id: after an unknown outcome the order's status is queried before any resubmission."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from decimal import ROUND_DOWN, Decimal
from typing import Any, Unpack

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from core.errors import OutcomeUnknown, UserError
from execution.binance_signing import (
    DEFAULT_RECV_WINDOW_MS,
    clock_offset_ms,
    query_string,
    server_timestamp,
    signed_query,
)
from execution.rules import rule_breaches
from execution.signed_access import Endpoints
from execution.signed_retry import MaybeSent, NotSent, SignedClient, SignedOptions
from market.binance_rest import (
    BinanceBanned,
    BinanceError,
    BinanceRequestError,
    BinanceUnavailable,
    error_body,
    retry_after_s,
)
from market.models import SymbolRules, parse_symbol
from market.rest_client import SHAPE_ERRORS, reads_reply, shape
from risk.approval import verify_approved
from risk.models import ApprovedOrder, OrderType, ReasonCode

log = logging.getLogger(__name__)

TESTNET_URL = "https://testnet.binance.vision"
LIVE_URL = "https://api.binance.com"
ORDER_PATH = "/api/v3/order"
OCO_PATH = "/api/v3/orderList/oco"
ORDER_LIST_PATH = "/api/v3/orderList"
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED", "PENDING_NEW"})
DUPLICATE_ORDER_MSG = "Duplicate order sent."

ENDPOINTS = Endpoints(
    exchange="Binance",
    testnet_url=TESTNET_URL,
    live_url=LIVE_URL,
    live_host=re.compile(r"^api(\d+|-gcp)?\.binance\.com$"),
    key_vars=("BINANCE_API_KEY", "BINANCE_API_SECRET"),
    testnet_keys_from="https://testnet.binance.vision",
)
_TIMESTAMP_OUTSIDE_WINDOW = -1021
_EXECUTION_UNKNOWN = frozenset({-1006, -1007})  # Binance: "execution status unknown"
_NEW_ORDER_REJECTED = -2010
_CANCEL_REJECTED = -2011
_NO_SUCH_ORDER = -2013
_NO_SUCH_LIST = frozenset({_CANCEL_REJECTED, _NO_SUCH_ORDER})
_KEY_REFUSED = frozenset({-1022, -2014, -2015})  # bad signature, bad key format, key refused
_DEFAULT_BAN_S = 120.0  # Binance's shortest IP ban, for a 418 without Retry-After
_WIRE_TYPES = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP: "STOP_LOSS",
    OrderType.STOP_LIMIT: "STOP_LOSS_LIMIT",
}


# --- typed results ----------------------------------------------------------------------------


class OrderFill(BaseModel):
    """One execution of an order, as Binance reports it in a FULL response."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str = Field(alias="commissionAsset")
    trade_id: int | None = Field(None, alias="tradeId")


class OrderStatus(BaseModel):
    """One order on the exchange; Binance's field names are accepted as aliases."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    symbol: str
    order_id: int | str = Field(alias="orderId")  # Bybit's ids are strings
    client_order_id: str = Field(alias="clientOrderId")
    status: str
    side: str
    order_type: str = Field(alias="type")
    price: Decimal = Decimal(0)
    orig_qty: Decimal = Field(alias="origQty")
    executed_qty: Decimal = Field(alias="executedQty")
    cummulative_quote_qty: Decimal = Field(alias="cummulativeQuoteQty")
    stop_price: Decimal | None = Field(None, alias="stopPrice")
    time_in_force: str | None = Field(None, alias="timeInForce")
    update_ms: int | None = None
    fills: list[OrderFill] = Field(default_factory=list)

    @classmethod
    def from_binance(cls, data: Mapping[str, Any]) -> OrderStatus:
        """Parse a placement, query or cancel answer; a cancel names the order in
        `origClientOrderId` (its `clientOrderId` is the cancel request's own id)."""
        fields = dict(data)
        if "origClientOrderId" in fields:
            fields["clientOrderId"] = fields["origClientOrderId"]
        fields["update_ms"] = fields.get("updateTime") or fields.get("transactTime")
        return cls.model_validate(fields)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def average_price(self) -> Decimal | None:
        """Quote spent per unit filled, or None before any fill."""
        if self.executed_qty == 0:
            return None
        return self.cummulative_quote_qty / self.executed_qty


class OrderList(BaseModel):
    """An OCO order list on the exchange, as POST, GET and DELETE /api/v3/orderList answer."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    order_list_id: int = Field(alias="orderListId")
    list_client_order_id: str = Field(alias="listClientOrderId")
    list_order_status: str = Field(alias="listOrderStatus")
    symbol: str
    orders: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.list_order_status == "EXECUTING"

    @property
    def client_order_ids(self) -> list[str]:
        return [str(o["clientOrderId"]) for o in self.orders]


class Balance(BaseModel):
    model_config = ConfigDict(frozen=True)

    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


class ExchangeSnapshot(BaseModel):
    """What the exchange holds at start-up, so the loop can align its ledger with it."""

    model_config = ConfigDict(frozen=True)

    mode: str
    base_url: str
    server_time_ms: int
    open_orders: list[OrderStatus]
    balances: dict[str, Balance]


# --- typed errors -----------------------------------------------------------------------------


class ExchangeRefused(BinanceRequestError):
    """Binance refused a signed request (4xx) other than a new order; retrying cannot help."""

    def __init__(self, method: str, status: int, code: int | None, msg: str, path: str) -> None:
        super().__init__(status, code, msg, path)
        self.method = method
        self.args = (f"Binance refused {method} {path}: HTTP {status}, code {code}: {msg}",)


class BinanceKeyRefused(UserError, ExchangeRefused):
    """Binance refused the key itself (revoked, restricted to other IPs or permissions, or a
    secret that does not sign): no order is at fault, and nothing can trade or take a stop
    down until a person fixes the key, so it ends the run in one line."""

    def __init__(self, method: str, status: int, code: int | None, msg: str, path: str) -> None:
        super().__init__(method, status, code, msg, path)
        self.args = (
            f"Binance refused the API key on {method} {path} (code {code}: {msg}); check "
            f"{' and '.join(ENDPOINTS.key_vars)}, the key's IP allow-list and its spot trading "
            "permission",
        )


class OrderRejected(BinanceError):
    """The order was not placed and sending it again unchanged cannot help: nothing to
    reconcile, record it as a rejection."""

    def __init__(
        self, message: str, client_order_id: str, symbol: str, code: int | str | None
    ) -> None:
        super().__init__(message)
        self.client_order_id, self.symbol, self.code = client_order_id, symbol, code


class RuleBreach(OrderRejected):
    """The order breaks the symbol's exchange filters; caught before any request was sent."""

    def __init__(
        self, client_order_id: str, symbol: str, breaches: list[tuple[ReasonCode, str]]
    ) -> None:
        self.breaches = breaches
        reasons = "; ".join(message for _, message in breaches)
        super().__init__(
            f"order {client_order_id} for {symbol} breaks Binance's filters, not sent: {reasons}",
            client_order_id,
            symbol,
            breaches[0][0].value,
        )


class ExchangeRejected(OrderRejected):
    """Binance refused the new order (e.g. -1013 filter failure, -2010 insufficient balance)."""

    def __init__(
        self, client_order_id: str, symbol: str, status: int, code: int | None, msg: str
    ) -> None:
        self.status, self.msg = status, msg
        super().__init__(
            f"Binance rejected order {client_order_id} for {symbol}: code {code}: {msg} "
            f"(HTTP {status}); not retried",
            client_order_id,
            symbol,
            code,
        )


class OrderOutcomeUnknown(BinanceUnavailable, OutcomeUnknown):
    """Binance never confirmed the order either way; reconcile before trading this symbol."""

    def __init__(self, message: str, client_order_id: str, symbol: str) -> None:
        super().__init__(message)
        self.client_order_id, self.symbol = client_order_id, symbol


class _RateLimited(NotSent):
    """429 or 418 with a wait within the cap: Binance refused before processing."""


class _ClockSkew(NotSent):
    """-1021: our timestamp fell outside recvWindow; the clock was re-synced, send again."""


# --- pure helpers -----------------------------------------------------------------------------


def wire_decimal(value: Decimal, step: Decimal) -> str:
    """`value` on the grid of `step` as a plain decimal string (never `1E-5` notation);
    rounds down, so a value off the grid can only shrink (callers reject those first)."""
    if step <= 0:
        return format(value.normalize(), "f")
    exponent = min(int(step.normalize().as_tuple().exponent), 0)
    return format(value.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_DOWN), "f")


def order_params(order: ApprovedOrder, rules: SymbolRules) -> dict[str, str]:
    """The order as Binance's form fields, quantity on stepSize and prices on tickSize."""
    params = {
        "symbol": order.symbol,
        "side": order.side.value.upper(),
        "type": _WIRE_TYPES[order.order_type],
        "quantity": wire_decimal(order.quantity, rules.step_size),
    }
    if order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        assert order.limit_price is not None  # the gate vetoes a limit order without one
        params["timeInForce"] = "GTC"
        params["price"] = wire_decimal(order.limit_price, rules.tick_size)
    if order.order_type in (OrderType.STOP, OrderType.STOP_LIMIT):
        assert order.stop_price is not None
        params["stopPrice"] = wire_decimal(order.stop_price, rules.tick_size)
    params["newClientOrderId"] = order.client_order_id
    params["newOrderRespType"] = "FULL"
    return params


# --- the executor -----------------------------------------------------------------------------


def _placed(reply: Any) -> OrderStatus:
    """A placement's reply as the order; one of the wrong shape leaves the outcome unknown, so
    the order is asked for before anything is sent again."""
    try:
        return OrderStatus.from_binance(reply)
    except SHAPE_ERRORS as exc:
        raise MaybeSent(f"HTTP 200 but a reply that is not an order ({shape(exc)})") from None


class BinanceExecutor(SignedClient):
    """Signed Binance spot REST for gate-approved orders; one instance per account and process.
    Inject `transport`/`base_url`, `clock_ms` and `sleep` to run it against a loopback server."""

    protection = "oco"  # the stop and the target rest here as one OCO (exchange_protection)
    endpoints = ENDPOINTS
    default_recv_window_ms = DEFAULT_RECV_WINDOW_MS
    unavailable = BinanceUnavailable
    query_errors = (BinanceUnavailable, ExchangeRefused)

    def __init__(
        self,
        api_key: str | SecretStr | None,
        api_secret: str | SecretStr | None,
        *,
        rules: Mapping[str, SymbolRules] | None = None,
        **options: Unpack[SignedOptions],
    ) -> None:
        super().__init__(api_key, api_secret, **options)
        if options.get("max_attempts", 4) < 1:
            raise ValueError("max_attempts must be at least 1")
        self._rules.update(rules or {})
        self._banned_until_ms: int | None = None
        self.used_weights: dict[str, int] = {}
        self.order_counts: dict[str, int] = {}

    @property
    def clock_offset_ms(self) -> int | None:
        """Binance's clock minus ours, from the last sync (None before the first)."""
        return self._offset_ms

    # --- public API ---------------------------------------------------------------------------

    @reads_reply
    def sync_time(self) -> int:
        """Measure the server-time offset used to stamp signed requests."""
        sent = self._clock_ms()
        data = self._call("GET", "/api/v3/time", {}, signed=False)
        received = self._clock_ms()
        self._offset_ms = clock_offset_ms(int(data["serverTime"]), sent, received)
        log.debug("Binance clock offset %d ms (round trip %d ms)", self._offset_ms, received - sent)
        return self._offset_ms

    @reads_reply
    def symbol_rules(self, symbol: str) -> SymbolRules:
        """The symbol's filters as this venue states them (testnet's differ from live)."""
        symbol = parse_symbol(symbol)
        if symbol not in self._rules:
            data = self._call("GET", "/api/v3/exchangeInfo", {"symbol": symbol}, signed=False)
            self._rules[symbol] = SymbolRules.from_exchange_info(data["symbols"][0])
        return self._rules[symbol]

    def submit(
        self, order: object, *, reference_price: Decimal | float | None = None
    ) -> OrderStatus:
        """Place a gate-approved order and return Binance's view of it. `reference_price` is
        the price a MARKET order's notional is checked at (default: Binance's avgPrice)."""
        approved = verify_approved(order)
        rules = self.symbol_rules(approved.symbol)
        cid = approved.client_order_id
        if rules.status != "TRADING":
            raise RuleBreach(
                cid,
                approved.symbol,
                [(ReasonCode.UNKNOWN_SYMBOL, f"{approved.symbol} is {rules.status}, not TRADING")],
            )
        reference = self._reference_price(approved, reference_price)
        breaches = rule_breaches(
            rules, approved.quantity, reference, priced=(approved.limit_price, approved.stop_price)
        )
        if breaches:
            raise RuleBreach(cid, approved.symbol, breaches)
        params = order_params(approved, rules)
        log.info(
            "placing %s %s %s %s on Binance %s as %s",
            params["side"],
            params["quantity"],
            approved.symbol,
            params["type"],
            self.mode,
            cid,
        )
        return self._place(params, approved.symbol, cid)

    @reads_reply
    def order_status(self, symbol: str, client_order_id: str) -> OrderStatus | None:
        """The order Binance holds under this client order id, or None if it has none."""
        try:
            data = self._call(
                "GET",
                ORDER_PATH,
                {"symbol": parse_symbol(symbol), "origClientOrderId": client_order_id},
            )
        except ExchangeRefused as exc:
            if exc.code == _NO_SUCH_ORDER:
                return None
            raise
        return OrderStatus.from_binance(data)

    @reads_reply
    def order_fills(self, symbol: str, order_id: int | str) -> list[OrderFill]:
        """The executions of one order with their commissions (GET /api/v3/myTrades): what a
        status query cannot tell, for an order whose placement reply was lost."""
        data = self._call(
            "GET", "/api/v3/myTrades", {"symbol": parse_symbol(symbol), "orderId": str(order_id)}
        )
        return [OrderFill.model_validate({**t, "tradeId": t.get("id")}) for t in data]

    @reads_reply
    def cancel_order(self, symbol: str, client_order_id: str) -> OrderStatus:
        """Cancel an open order and return its final status; an order that already ended
        (filled, or cancelled by an earlier attempt) is returned as it is."""
        symbol = parse_symbol(symbol)
        try:
            data = self._call(
                "DELETE", ORDER_PATH, {"symbol": symbol, "origClientOrderId": client_order_id}
            )
        except ExchangeRefused as exc:
            if exc.code == _CANCEL_REJECTED:
                existing = self.order_status(symbol, client_order_id)
                if existing is not None and not existing.is_open:
                    return existing
            raise
        return OrderStatus.from_binance(data)

    def place_oco_sell(self, params: dict[str, str], symbol: str, list_id: str) -> OrderList:
        """POST a sell OCO (a limit-maker target above, a stop-loss-limit below). After an
        unknown outcome or a duplicate id it asks for the list before anything is resent, so a
        position never gets two."""
        try:
            data = self._send("POST", OCO_PATH, params, signed=True)
        except NotSent as exc:
            raise BinanceUnavailable(
                f"Binance did not take the protective OCO {list_id} for {symbol} ({exc})"
            ) from None
        except MaybeSent as exc:
            return self._oco_after_unknown(symbol, list_id, str(exc))
        except ExchangeRefused as exc:
            existing = self.order_list(symbol, list_id)
            if existing is not None and existing.is_open:
                return existing
            raise ExchangeRejected(list_id, symbol, exc.status, exc.code, exc.msg) from None
        try:
            return OrderList.model_validate(data)
        except SHAPE_ERRORS as exc:  # taken, but its reply unreadable: ask for the list
            return self._oco_after_unknown(
                symbol, list_id, f"a reply that cannot be read ({shape(exc)})"
            )

    def _oco_after_unknown(self, symbol: str, list_id: str, cause: str) -> OrderList:
        """The OCO Binance may have taken: the list if the query finds it. Absent, it may still
        appear (a query can lag its placement) and hold the coins, so the outcome stays unknown
        for the caller to follow, never a failure to forget."""
        try:
            existing = self.order_list(symbol, list_id)
        except self.query_errors as exc:
            cause = f"{cause}; its list could not be queried ({exc})"
        else:
            if existing is not None:
                return existing
            cause = f"{cause}; no such list yet, but it may still appear"
        raise OrderOutcomeUnknown(
            f"Binance did not confirm the protective OCO {list_id} for {symbol}: {cause}",
            list_id,
            symbol,
        )

    def place_order(self, params: dict[str, str], symbol: str, cid: str) -> OrderStatus:
        """POST an order the venue built itself (a protective stop), with the same idempotent
        retries as a gate-approved one."""
        return self._place(params, symbol, cid)

    @reads_reply
    def order_list(self, symbol: str, list_id: str) -> OrderList | None:
        """The OCO Binance holds under this list client order id, or None if it has none."""
        try:
            data = self._call("GET", ORDER_LIST_PATH, {"origClientOrderId": list_id})
        except ExchangeRefused as exc:
            if exc.code in _NO_SUCH_LIST:
                return None
            raise
        return OrderList.model_validate(data)

    @reads_reply
    def cancel_order_list(self, symbol: str, list_id: str) -> OrderList | None:
        """Cancel an OCO; one that already ended is returned as it is (None: never existed)."""
        try:
            data = self._call(
                "DELETE",
                ORDER_LIST_PATH,
                {"symbol": parse_symbol(symbol), "listClientOrderId": list_id},
            )
        except ExchangeRefused as exc:
            if exc.code in _NO_SUCH_LIST:
                return self.order_list(symbol, list_id)
            raise
        return OrderList.model_validate(data)

    @reads_reply
    def open_orders(self, symbol: str | None = None) -> list[OrderStatus]:
        params = {"symbol": parse_symbol(symbol)} if symbol else {}
        return [
            OrderStatus.from_binance(o) for o in self._call("GET", "/api/v3/openOrders", params)
        ]

    @reads_reply
    def balances(self) -> dict[str, Balance]:
        """Non-zero balances by asset (free and locked in open orders)."""
        data = self._call("GET", "/api/v3/account", {"omitZeroBalances": "true"})
        held = (Balance.model_validate(b) for b in data.get("balances", []))
        return {b.asset: b for b in held if b.total != 0}

    def api_restrictions(self) -> dict[str, Any]:
        """What this API key may do (signed GET /sapi/v1/account/apiRestrictions; the live API
        has it, the spot testnet does not)."""
        return self._call("GET", "/sapi/v1/account/apiRestrictions", {})

    def reconcile(self) -> ExchangeSnapshot:
        """Start-up view of the account: open orders and non-zero balances, on a fresh clock."""
        self.sync_time()
        orders = self.open_orders()
        balances = self.balances()
        log.info(
            "reconciled with Binance %s: %d open order(s), %d asset(s) held",
            self.mode,
            len(orders),
            len(balances),
        )
        return ExchangeSnapshot(
            mode=self.mode,
            base_url=self.base_url,
            server_time_ms=server_timestamp(self._clock_ms(), self._offset_ms or 0),
            open_orders=orders,
            balances=balances,
        )

    # --- placement ----------------------------------------------------------------------------

    @reads_reply
    def _reference_price(self, order: ApprovedOrder, given: Decimal | float | None) -> Decimal:
        if order.order_type is OrderType.STOP:
            assert order.stop_price is not None
            return order.stop_price
        if order.order_type is not OrderType.MARKET:
            assert order.limit_price is not None
            return order.limit_price
        if given is not None:
            return given if isinstance(given, Decimal) else Decimal(repr(given))
        data = self._call("GET", "/api/v3/avgPrice", {"symbol": order.symbol}, signed=False)
        return Decimal(str(data["price"]))

    def _place(self, params: dict[str, str], symbol: str, cid: str) -> OrderStatus:
        """POST the order with the shared idempotent retries; a duplicate client order id
        answers with the order Binance already holds."""
        try:
            placed: OrderStatus = self._place_once(
                lambda: _placed(self._send("POST", ORDER_PATH, params, signed=True)),
                symbol,
                cid,
                rest_after_last=False,
                name_unknown_cause=True,
            )
        except BinanceKeyRefused:
            raise
        except ExchangeRefused as exc:
            if exc.code == _NEW_ORDER_REJECTED and exc.msg == DUPLICATE_ORDER_MSG:
                existing = self._existing(symbol, cid)
                if existing is not None:
                    self._info("order %s is already open on Binance: not duplicated", cid)
                    return existing
            raise ExchangeRejected(cid, symbol, exc.status, exc.code, exc.msg) from None
        return placed

    def _outcome_unknown(self, message: str, cid: str, symbol: str) -> Exception:
        return OrderOutcomeUnknown(message, cid, symbol)

    # --- transport ----------------------------------------------------------------------------

    def _send(self, method: str, path: str, params: Mapping[str, str], *, signed: bool) -> Any:
        """One HTTP exchange, its answer classified; the query is never logged (it holds the
        signature) and httpx errors are not chained (their request holds the API key)."""
        self._refuse_while_banned()
        headers: dict[str, str] = {}
        if signed:
            if self._offset_ms is None:
                self.sync_time()
            stamp = server_timestamp(self._clock_ms(), self._offset_ms or 0)
            query = signed_query(
                params, self._secret, timestamp_ms=stamp, recv_window_ms=self._recv_window_ms
            )
            headers["X-MBX-APIKEY"] = self._key
        else:
            query = query_string(params)
        log.debug("%s %s", method, path)
        response = self._request(method, f"{path}?{query}" if query else path, headers=headers)
        self._record_usage(response)
        status = response.status_code
        if status in (418, 429):
            self._rate_limited(response, method, path)
        if status >= 500:
            code, msg = error_body(response)
            raise MaybeSent(f"HTTP {status}" + (f", code {code}" if code is not None else ""))
        if status >= 400:
            code, msg = error_body(response)
            if code in _EXECUTION_UNKNOWN:
                raise MaybeSent(f"HTTP {status}, code {code}: {self._redact(msg)}")
            if code == _TIMESTAMP_OUTSIDE_WINDOW:
                self.sync_time()
                raise _ClockSkew(f"code {code}: {self._redact(msg)} (clock re-synced)", 0.0)
            refused = BinanceKeyRefused if code in _KEY_REFUSED else ExchangeRefused
            raise refused(method, status, code, self._redact(msg), path)
        try:
            return response.json()
        except ValueError:
            raise MaybeSent(f"HTTP {status} but not JSON (a proxy in the way?)") from None

    def _rate_limited(self, response: httpx.Response, method: str, path: str) -> None:
        """Honour Retry-After when it is within the cap; beyond it, stop rather than hammer."""
        status = response.status_code
        wait = retry_after_s(response)
        if status == 418:
            wait = wait if wait is not None else _DEFAULT_BAN_S
        if wait is not None and wait > self._max_retry_after_s:
            if status == 418:
                self._banned_until_ms = self._clock_ms() + int(wait * 1000)
                raise BinanceBanned(
                    f"Binance at {self.base_url} banned this IP (HTTP 418) for {wait:.0f} s, "
                    f"more than the {self._max_retry_after_s:.0f} s cap; no request is sent "
                    "before the ban ends"
                )
            raise BinanceUnavailable(
                f"Binance at {self.base_url} rate-limited {method} {path} (HTTP 429) for "
                f"{wait:.0f} s, more than the {self._max_retry_after_s:.0f} s cap"
            )
        raise _RateLimited(f"HTTP {status} (rate limited)", wait)

    def _refuse_while_banned(self) -> None:
        if self._banned_until_ms is None:
            return
        left_ms = self._banned_until_ms - self._clock_ms()
        if left_ms > 0:
            raise BinanceBanned(
                f"Binance at {self.base_url} banned this IP; the ban ends in "
                f"{left_ms / 1000:.0f} s, no request is sent before then"
            )
        self._banned_until_ms = None

    def _record_usage(self, response: httpx.Response) -> None:
        """Binance's own counters: x-mbx-used-weight-1m -> "1m", x-mbx-order-count-10s -> "10s"."""
        for name, value in response.headers.items():
            if not value.strip().isdigit():
                continue
            if name.startswith("x-mbx-used-weight-"):
                self.used_weights[name.removeprefix("x-mbx-used-weight-")] = int(value)
            elif name.startswith("x-mbx-order-count-"):
                self.order_counts[name.removeprefix("x-mbx-order-count-")] = int(value)
