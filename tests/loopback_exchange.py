"""A fake Binance spot exchange on 127.0.0.1 for the order executor: it verifies HMAC signatures,
timestamps and the real BTCUSDT/ETHUSDT filters (2024-09-08 capture), keeps orders and
balances, fills MARKET orders at a set price, rests stop-limits and OCO order lists (Binance's
documented POST/GET/DELETE /api/v3/orderList shapes) until `move` crosses them, and plays
scripted faults, so idempotency and retries are tested over real HTTP without leaving the
machine."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from loopback_binance import (
    DEFAULT_BODIES,
    EXCHANGE_INFO_2024,
    INVALID_SYMBOL,
    BinanceJsonHandler,
)
from loopback_thread import serving_thread

# Made-up credentials: the exchange knows them, a test hands them to the executor.
API_KEY = "lbKEY7f3a9c2e1d4b6a8f0e2c4a6b8d0f2e4a6c8b0d2f4e6a8c0b2d4f6e8a0c2e4"
API_SECRET = "lbSECRET5e7c9a1b3d5f7e9c1a3b5d7f9e1c3a5b7d9f1e3c5a7b9d1f3e5c7a9b1d3"

# Binance's own error bodies (spot errors.md).
BAD_SIGNATURE = {"code": -1022, "msg": "Signature for this request is not valid."}
BAD_API_KEY = {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
OUTSIDE_RECV_WINDOW = {
    "code": -1021,
    "msg": "Timestamp for this request is outside of the recvWindow.",
}
AHEAD_OF_SERVER = {
    "code": -1021,
    "msg": "Timestamp for this request was 1000ms ahead of the server's time.",
}
DUPLICATE_ORDER = {"code": -2010, "msg": "Duplicate order sent."}
INSUFFICIENT_BALANCE = {
    "code": -2010,
    "msg": "Account has insufficient balance for requested action.",
}
NO_SUCH_ORDER = {"code": -2013, "msg": "Order does not exist."}
UNKNOWN_ORDER = {"code": -2011, "msg": "Unknown order sent."}
WOULD_TRIGGER = {"code": -2010, "msg": "Stop price would trigger immediately."}
API_RESTRICTIONS = "/sapi/v1/account/apiRestrictions"
OCO_PATH, ORDER_LIST_PATH = "/api/v3/orderList/oco", "/api/v3/orderList"
NO_SUCH_LIST = {"code": -2011, "msg": "Order list does not exist."}
BAD_OCO_PRICES = {
    "code": -2010,
    "msg": "The relationship of the prices for the orders is not correct.",
}
_SIGNED = {
    OCO_PATH,
    ORDER_LIST_PATH,
    "/api/v3/order",
    "/api/v3/openOrders",
    "/api/v3/account",
    "/api/v3/myTrades",
    API_RESTRICTIONS,
}
# A trade-only key as Binance's docs show the answer of GET /sapi/v1/account/apiRestrictions
# (wallet/account/api-key-permission), with withdrawals and transfers off and an IP restriction.
TRADE_ONLY_KEY = {
    "ipRestrict": True,
    "createTime": 1623840271000,
    "enableReading": True,
    "enableWithdrawals": False,
    "enableInternalTransfer": False,
    "enableMargin": False,
    "enableFutures": False,
    "permitsUniversalTransfer": False,
    "enableVanillaOptions": False,
    "enableFixApiTrade": False,
    "enableFixReadOnly": True,
    "enableSpotAndMarginTrading": True,
    "enablePortfolioMarginTrading": False,
}
_OPEN = ("NEW", "PARTIALLY_FILLED")
_EIGHT = Decimal("0.00000001")


def _filter_failure(name: str) -> dict[str, Any]:
    return {"code": -1013, "msg": f"Filter failure: {name}"}


def _fmt(value: Decimal) -> str:
    """Binance writes decimals with 8 places."""
    return f"{value.quantize(_EIGHT):f}"


@dataclass(frozen=True)
class ExchangeFault:
    """One scripted failure of the next matching request. `after_accept`: the request is
    processed (the order exists) before the reply fails; `drop` closes the connection without
    a reply, `reset` sends a TCP RST; `delay_s` alone makes a slow reply (a client timeout)."""

    method: str = "POST"
    path: str = "/api/v3/order"
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: object | None = None
    after_accept: bool = False
    drop: bool = False
    reset: bool = False
    delay_s: float = 0.0

    @property
    def fails(self) -> bool:
        return self.status is not None or self.drop or self.reset


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    params: dict[str, str]
    query: str
    api_key: str | None


class LoopbackExchange:
    """Answers like Binance spot's trading endpoints. Thread-safe; counts every request."""

    def __init__(
        self,
        *,
        balances: dict[str, str] | None = None,
        prices: dict[str, str] | None = None,
        fee_rate: str = "0.001",
        api_key: str = API_KEY,
        secret: str = API_SECRET,
        exchange_info: Path = EXCHANGE_INFO_2024,
        key_permissions: dict[str, Any] | None = None,
    ) -> None:
        """`key_permissions` overrides fields of the trade-only key's apiRestrictions answer."""
        self.api_key = api_key
        self.key_permissions = {**TRADE_ONLY_KEY, **(key_permissions or {})}
        self.secret = secret
        self.info = json.loads(exchange_info.read_text())
        self.filters = {
            s["symbol"]: {f["filterType"]: f for f in s["filters"]} for s in self.info["symbols"]
        }
        self.assets = {s["symbol"]: (s["baseAsset"], s["quoteAsset"]) for s in self.info["symbols"]}
        start = balances if balances is not None else {"USDT": "10000", "BTC": "0", "ETH": "0"}
        self.balances: dict[str, list[Decimal]] = {
            a: [Decimal(v), Decimal(0)] for a, v in start.items()
        }
        self.prices = {
            k: Decimal(v) for k, v in (prices or {"BTCUSDT": "65000", "ETHUSDT": "3500"}).items()
        }
        self.fee_rate = Decimal(fee_rate)
        self.skew_ms = 0  # the exchange's clock minus the machine's
        self.orders: list[dict[str, Any]] = []
        self.received: list[Received] = []
        self.bad_signatures = 0
        self.weight = 0
        self._next_id = 1000
        # The most a MARKET order fills, by symbol (the book's depth at the set price): the
        # rest expires, as Binance's market order does when the book runs out (status EXPIRED).
        self.depth: dict[str, Decimal] = {}
        self._faults: deque[ExchangeFault] = deque()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = serving_thread(self._httpd)

    # --- test-facing -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> LoopbackExchange:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def script(self, *faults: ExchangeFault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        with self._lock:
            counts = Counter((r.method, r.path) for r in self.received)
        return sum(n for (m, p), n in counts.items() if method in (None, m) and path in (None, p))

    def orders_with(self, client_order_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [o for o in self.orders if o["clientOrderId"] == client_order_id]

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        with self._lock:
            free, locked = self.balances.get(asset, [Decimal(0), Decimal(0)])
            return free, locked

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.skew_ms

    def open_with(self, prefix: str) -> list[dict[str, Any]]:
        """Open orders whose client order id starts with `prefix`."""
        with self._lock:
            return [
                o
                for o in self.orders
                if o["clientOrderId"].startswith(prefix) and o["status"] in _OPEN
            ]

    def move(self, symbol: str, price: str) -> None:
        """The market trades at `price`: resting sell stops at or above it fill at their limit,
        resting sell limits at or below it at their price; an OCO's other leg expires."""
        with self._lock:
            level = Decimal(price)
            self.prices[symbol] = level
            for order in [o for o in self.orders if o["symbol"] == symbol and o["status"] in _OPEN]:
                if order["status"] not in _OPEN or order["side"] != "SELL":
                    continue
                limit = Decimal(order["price"])
                stopped = order["type"] == "STOP_LOSS_LIMIT" and level <= Decimal(
                    order["stopPrice"]
                )
                if stopped or (order["type"] in ("LIMIT", "LIMIT_MAKER") and level >= limit):
                    self._fill_resting(order, limit)

    def _fill_resting(self, order: dict[str, Any], price: Decimal) -> None:
        quote = self.assets[order["symbol"]][1]
        qty = Decimal(order["origQty"])
        for leg in [order, *self._siblings(order)]:
            if leg["_locked"] is not None:
                asset, amount = leg["_locked"]
                self.balances[asset][1] -= amount
                leg["_locked"] = None
            if leg is not order:
                leg["status"] = "EXPIRED"
        proceeds = qty * price
        fee = proceeds * self.fee_rate
        self.balances.setdefault(quote, [Decimal(0), Decimal(0)])[0] += proceeds - fee
        order.update(
            status="FILLED",
            executedQty=_fmt(qty),
            cummulativeQuoteQty=_fmt(proceeds),
            transactTime=self.now_ms(),
            _locked=None,
            fills=[
                {
                    "price": _fmt(price),
                    "qty": _fmt(qty),
                    "commission": _fmt(fee),
                    "commissionAsset": quote,
                    "tradeId": self._next_id + 500_000,
                }
            ],
        )
        self._next_id += 1

    def _siblings(self, order: dict[str, Any]) -> list[dict[str, Any]]:
        if order["orderListId"] == -1:
            return []
        return [
            o for o in self.orders if o["orderListId"] == order["orderListId"] and o is not order
        ]

    # --- routing ---------------------------------------------------------------------------

    def _arrive(self, received: Received) -> ExchangeFault | None:
        with self._lock:
            self.received.append(received)
            self.weight += 1
            for fault in self._faults:
                if fault.method == received.method and fault.path == received.path:
                    self._faults.remove(fault)
                    return fault
            return None

    def _route(self, req: Received, body: str) -> tuple[int, object]:
        with self._lock:
            if req.path in _SIGNED:
                refused = self._authenticate(req, body)
                if refused is not None:
                    return refused
            key = (req.method, req.path)
            if key == ("GET", "/api/v3/time"):
                return 200, {"serverTime": self.now_ms()}
            if key == ("GET", "/api/v3/exchangeInfo"):
                return self._exchange_info(req.params)
            if key == ("GET", "/api/v3/avgPrice"):
                symbol = req.params.get("symbol", "")
                if symbol not in self.prices:
                    return 400, INVALID_SYMBOL
                return 200, {
                    "mins": 5,
                    "price": _fmt(self.prices[symbol]),
                    "closeTime": self.now_ms(),
                }
            if key == ("POST", "/api/v3/order"):
                return self._new_order(req.params)
            if key == ("GET", "/api/v3/order"):
                return self._query(req.params)
            if key == ("DELETE", "/api/v3/order"):
                return self._cancel(req.params)
            if key == ("GET", "/api/v3/openOrders"):
                symbol = req.params.get("symbol")
                return 200, [
                    self._view(o)
                    for o in self.orders
                    if o["status"] in _OPEN and symbol in (None, o["symbol"])
                ]
            if key == ("GET", "/api/v3/account"):
                return 200, self._account(req.params)
            if key == ("GET", "/api/v3/myTrades"):
                return 200, self._trades(req.params)
            if key == ("POST", OCO_PATH):
                return self._new_oco(req.params)
            if key == ("GET", ORDER_LIST_PATH):
                return self._order_list(req.params)
            if key == ("DELETE", ORDER_LIST_PATH):
                return self._cancel_list(req.params)
            if key == ("GET", API_RESTRICTIONS):
                return 200, dict(self.key_permissions)
            return 404, {"code": -1, "msg": f"loopback: no route {req.method} {req.path}"}

    def _authenticate(self, req: Received, body: str) -> tuple[int, object] | None:
        """Binance's checks for SIGNED endpoints, in its order: key, signature, timestamp."""
        if req.api_key != self.api_key:
            return 401, BAD_API_KEY
        parts = req.query.split("&") if req.query else []
        signatures = [p.removeprefix("signature=") for p in parts if p.startswith("signature=")]
        if not signatures:
            return 400, {
                "code": -1102,
                "msg": "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
            }
        total = "&".join(p for p in parts if not p.startswith("signature=")) + body
        expected = hmac.new(self.secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signatures[0].lower()):
            self.bad_signatures += 1
            return 400, BAD_SIGNATURE
        try:
            stamp = int(req.params["timestamp"])
            window = int(req.params.get("recvWindow", "5000"))
        except (KeyError, ValueError):
            return 400, {
                "code": -1102,
                "msg": "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
            }
        if window > 60_000:
            return 400, {"code": -1131, "msg": "recvWindow must be less than 60000."}
        server = self.now_ms()
        if stamp >= server + 1000:
            return 400, AHEAD_OF_SERVER
        if server - stamp > window:
            return 400, OUTSIDE_RECV_WINDOW
        return None

    def _exchange_info(self, params: dict[str, str]) -> tuple[int, object]:
        if "symbol" not in params:
            return 200, self.info
        listed = [s for s in self.info["symbols"] if s["symbol"] == params["symbol"]]
        return (200, {**self.info, "symbols": listed}) if listed else (400, INVALID_SYMBOL)

    def _new_order(self, p: dict[str, str]) -> tuple[int, object]:
        symbol = p.get("symbol", "")
        if symbol not in self.filters:
            return 400, INVALID_SYMBOL
        kind, side = p.get("type"), p.get("side")
        if kind not in ("MARKET", "LIMIT", "STOP_LOSS", "STOP_LOSS_LIMIT"):
            return 400, {"code": -1116, "msg": "Invalid orderType."}
        if side not in ("BUY", "SELL"):
            return 400, {"code": -1117, "msg": "Invalid side."}
        cid = p.get("newClientOrderId") or f"loopback{self._next_id}"
        # Binance: a client order id must be unique among OPEN orders; once the earlier order
        # has filled, the same id is accepted again (which is why a blind resend doubles it).
        if any(o["clientOrderId"] == cid and o["status"] in _OPEN for o in self.orders):
            return 400, DUPLICATE_ORDER
        try:
            qty = Decimal(p["quantity"])
            price = Decimal(p["price"]) if "price" in p else None
            stop = Decimal(p["stopPrice"]) if "stopPrice" in p else None
        except (KeyError, ArithmeticError):
            return 400, {
                "code": -1102,
                "msg": "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
            }
        for name, value in (("quantity", qty), ("price", price), ("stopPrice", stop)):
            if value is not None and -int(value.as_tuple().exponent) > 8:
                return 400, {"code": -1111, "msg": f"Parameter '{name}' has too much precision."}
        failure = self._filters(symbol, kind, qty, price, stop)
        if failure is not None:
            return 400, _filter_failure(failure)
        if side == "SELL" and stop is not None and stop >= self.prices[symbol]:
            return 400, WOULD_TRIGGER
        return self._book(symbol, kind, side, cid, qty, price, stop, p.get("timeInForce"))

    def _new_oco(self, p: dict[str, str]) -> tuple[int, object]:
        """A sell OCO: a LIMIT_MAKER above the market and a STOP_LOSS_LIMIT below it, sharing
        one lock of the base asset (POST /api/v3/orderList/oco)."""
        symbol = p.get("symbol", "")
        if symbol not in self.filters:
            return 400, INVALID_SYMBOL
        list_id = p.get("listClientOrderId") or f"list{self._next_id}"
        if any(o["_list"] == list_id and o["status"] in _OPEN for o in self.orders):
            return 400, DUPLICATE_ORDER
        try:
            qty = Decimal(p["quantity"])
            above, stop, below = (
                Decimal(p[k]) for k in ("abovePrice", "belowStopPrice", "belowPrice")
            )
        except (KeyError, ArithmeticError):
            return 400, {"code": -1102, "msg": "Mandatory parameter was not sent."}
        if p.get("side") != "SELL" or p.get("aboveType") != "LIMIT_MAKER":
            return 400, {"code": -1116, "msg": "Invalid orderType."}
        if p.get("belowType") != "STOP_LOSS_LIMIT" or not above > self.prices[symbol] > stop:
            return 400, BAD_OCO_PRICES
        for kind, price, level in (("LIMIT_MAKER", above, None), ("STOP_LOSS_LIMIT", below, stop)):
            failure = self._filters(symbol, kind, qty, price, level)
            if failure is not None:
                return 400, _filter_failure(failure)
        base, _ = self.assets[symbol]
        held = self.balances.setdefault(base, [Decimal(0), Decimal(0)])
        list_number = self._next_id
        self._next_id += 1
        legs = []
        for kind, price, level, cid in (
            ("STOP_LOSS_LIMIT", below, stop, p.get("belowClientOrderId")),
            ("LIMIT_MAKER", above, None, p.get("aboveClientOrderId")),
        ):
            status, refusal = self._book(
                symbol, kind, "SELL", cid or f"leg{self._next_id}", qty, price, level, "GTC"
            )
            if status != 200:
                return status, refusal
            stored = self.orders[-1]
            held[0] += qty  # `_book` locked the quantity per leg: the list holds one lock
            held[1] -= qty
            stored.update(orderListId=list_number, _list=list_id, _locked=None)
            legs.append(stored)
        held[0] -= qty
        held[1] += qty
        legs[0]["_locked"] = (base, qty)
        return 200, self._list_view(legs, with_reports=True)

    def _list_legs(self, p: dict[str, str]) -> list[dict[str, Any]]:
        wanted = p.get("origClientOrderId") or p.get("listClientOrderId")
        return [o for o in self.orders if o["_list"] is not None and o["_list"] == wanted]

    def _list_view(
        self, legs: list[dict[str, Any]], *, with_reports: bool = False
    ) -> dict[str, Any]:
        """An order list as Binance shows it; `orderReports` in placement and cancel answers."""
        done = all(o["status"] not in _OPEN for o in legs)
        view: dict[str, Any] = {
            "orderListId": legs[0]["orderListId"],
            "contingencyType": "OCO",
            "listStatusType": "ALL_DONE" if done else "EXEC_STARTED",
            "listOrderStatus": "ALL_DONE" if done else "EXECUTING",
            "listClientOrderId": legs[0]["_list"],
            "transactionTime": self.now_ms(),
            "symbol": legs[0]["symbol"],
            "orders": [
                {
                    "symbol": o["symbol"],
                    "orderId": o["orderId"],
                    "clientOrderId": o["clientOrderId"],
                }
                for o in legs
            ],
        }
        if with_reports:
            view["orderReports"] = [
                {k: v for k, v in o.items() if not k.startswith("_") and k != "fills"} for o in legs
            ]
        return view

    def _order_list(self, p: dict[str, str]) -> tuple[int, object]:
        legs = self._list_legs(p)
        return (200, self._list_view(legs)) if legs else (400, NO_SUCH_LIST)

    def _cancel_list(self, p: dict[str, str]) -> tuple[int, object]:
        legs = self._list_legs(p)
        if not legs or all(o["status"] not in _OPEN for o in legs):
            return 400, NO_SUCH_LIST
        for order in legs:
            if order["_locked"] is not None:
                asset, amount = order["_locked"]
                self.balances[asset][1] -= amount
                self.balances[asset][0] += amount
            order.update(status="CANCELED", _locked=None)
        return 200, self._list_view(legs, with_reports=True)

    def _filters(
        self, symbol: str, kind: str, qty: Decimal, price: Decimal | None, stop: Decimal | None
    ) -> str | None:
        """The filter a new order fails first, as Binance names it, or None."""
        f = self.filters[symbol]
        pf = f["PRICE_FILTER"]
        tick, low, high = (Decimal(pf[k]) for k in ("tickSize", "minPrice", "maxPrice"))
        for level in (price, stop):
            if level is not None and (level < low or level > high or (level - low) % tick != 0):
                return "PRICE_FILTER"
        lot = f["LOT_SIZE"]
        step, min_qty, max_qty = (Decimal(lot[k]) for k in ("stepSize", "minQty", "maxQty"))
        if qty < min_qty or qty > max_qty or (qty - min_qty) % step != 0:
            return "LOT_SIZE"
        market = kind in ("MARKET", "STOP_LOSS")
        if market and "MARKET_LOT_SIZE" in f:
            mls = f["MARKET_LOT_SIZE"]
            cap = Decimal(mls["maxQty"])
            if qty < Decimal(mls["minQty"]) or (cap > 0 and qty > cap):
                return "MARKET_LOT_SIZE"
        notional_filter = f.get("NOTIONAL")
        if notional_filter is not None:
            reference = self.prices[symbol] if market else price
            assert reference is not None
            notional = qty * reference
            if (not market or notional_filter["applyMinToMarket"]) and notional < Decimal(
                notional_filter["minNotional"]
            ):
                return "NOTIONAL"
            if (not market or notional_filter["applyMaxToMarket"]) and notional > Decimal(
                notional_filter["maxNotional"]
            ):
                return "NOTIONAL"
        return None

    def _book(
        self,
        symbol: str,
        kind: str,
        side: str,
        cid: str,
        qty: Decimal,
        price: Decimal | None,
        stop: Decimal | None,
        tif: str | None,
    ) -> tuple[int, object]:
        """Fill now (MARKET, or a marketable LIMIT) at the set price, or rest with funds locked."""
        base, quote = self.assets[symbol]
        market_price = self.prices[symbol]
        marketable = kind == "MARKET" or (
            kind == "LIMIT"
            and price is not None
            and (price >= market_price if side == "BUY" else price <= market_price)
        )
        base_bal = self.balances.setdefault(base, [Decimal(0), Decimal(0)])
        quote_bal = self.balances.setdefault(quote, [Decimal(0), Decimal(0)])
        now = self.now_ms()
        order: dict[str, Any] = {
            "symbol": symbol,
            "orderId": self._next_id,
            "orderListId": -1,
            "clientOrderId": cid,
            "transactTime": now,
            "price": _fmt(price or Decimal(0)),
            "origQty": _fmt(qty),
            "executedQty": _fmt(Decimal(0)),
            "origQuoteOrderQty": _fmt(Decimal(0)),
            "cummulativeQuoteQty": _fmt(Decimal(0)),
            "status": "NEW",
            "timeInForce": tif or "GTC",
            "type": kind,
            "side": side,
            "stopPrice": _fmt(stop or Decimal(0)),
            "workingTime": now,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "fills": [],
            "_locked": None,
            "_list": None,
        }
        if marketable:
            filled = (
                min(qty, self.depth[symbol]) if kind == "MARKET" and symbol in self.depth else qty
            )
            cost = filled * market_price
            if side == "BUY":
                if quote_bal[0] < cost:
                    return 400, INSUFFICIENT_BALANCE
                commission, commission_asset = filled * self.fee_rate, base
                quote_bal[0] -= cost
                base_bal[0] += filled - commission
            else:
                if base_bal[0] < qty:
                    return 400, INSUFFICIENT_BALANCE
                commission, commission_asset = cost * self.fee_rate, quote
                base_bal[0] -= filled
                quote_bal[0] += cost - commission
            order.update(
                status="FILLED" if filled == qty else "EXPIRED",
                executedQty=_fmt(filled),
                cummulativeQuoteQty=_fmt(cost),
                fills=[
                    {
                        "price": _fmt(market_price),
                        "qty": _fmt(filled),
                        "commission": _fmt(commission),
                        "commissionAsset": commission_asset,
                        "tradeId": self._next_id + 500_000,
                    }
                ],
            )
        else:
            asset, amount = (
                (quote, qty * (price or stop or market_price)) if side == "BUY" else (base, qty)
            )
            held = self.balances.setdefault(asset, [Decimal(0), Decimal(0)])
            if held[0] < amount:
                return 400, INSUFFICIENT_BALANCE
            held[0] -= amount
            held[1] += amount
            order["_locked"] = (asset, amount)
        self._next_id += 1
        self.orders.append(order)
        return 200, {k: v for k, v in order.items() if not k.startswith("_")}

    def _find(self, p: dict[str, str]) -> dict[str, Any] | None:
        symbol, cid, oid = p.get("symbol"), p.get("origClientOrderId"), p.get("orderId")
        matches = [
            o
            for o in self.orders
            if o["symbol"] == symbol
            and (cid is None or o["clientOrderId"] == cid)
            and (oid is None or str(o["orderId"]) == oid)
        ]
        return matches[-1] if matches and (cid or oid) else None

    def _view(self, order: dict[str, Any]) -> dict[str, Any]:
        """An order as GET /api/v3/order shows it (no fills)."""
        shown = {k: v for k, v in order.items() if not k.startswith("_") and k != "fills"}
        shown.pop("transactTime", None)
        shown.update(
            time=order["transactTime"],
            updateTime=order["transactTime"],
            isWorking=True,
            icebergQty=_fmt(Decimal(0)),
        )
        return shown

    def _query(self, p: dict[str, str]) -> tuple[int, object]:
        found = self._find(p)
        return (200, self._view(found)) if found is not None else (400, NO_SUCH_ORDER)

    def _cancel(self, p: dict[str, str]) -> tuple[int, object]:
        found = self._find(p)
        if found is None or found["status"] not in _OPEN:
            return 400, UNKNOWN_ORDER
        found["status"] = "CANCELED"
        if found["_locked"] is not None:
            asset, amount = found["_locked"]
            self.balances[asset][1] -= amount
            self.balances[asset][0] += amount
            found["_locked"] = None
        shown = {k: v for k, v in self._view(found).items() if k not in ("time", "updateTime")}
        shown.update(
            origClientOrderId=found["clientOrderId"],
            clientOrderId=f"cancel{self._next_id}",
            transactTime=self.now_ms(),
        )
        self._next_id += 1
        return 200, shown

    def _trades(self, p: dict[str, str]) -> list[dict[str, Any]]:
        """GET /api/v3/myTrades for one order: its fills in Binance's trade-list shape."""
        return [
            {
                "symbol": o["symbol"],
                "id": f["tradeId"],
                "orderId": o["orderId"],
                "orderListId": -1,
                "price": f["price"],
                "qty": f["qty"],
                "quoteQty": _fmt(Decimal(f["price"]) * Decimal(f["qty"])),
                "commission": f["commission"],
                "commissionAsset": f["commissionAsset"],
                "time": o["transactTime"],
                "isBuyer": o["side"] == "BUY",
                "isMaker": False,
                "isBestMatch": True,
            }
            for o in self.orders
            if o["symbol"] == p.get("symbol") and str(o["orderId"]) == p.get("orderId")
            for f in o["fills"]
        ]

    def _account(self, p: dict[str, str]) -> dict[str, Any]:
        omit_zero = p.get("omitZeroBalances") == "true"
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "updateTime": self.now_ms(),
            "accountType": "SPOT",
            "balances": [
                {"asset": asset, "free": _fmt(free), "locked": _fmt(locked)}
                for asset, (free, locked) in self.balances.items()
                if not (omit_zero and free == 0 and locked == 0)
            ],
            "permissions": ["SPOT"],
        }

    # --- HTTP ------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BinanceJsonHandler):
            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                params = dict(parse_qsl(url.query)) | dict(parse_qsl(body))
                req = Received(
                    method, url.path, params, url.query, self.headers.get("X-MBX-APIKEY")
                )
                fault = server._arrive(req)
                if fault is not None and not fault.after_accept:
                    time.sleep(fault.delay_s)
                    if fault.fails:
                        self._fail(fault)
                        return
                status, payload = server._route(req, body)
                if fault is not None and fault.after_accept:
                    time.sleep(fault.delay_s)
                    if fault.fails:
                        self._fail(fault)
                        return
                headers = {"X-MBX-USED-WEIGHT-1M": str(server.weight)}
                if (method, url.path) == ("POST", "/api/v3/order"):
                    headers["X-MBX-ORDER-COUNT-10S"] = str(server.count("POST", url.path))
                self._send(status, payload, headers)

            def _fail(self, fault: ExchangeFault) -> None:
                # An error status keeps the connection open, as Binance's do: closing it after
                # the reply raced the client's reuse of it ("Server disconnected") under load.
                self.close_connection = fault.reset or fault.drop
                if fault.reset:
                    # SO_LINGER 0 turns close() into a TCP RST: "connection reset by peer".
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.rfile.close()
                    self.connection.close()
                    return
                if fault.drop:
                    return  # closed without a byte of reply
                assert fault.status is not None
                body = fault.body if fault.body is not None else DEFAULT_BODIES.get(fault.status)
                self._send(fault.status, body or {}, fault.headers)

        return Handler


@pytest.fixture
def exchange() -> Iterator[LoopbackExchange]:
    server = LoopbackExchange().start()
    yield server
    server.stop()
