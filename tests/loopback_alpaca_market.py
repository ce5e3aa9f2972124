"""A stock market on 127.0.0.1 that speaks Alpaca's v2 API: a real bar file (the EA 15-minute
Yahoo bars) served as Alpaca bars, a clock that moves one bar forward each time it is asked (so
a polling loop meets a new closed bar on every poll, without waiting; a stretch without bars
passes in one question), and a paper-trading
account that takes orders under their client_order_id, fills a market order at the next bar's
open in regular hours, and holds one sent while the market is closed until the next open, as
Alpaca does with a DAY order. Faults script a lost reply and an order-status outage."""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
from loopback_alpaca import send_json
from loopback_bybit import LoopbackServer

EA = Path(__file__).parent / "fixtures" / "stocks" / "EA-15m-2026-05-26_2026-06-03_yfinance.csv"
NY = "America/New_York"


def ea_bars() -> pd.DataFrame:
    frame = pd.read_csv(EA)
    times = pd.to_datetime(frame["Datetime"], utc=True)
    return pd.DataFrame(
        {
            "t": times,
            "o": frame["Open"],
            "h": frame["High"],
            "l": frame["Low"],
            "c": frame["Close"],
            "v": frame["Volume"],
        }
    )


def regular(at: pd.Timestamp) -> bool:
    """In regular hours (the file's week has no holiday and no early close)."""
    local = at.tz_convert(NY)
    minutes = local.hour * 60 + local.minute
    return local.weekday() < 5 and 570 <= minutes < 960


