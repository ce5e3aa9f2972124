"""A Bybit v5 spot exchange's private REST on 127.0.0.1 for the signed executor: it verifies the
X-BAPI-* signature by Bybit's documented rule, keeps orders, executions and a unified wallet,
fills market orders at a set price with Bybit spot's fee coins (a buy pays in the base coin),
holds spot conditional orders (orderFilter=StopOrder) Untriggered until `move` takes the price
to their trigger, and plays scripted faults. Its answers are built from real shapes: the
server-time and wallet-balance captures and Bybit's documented order and execution payloads.

Conditional orders follow Bybit's documented rules: Untriggered, then Triggered and New (a
limit order at their price) once the last price reaches the trigger; cancelled before that they
are Deactivated, and only a cancel that names orderFilter=StopOrder finds them (Order, the
default, answers "order does not exist")."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from loopback_bybit import LoopbackServer

FIXTURES = Path(__file__).parent / "fixtures" / "bybit"
INSTRUMENTS = FIXTURES / "rest_spot_instruments-info_full_cryptofeed_2026-08-09.json"

# Made-up credentials: the exchange knows them, a test hands them to the executor.
API_KEY = "byKEY0a1b2c3d4e5f6a7b8"
API_SECRET = "bySECRET9f8e7d6c5b4a39281706f5e4d3c2b1a0"
TRADE_ONLY = {"Spot": ["SpotTrade"], "Wallet": ["AccountTransfer"], "ContractTrade": []}
FEE_RATE = Decimal("0.001")
_LIVE = ("New", "PartiallyFilled", "Untriggered")


@cache
def _template(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def envelope(result: object, code: int = 0, msg: str = "OK") -> dict[str, Any]:
    return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": 0}


@dataclass
class TradeFault:
    """The next request to `path` goes wrong: a retCode, an HTTP status, or `body` sent as the
    answer (a reply of the wrong shape); `after_accept` lets an order be taken before its reply
    fails (the lost-reply case)."""

    path: str = "/v5/order/create"
    ret_code: int = 0
    status: int = 200
    after_accept: bool = False
    body: object | None = None


class BybitExchange(LoopbackServer):
    def __init__(
        self,
        prices: dict[str, str] | None = None,
        balances: dict[str, str] | None = None,
        permissions: dict[str, list[str]] | None = None,
        read_only: int = 0,
        ips: list[str] | None = None,
    ) -> None:
        self.prices = {k: Decimal(v) for k, v in (prices or {"BTCUSDT": "110000"}).items()}
        self.wallet = {k: Decimal(v) for k, v in (balances or {"USDT": "10000"}).items()}
        self.key_info = {
            "id": "1",
            "note": "loopback",
            "apiKey": API_KEY,
            "readOnly": read_only,
            "secret": "",
            "permissions": permissions if permissions is not None else TRADE_ONLY,
            "ips": ips if ips is not None else ["127.0.0.1"],
            "type": 1,
            "uta": 1,
        }
        # The most an order fills, by symbol (the book's depth at its price): a Market order's
        # rest is cancelled, as Bybit spot does when the book runs out (PartiallyFilledCanceled);
        # a limit's rest stays on the book (PartiallyFilled).
        self.depth: dict[str, Decimal] = {}
        self.secret = API_SECRET  # what it verifies signatures with: change it to revoke the key
        self.orders: list[dict[str, Any]] = []
        self.executions: list[dict[str, Any]] = []
        self.faults: list[TradeFault] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._listen(self._handler())

    def count(self, method: str, path: str) -> int:
        return self.requests.count((method, path))

    def orders_with(self, link_id: str) -> list[dict[str, Any]]:
        return [o for o in self.orders if o["orderLinkId"] == link_id]

    # --- the exchange -------------------------------------------------------------------------

    def answer(self, method: str, path: str, params: dict[str, str]) -> tuple[int, object]:
        fault = next((f for f in self.faults if f.path == path), None)
        if fault is not None:
            self.faults.remove(fault)
            if fault.after_accept:
                self._route(method, path, params)
            if fault.body is not None:
                return fault.status, fault.body
            if fault.status != 200:
                return fault.status, "<html>502 Bad Gateway</html>"
            return 200, envelope({}, fault.ret_code, f"scripted {fault.ret_code}")
        return 200, self._route(method, path, params)

    def _route(self, method: str, path: str, params: dict[str, str]) -> object:
        if path == "/v5/market/time":
            body = copy.deepcopy(_template("rest_server_time_nautilus.json"))
            now_ns = time.time_ns()
            body["result"] = {"timeSecond": str(now_ns // 10**9), "timeNano": str(now_ns)}
            return body
        if path == "/v5/market/instruments-info":
            body = json.loads(INSTRUMENTS.read_text())
            body["result"]["list"] = [
                e for e in body["result"]["list"] if e["symbol"] == params["symbol"]
            ]
            return body
        if path == "/v5/user/query-api":
            return envelope(self.key_info)
        if path == "/v5/order/create":
            return self._create(params)
        if path in ("/v5/order/realtime", "/v5/order/history"):
            live = path == "/v5/order/realtime"
            found = [
                o
                for o in self.orders
                if params.get("orderLinkId") in (None, o["orderLinkId"])
                and (o["orderStatus"] in _LIVE) == live
            ]
            return envelope({"category": "spot", "list": found, "nextPageCursor": ""})
        if path == "/v5/order/cancel":
            return self._cancel(params)
        if path == "/v5/execution/list":
            found = [e for e in self.executions if e["orderId"] == params["orderId"]]
            return envelope({"category": "spot", "list": found, "nextPageCursor": ""})
        if path == "/v5/account/wallet-balance":
            return envelope({"list": [self._account()]})
        return envelope({}, 10001, f"unknown path {path}")

    def _create(self, body: dict[str, str]) -> object:
        with self._lock:
            if self.orders_with(body["orderLinkId"]):
                return envelope({}, 170141, "Duplicate clientOrderId.")
            order = copy.deepcopy(_template("ws_private_order_bybitdocs.json")["data"][0])
            order_id = str(1_500_000_000_000_000_000 + len(self.orders))
            qty = Decimal(body["qty"])
            conditional = body.get("orderFilter") == "StopOrder"
            order.update(
                category="spot",
                symbol=body["symbol"],
                orderId=order_id,
                orderLinkId=body["orderLinkId"],
                side=body["side"],
                orderType=body["orderType"],
                qty=body["qty"],
                price=body.get("price", "0"),
                timeInForce=body.get("timeInForce", "IOC"),
                orderStatus="Untriggered" if conditional else "New",
                triggerPrice=body.get("triggerPrice", ""),
                stopOrderType="Stop" if conditional else "",
                _filter="StopOrder" if conditional else "Order",
                cumExecQty="0",
                cumExecValue="0",
                avgPrice="",
                updatedTime=str(time.time_ns() // 10**6),
            )
            self.orders.append(order)
            if body["orderType"] == "Market":
                if body.get("marketUnit") != "baseCoin":
                    raise AssertionError("a spot market order's qty must be in the base coin")
                self._fill(order, min(qty, self.depth.get(body["symbol"], qty)), None)
            return envelope({"orderId": order_id, "orderLinkId": body["orderLinkId"]})

    def _fill(self, order: dict[str, Any], qty: Decimal, price: Decimal | None) -> None:
        """`qty` of `order` filled at `price` (None: the set price, as a market order)."""
        price = self.prices[order["symbol"]] if price is None else price
        base, quote = order["symbol"].removesuffix("USDT"), "USDT"
        value = qty * price
        if order["side"] == "Buy":
            fee, fee_coin = qty * FEE_RATE, base
            self._move(quote, -value)
            self._move(base, qty - fee)
        else:
            fee, fee_coin = value * FEE_RATE, quote
            self._move(base, -qty)
            self._move(quote, value - fee)
        execution = copy.deepcopy(_template("ws_private_execution_bybitdocs.json")["data"][0])
        execution.update(
            category="spot",
            symbol=order["symbol"],
            orderId=order["orderId"],
            orderLinkId=order["orderLinkId"],
            side=order["side"],
            orderType=order["orderType"],
            execPrice=str(price),
            execQty=str(qty),
            execValue=str(value),
            execFee=str(fee),
            feeCurrency=fee_coin,
            feeRate=str(FEE_RATE),
            execId=f"exec-{len(self.executions)}",
        )
        self.executions.append(execution)
        rest = "PartiallyFilled" if order["orderType"] == "Limit" else "PartiallyFilledCanceled"
        order.update(
            orderStatus="Filled" if qty == Decimal(order["qty"]) else rest,
            cumExecQty=str(qty),
            cumExecValue=str(value),
            avgPrice=str(price),
        )

    def move(self, symbol: str, price: str) -> None:
        """The last price moves to `price`: a conditional sell it reaches triggers, and a
        limit sell at or under it fills at its limit price."""
        with self._lock:
            self.prices[symbol] = last = Decimal(price)
            for order in self.orders:
                if order["symbol"] != symbol or order["side"] != "Sell":
                    continue
                if order["orderStatus"] == "Untriggered" and last <= Decimal(order["triggerPrice"]):
                    order.update(orderStatus="New", _filter="Order")  # through Triggered
                if order["orderStatus"] == "New" and Decimal(order["price"]) <= last:
                    qty = min(Decimal(order["qty"]), self.depth.get(symbol, Decimal(order["qty"])))
                    self._fill(order, qty, Decimal(order["price"]))

    def _cancel(self, body: dict[str, str]) -> object:
        [order] = self.orders_with(body["orderLinkId"]) or [None]
        if (
            order is None
            or order["orderStatus"] not in _LIVE
            or order["_filter"] != body.get("orderFilter", "Order")
        ):
            return envelope({}, 170213, "Order does not exist.")
        order["orderStatus"] = {
            "Untriggered": "Deactivated",
            "PartiallyFilled": "PartiallyFilledCanceled",
        }.get(order["orderStatus"], "Cancelled")
        return envelope({"orderId": order["orderId"], "orderLinkId": order["orderLinkId"]})

    def _move(self, coin: str, amount: Decimal) -> None:
        self.wallet[coin] = self.wallet.get(coin, Decimal(0)) + amount

    def _account(self) -> dict[str, Any]:
        account = copy.deepcopy(_template("rest_wallet_balance_account_nautilus.json"))
        [usdt] = account["coin"]
        account["coin"] = [
            usdt | {"coin": coin, "walletBalance": str(amount), "locked": "0"}
            for coin, amount in self.wallet.items()
        ]
        return account

    # --- HTTP ---------------------------------------------------------------------------------

    def _verify(self, headers: Any, payload: str) -> dict[str, Any] | None:
        """Bybit's rule: HMAC-SHA256(secret, timestamp + key + recvWindow + payload)."""
        key, stamp = headers.get("X-BAPI-API-KEY"), headers.get("X-BAPI-TIMESTAMP")
        window, signature = headers.get("X-BAPI-RECV-WINDOW"), headers.get("X-BAPI-SIGN")
        if key != API_KEY:
            return envelope({}, 10003, "API key is invalid.")
        message = f"{stamp}{key}{window}{payload}".encode()
        expected = hmac.new(self.secret.encode(), message, hashlib.sha256).hexdigest()
        if signature != expected:
            return envelope({}, 10004, "Error sign, please check your signature generation.")
        if abs(int(stamp) - time.time_ns() // 10**6) > int(window):
            return envelope({}, 10002, "invalid request, please check your server timestamp")
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        exchange = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def _serve(self, method: str, payload: str, params: dict[str, str]) -> None:
                path = urlsplit(self.path).path
                exchange.requests.append((method, path))
                refused = None
                if not path.startswith("/v5/market/"):
                    refused = exchange._verify(self.headers, payload)
                status, body = (200, refused) if refused else exchange.answer(method, path, params)
                raw = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                query = urlsplit(self.path).query
                self._serve("GET", query, dict(parse_qsl(query)))

            def do_POST(self) -> None:
                payload = self.rfile.read(int(self.headers["Content-Length"])).decode()
                self._serve("POST", payload, json.loads(payload))

            def log_message(self, *args: object) -> None:
                pass

        return Handler
