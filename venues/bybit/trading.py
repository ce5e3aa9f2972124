"""Bybit v5 spot orders (testnet by default, live on explicit confirmation), with the surface of
Binance's signed executor so the same venue books them: only gate-approved orders, checked
against the exchange's filters before sending, signed with X-BAPI-* headers, and idempotent by
`orderLinkId` (the client order id): after an unknown outcome the order's status is queried
before any resubmission."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import httpx
from pydantic import SecretStr
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from core.errors import OutcomeUnknown, UserError
from core.logging import Redactor
from execution.binance_executor import (
    Balance,
    ExchangeSnapshot,
    OrderFill,
    OrderStatus,
    wire_decimal,
)
from execution.rules import rule_breaches
from execution.signed_access import Endpoints, signed_access
from market.models import SymbolRules, parse_symbol
from market.rest_client import RestClient
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
    "Filled": "FILLED",
    "Cancelled": "CANCELED",
    "PartiallyFilledCanceled": "CANCELED",
    "Rejected": "REJECTED",
    "Deactivated": "EXPIRED",
}
_OPEN = frozenset({"New", "PartiallyFilled", "Untriggered"})


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


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


class _Transient(Exception):
    """A failure another attempt may cure; `wait_s` when Bybit said how long to wait."""

    def __init__(self, cause: str, wait_s: float | None = None) -> None:
        super().__init__(cause)
        self.wait_s = wait_s


class _Unsent(_Transient):
    """Refused before it was processed (connect failed, rate limit, clock): resending is safe."""


class _Unknown(_Transient):
    """A timeout, a dropped connection or a server error: it may have been executed."""


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


class BybitExecutor(RestClient):
    """Signed Bybit v5 spot REST for gate-approved orders; one instance per account and process.
    Inject `transport`/`base_url`, `clock_ms` and `sleep` to run it against a loopback server."""

    def __init__(
        self,
        api_key: str | SecretStr | None,
        api_secret: str | SecretStr | None,
        *,
        live: bool = False,
        live_confirmed: bool = False,
        base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        clock_ms: Callable[[], int] = _wall_ms,
        sleep: Callable[[float], None] = time.sleep,
        timeout_s: float = 10.0,
        recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
        max_attempts: int = 4,
        max_retry_after_s: float = 60.0,
        backoff_s: float = 0.5,
    ) -> None:
        access = signed_access(
            ENDPOINTS, api_key, api_secret, live=live, live_confirmed=live_confirmed,
            base_url=base_url,
        )  # fmt: skip
        super().__init__(access.base_url, timeout_s, transport=transport, sleep=sleep)
        self.live = live
        self._key, self._secret = access.key, access.secret
        self._redact = Redactor([access.key, access.secret])
        self._rules: dict[str, SymbolRules] = {}
        self._clock_ms = clock_ms
        self._recv_window_ms = recv_window_ms
        self._max_attempts = max(1, max_attempts)
        self._max_retry_after_s = max_retry_after_s
        self._backoff_s = backoff_s
        self._offset_ms: int | None = None
        self.limit_status: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"BybitExecutor(mode={self.mode!r}, base_url={self.base_url!r})"

    @property
    def mode(self) -> str:
        return "live" if self.live else "testnet"

    # --- public API ---------------------------------------------------------------------------

    def sync_time(self) -> int:
        """Bybit's clock minus ours, taken at the midpoint of the round trip."""
        sent = self._clock_ms()
        data = self._call("GET", "/v5/market/time", {}, signed=False)
        received = self._clock_ms()
        self._offset_ms = int(data["timeNano"]) // 1_000_000 - (sent + received) // 2
        return self._offset_ms

    def adopt_rules(self, rules: Mapping[str, SymbolRules]) -> None:
        """Rules the caller already holds (the store's daily cache): no per-symbol fetch."""
        self._rules.update(rules)

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

    def order_fills(self, symbol: str, order_id: int | str) -> list[OrderFill]:
        """The executions of one order with their fees (GET /v5/execution/list)."""
        rules = self.symbol_rules(symbol)
        params = {"category": CATEGORY, "symbol": rules.symbol, "orderId": str(order_id)}
        found = self._call("GET", "/v5/execution/list", params)["list"]
        return [execution_fill(entry, rules) for entry in found]

    def settled_status(self, symbol: str, client_order_id: str) -> OrderStatus | None:
        """The order's status with its fills, or None if Bybit never took it."""
        status = self.order_status(symbol, client_order_id)
        if status is None or status.executed_qty == 0:
            return status
        return status.model_copy(update={"fills": self.order_fills(symbol, status.order_id)})

    def cancel_order(self, symbol: str, client_order_id: str) -> OrderStatus | None:
        """Cancel an open order and return its final status; one that already ended is
        returned as it is."""
        body = {
            "category": CATEGORY,
            "symbol": parse_symbol(symbol),
            "orderLinkId": client_order_id,
        }
        try:
            self._call("POST", "/v5/order/cancel", body)
        except BybitRefused as exc:
            if exc.code not in _NO_SUCH_ORDER:
                raise
        return self.order_status(symbol, client_order_id)

    def open_orders(self) -> list[OrderStatus]:
        params = {"category": CATEGORY, "openOnly": "0"}
        return [order_status(o) for o in self._call("GET", "/v5/order/realtime", params)["list"]]

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
        """POST the order; after an unknown outcome, ask Bybit whether it exists before sending
        it again under the same orderLinkId, so a retry never doubles it."""
        unknown, last = False, "no attempt"
        for attempt in range(1, self._max_attempts + 1):
            try:
                self._send("POST", CREATE_PATH, body, signed=True)
                return
            except _Unknown as exc:
                unknown, last = True, str(exc)
                self._note(
                    "order %s: outcome unknown (%s); asking Bybit before any resend", cid, exc
                )
                self._sleep(self._delay(exc, attempt))
                if self._existing(symbol, cid) is not None:
                    return
            except _Transient as exc:
                last = str(exc)
                self._sleep(self._delay(exc, attempt))
            except BybitRefused as exc:
                if exc.code in _DUPLICATE_LINK_ID and self._existing(symbol, cid) is not None:
                    return
                raise BybitOrderRejected(
                    f"Bybit rejected order {cid} for {symbol}: retCode {exc.code}: {exc.msg}; "
                    "not retried"
                ) from None
        if unknown:
            raise BybitOutcomeUnknown(
                f"Bybit did not confirm order {cid} for {symbol} after {self._max_attempts} "
                f"attempt(s), last with {last}; it was absent at the last check, but may still "
                "appear: reconcile before trading this symbol again"
            )
        raise BybitUnavailable(
            f"Bybit at {self.base_url} did not take order {cid} for {symbol} after "
            f"{self._max_attempts} attempt(s), last with {last}; the order was not placed"
        )

    def _existing(self, symbol: str, cid: str) -> OrderStatus | None:
        """The status query after an unknown outcome; if it cannot answer, nobody may resend."""
        try:
            return self.order_status(symbol, cid)
        except BybitError as exc:
            raise BybitOutcomeUnknown(
                f"order {cid} for {symbol}: the outcome of its placement is unknown and its "
                f"status could not be queried ({exc}); not resubmitted: reconcile before "
                "trading this symbol again"
            ) from None

    def _settled(self, symbol: str, cid: str) -> OrderStatus:
        """Bybit's create answer holds only ids: the fills come from a status query, asked
        again while a market order is still being matched."""
        for attempt in range(1, self._max_attempts + 1):
            status = self.settled_status(symbol, cid)
            if status is not None and not (status.is_open and status.order_type == "MARKET"):
                return status
            self._sleep(min(self._backoff_s * attempt, self._max_retry_after_s))
        raise BybitOutcomeUnknown(
            f"Bybit took order {cid} for {symbol} but it was not settled after "
            f"{self._max_attempts} status queries: reconcile before trading this symbol again"
        )

    # --- transport ----------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, params: Mapping[str, str], *, signed: bool = True
    ) -> Any:
        """An idempotent request (a query or a cancel), retried on transient failures."""
        retrying = Retrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=lambda state: self._delay(state.outcome.exception(), state.attempt_number),  # type: ignore[union-attr,arg-type]
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(self._send, method, path, params, signed=signed)
        except _Transient as exc:
            raise BybitUnavailable(
                f"Bybit at {self.base_url} is unavailable: {method} {path} failed "
                f"{self._max_attempts} time(s), last with {exc}"
            ) from None

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
        try:
            response = self._http.request(
                method, url, headers=headers, content=payload if method == "POST" else None
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _Unsent(self._describe(exc)) from None
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Unknown(self._describe(exc)) from None
        self._note_limits(response)
        if response.status_code == 403:
            raise BybitUnavailable(
                f"Bybit at {self.base_url} refused this IP (HTTP 403, access too frequent)"
            )
        if response.status_code == 429:
            raise _Unsent("HTTP 429 (rate limited)", self._until_reset())
        if response.status_code >= 500:
            raise _Unknown(f"HTTP {response.status_code}")
        try:
            body = response.json()
            code, msg = int(body["retCode"]), self._redact(str(body.get("retMsg", "")))
        except (ValueError, KeyError, TypeError):
            raise _Unknown(f"HTTP {response.status_code} but not a v5 body") from None
        if code == 0:
            return body["result"]
        if code == _RATE_LIMITED:
            raise _Unsent(f"retCode {code} ({msg})", self._until_reset())
        if code == _CLOCK_SKEW:
            self.sync_time()
            raise _Unsent(f"retCode {code} ({msg}; clock re-synced)", 0.0)
        if code in _SERVER_BUSY:
            raise _Unknown(f"retCode {code} ({msg})")
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

    def _delay(self, exc: _Transient, attempt: int) -> float:
        """Bybit's reset time when given, else exponential backoff, within the cap."""
        if exc.wait_s is not None:
            return min(exc.wait_s, self._max_retry_after_s)
        return min(self._backoff_s * 2 ** (attempt - 1), self._max_retry_after_s)

    def _describe(self, exc: httpx.HTTPError) -> str:
        return f"{type(exc).__name__}: {self._redact(str(exc)) or 'no detail'}"

    def _note(self, fmt: str, *args: object) -> None:
        log.warning("%s", self._redact(fmt % args))