class AlpacaMarket(LoopbackServer):
    """`symbol`'s bars from the EA file; the clock starts one bar before `start` (default: the
    file's first bar, so the first question already finds it closed)."""

    def __init__(self, symbol: str = "EA", *, start: pd.Timestamp | None = None) -> None:
        self.symbol = symbol
        self.bars = ea_bars()
        self.step = pd.Timedelta(minutes=15)
        # Polling asks for the closed bars at every bar: answered from sorted open times and
        # ready-made bodies, not by filtering the frame per request (the loopback's CPU, not the
        # client's, was most of a polling test).
        assert self.bars["t"].is_monotonic_increasing
        self.opens = list(self.bars["t"])
        self.regular = [regular(at) for at in self.opens]
        self.bodies = [
            {"t": r.t.strftime("%Y-%m-%dT%H:%M:%SZ"), "o": r.o, "h": r.h, "l": r.l, "c": r.c,
             "v": r.v, "n": 1, "vw": r.c}
            for r in self.bars.itertuples()
        ]  # fmt: skip
        first = self.bars["t"].iloc[0] if start is None else start
        self.now = first - self.step
        self.cash = 100_000.0
        self.positions: dict[str, float] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.posts: list[str] = []
        self.lose_replies = 0  # the next N order replies are lost (taken, answered 500)
        self.status_down = False  # order-status queries answer 503
        self.bars_down = 0  # the next N bar requests answer 503
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._listen(self._handler())

    # -- market data -------------------------------------------------------------------------

    def clock(self) -> dict[str, Any]:
        """A bar on; a night or a weekend without bars passes in one question (to the next
        bar's open, still closed), as a poller waits it out in one sleep."""
        upcoming = self.closed()  # the next bar to close
        self.now += self.step
        if upcoming < len(self.opens) and self.now < self.opens[upcoming]:
            self.now = self.opens[upcoming]
        for order in self.orders.values():  # the open fills what waited for it
            self.fill(order)
        local = self.now.tz_convert(NY)
        opening = local.normalize() + pd.Timedelta(hours=9, minutes=30)
        while opening <= local or opening.weekday() >= 5:
            opening += pd.Timedelta(days=1)
        return {
            "timestamp": self.now.isoformat(),
            "is_open": regular(self.now),
            "next_open": opening.isoformat(),
            "next_close": (opening + pd.Timedelta(hours=6, minutes=30)).isoformat(),
        }

    def closed(self) -> int:
        """How many of the file's bars have closed by the clock."""
        return bisect_right(self.opens, self.now - self.step)

    def bars_body(self, query: dict[str, str]) -> dict[str, Any]:
        first = bisect_left(self.opens, pd.Timestamp(query["start"]))
        last = self.closed()
        if "end" in query:
            last = min(last, bisect_right(self.opens, pd.Timestamp(query["end"])))
        out = self.bodies[first:last]
        return {"bars": {self.symbol: out} if out else {}, "next_page_token": None}

    def last_price(self) -> float:
        return float(self.bars["c"].iloc[max(self.closed() - 1, 0)])

    # -- trading -----------------------------------------------------------------------------

    def take(self, sent: dict[str, Any]) -> dict[str, Any]:
        order = {"id": f"o{len(self.orders) + 1}", "client_order_id": sent["client_order_id"],
                 "symbol": sent["symbol"], "side": sent["side"], "type": sent["type"],
                 "qty": sent["qty"], "filled_qty": "0", "filled_avg_price": None,
                 "status": "accepted", "placed": self.now}  # fmt: skip
        self.orders[sent["client_order_id"]] = order
        self.posts.append(sent["client_order_id"])
        return self.fill(order)

    def fill(self, order: dict[str, Any]) -> dict[str, Any]:
        """A working order fills at the open of the first regular-hours bar opening at or after
        both its placing and the clock's last closed bar (it cannot fill in the past)."""
        if order["status"] != "accepted":
            return order
        opened = range(bisect_left(self.opens, order["placed"]), bisect_right(self.opens, self.now))
        due = [i for i in opened if self.regular[i]]
        if not due:
            return order
        at = self.opens[due[0]]
        price, qty = float(self.bars["o"].iloc[due[0]]), float(order["qty"])
        sign = 1 if order["side"] == "buy" else -1
        self.cash -= sign * qty * price
        self.positions[order["symbol"]] = self.positions.get(order["symbol"], 0.0) + sign * qty
        order.update(
            status="filled",
            filled_qty=order["qty"],
            filled_avg_price=str(price),
            filled_at=max(at, order["placed"]).isoformat(),
        )
        return order

    def public(self, order: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in order.items() if k != "placed"}

    # -- HTTP --------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        market = self

        class Handler(BaseHTTPRequestHandler):
            # One connection for a poller's hundreds of questions, as Alpaca keeps it open;
            # without Nagle, as a reply's headers and body are two writes.
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                market.requests.append((url.path, query))
                send_json(self, *market.get(url.path, query))

            def do_POST(self) -> None:
                sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                market.requests.append((urlsplit(self.path).path, sent))
                order = market.public(market.take(sent))
                if market.lose_replies:
                    market.lose_replies -= 1
                    return send_json(self, 500, {"message": "internal error"})
                send_json(self, 200, order)

            def log_message(self, *_args: object) -> None:
                return

        return Handler

    def get(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path == "/v2/clock":
            return 200, self.clock()
        if path == "/v2/stocks/bars":
            if self.bars_down:
                self.bars_down -= 1
                return 503, {"message": "service unavailable"}
            return 200, self.bars_body(query)
        if path == "/v2/stocks/trades/latest":
            trade = {"t": self.now.isoformat(), "p": self.last_price(), "s": 1, "x": "V"}
            return 200, {"trades": {self.symbol: trade}}
        if path == "/v2/orders:by_client_order_id":
            if self.status_down:
                return 503, {"message": "service unavailable"}
            found = self.orders.get(query["client_order_id"])
            return (200, self.public(found)) if found else (404, {"message": "none"})
        if path == "/v2/orders":
            working = [o for o in self.orders.values() if o["status"] == "accepted"]
            return 200, [self.public(o) for o in working]
        if path == "/v2/account":
            return 200, {"cash": f"{self.cash:.2f}", "equity": f"{self.cash:.2f}",
                         "buying_power": f"{self.cash:.2f}", "currency": "USD",
                         "trading_blocked": False}  # fmt: skip
        if path == "/v2/positions":
            return 200, [
                {"symbol": s, "qty": f"{q:g}", "avg_entry_price": "0", "market_value": "0"}
                for s, q in self.positions.items()
                if q
            ]
        return 404, {"message": f"loopback: no route {path}"}
