"""The Alpaca paper-trading adapter against a stateful loopback Alpaca: a sealed order goes out
under the gate's client_order_id; after a 5xx the adapter asks for the order by that id and
resends only if Alpaca never took it, so an unknown outcome never doubles an order."""

from __future__ import annotations

import json
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import pytest
from loopback_alpaca import body, send_json
from loopback_bybit import LoopbackServer

from execution.binance_venue import BinanceVenue
from execution.equity_fees import EquityFees
from execution.paper import GrowingFeed
from market.instruments import equity_rules
from risk.approval import UnapprovedOrderError, client_order_id
from risk.gate import assess
from risk.limits import RiskLimits
from risk.models import (
    Approved,
    MarketView,
    PortfolioView,
    SignalAction,
    SignalSource,
    TradeSignal,
)
from risk.state import RiskState
from venues.alpaca.broker import AlpacaBroker
from venues.alpaca.data import AlpacaKeys
from venues.alpaca.trading import AlpacaPaper, AlpacaUnknown

KEYS = AlpacaKeys(key_id="PKTEST", secret="not-a-secret")
# Hand-made account state: alpaca-py's captured account and position bodies are placeholders.
ACCOUNT = {"cash": "9000.00", "equity": "10000.00", "buying_power": "18000.00",
           "currency": "USD", "trading_blocked": False}  # fmt: skip
POSITIONS = [{"symbol": "AAPL", "qty": "5", "avg_entry_price": "200.00", "market_value": "1000"}]


class PaperAlpaca(LoopbackServer):
    """Keeps the orders it took. `faults` script the next POSTs: "lost" takes the order and
    answers 500 (the reply was lost), "odd" takes it and answers something that is not an
    order, "down" answers 503 without taking it."""

    def __init__(self, faults: list[str], odd_reads: int = 0, fill_at: str | None = None) -> None:
        self.faults = list(faults)
        self.odd_reads = odd_reads  # the next reads of an order answer something else
        self.fill_at = fill_at  # a market order fills at once at this price, as in a session
        self.orders: dict[str, dict] = {}
        self.posts = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, answer: object) -> None:
                send_json(self, status, answer)

            def do_POST(self) -> None:
                server.posts += 1
                sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fault = server.faults.pop(0) if server.faults else None
                if fault == "down":
                    return self._send(503, {"message": "service unavailable"})
                order = {"id": f"o{len(server.orders) + 1}", "symbol": sent["symbol"],
                         "client_order_id": sent["client_order_id"], "side": sent["side"],
                         "qty": sent["qty"], "filled_qty": "0", "filled_avg_price": None,
                         "status": "accepted"}  # fmt: skip
                if server.fill_at is not None:
                    order |= {"filled_qty": sent["qty"], "filled_avg_price": server.fill_at,
                              "status": "filled"}  # fmt: skip
                server.orders[sent["client_order_id"]] = order
                if fault == "odd":  # taken, but the reply is not an order (a proxy's page)
                    return self._send(200, {"message": "ok"})
                self._send(500 if fault == "lost" else 200, order)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/v2/orders:by_client_order_id":
                    if server.odd_reads:
                        server.odd_reads -= 1
                        return self._send(200, {"message": "ok"})
                    cid = parse_qs(url.query)["client_order_id"][0]
                    found = server.orders.get(cid)
                    return self._send(200, found) if found else self._send(404, {})
                answers = {"/v2/account": ACCOUNT, "/v2/positions": POSITIONS,
                           "/v2/clock": body("rest_broker_v1_clock_2022-05-16.json")}  # fmt: skip
                self._send(200, answers[url.path])

            def log_message(self, *_args: object) -> None:
                return

        self._listen(Handler)


def sealed(decision_id: str = "agent:AAPL:1", **levels: float):
    rules = equity_rules("AAPL", 200.0)
    signal = TradeSignal(decision_id=decision_id, source=SignalSource.STRATEGY, symbol="AAPL",
                         action=SignalAction.BUY, quantity=5, created_ms=0, **levels)  # fmt: skip
    portfolio = PortfolioView(cash=10_000, equity=10_000, peak_equity=10_000,
                              day_start_equity=10_000)  # fmt: skip
    market = MarketView(symbol="AAPL", last_price=200.0, data_time_ms=0, rules=rules)
    verdict = assess(signal, portfolio, market, 1, RiskLimits(), RiskState())
    assert isinstance(verdict, Approved), verdict
    return verdict.order


@pytest.mark.parametrize(
    ("faults", "posts"),
    [([], 1), (["lost"], 1), (["odd"], 1), (["down"], 2), (["down", "lost"], 2)],
)
def test_an_order_is_sent_once_under_its_decisions_id_whatever_the_replies(faults, posts) -> None:
    order = sealed()
    with PaperAlpaca(faults) as server, AlpacaPaper(KEYS, base_url=server.url) as paper:
        placed = paper.submit(order)
    assert placed.client_order_id == order.client_order_id == client_order_id("agent:AAPL:1")
    assert list(server.orders) == [order.client_order_id]
    assert server.posts == posts
    assert placed.qty == Decimal("5") and placed.side == "buy"


def test_only_a_sealed_order_is_sent() -> None:
    forged = sealed().model_copy(update={"quantity": Decimal("500")})
    with (
        PaperAlpaca([]) as server,
        AlpacaPaper(KEYS, base_url=server.url) as paper,
        pytest.raises(UnapprovedOrderError),
    ):
        paper.submit(forged)
    assert server.posts == 0


def test_positions_account_and_clock() -> None:
    with PaperAlpaca([]) as server, AlpacaPaper(KEYS, base_url=server.url) as paper:
        (position,) = paper.positions()
        account = paper.account()
        clock = paper.clock()
    assert (position.symbol, position.qty) == ("AAPL", Decimal("5"))
    assert account.equity == Decimal("10000.00") and not account.trading_blocked
    assert not clock.is_open


def test_an_order_alpaca_took_but_cannot_be_asked_about_is_unknown_not_rejected() -> None:
    """A DAY order waits at Alpaca ('accepted') and the broker asks after it; when that answer
    is not an order, the outcome is unknown (the loop settles it on a later bar), never the
    'not placed' an AlpacaError would book."""
    with PaperAlpaca([], odd_reads=1) as server, AlpacaPaper(KEYS, base_url=server.url) as paper:
        broker = AlpacaBroker(paper, base_url=server.url, mode="testnet", fees=EquityFees(),
                              fill_wait_s=5.0, sleep=lambda s: None)  # fmt: skip
        with pytest.raises(AlpacaUnknown, match=r"Alpaca took \S+ but could not be asked about it"):
            broker.submit(sealed())


def test_an_alpaca_entry_with_a_stop_fills_and_leaves_the_stop_to_the_loop() -> None:
    """Alpaca holds no resting stop for the loop: an entry carrying one is booked filled and
    its stop is watched on closed bars, as before Bybit's stop came to rest at Bybit."""
    with (
        PaperAlpaca([], fill_at="200.00") as server,
        AlpacaPaper(KEYS, base_url=server.url) as paper,
    ):
        broker = AlpacaBroker(paper, base_url=server.url, mode="testnet", fees=EquityFees(),
                              fill_wait_s=0.0, sleep=lambda s: None)  # fmt: skip
        rules = {"AAPL": equity_rules("AAPL", 200.0)}
        venue = BinanceVenue(broker, rules, GrowingFeed(["AAPL"]), cash=10_000.0, exchange="Alpaca")
        answer = venue.execute(sealed(stop_loss=190.0))
    assert answer["status"] == "filled", answer
    assert venue.brackets["AAPL"]["stop_loss"] == 190.0 and not venue.protections


def test_a_lost_reply_whose_follow_up_read_is_not_an_order_leaves_the_order_unknown() -> None:
    """Alpaca took the order but its reply was lost, and the read that asks after it answers
    something else: unknown (settled on a later bar), never the 'not placed' that lets the
    loop's venue book an order Alpaca holds as rejected."""
    order = sealed()
    with (
        PaperAlpaca(["lost"], odd_reads=1) as server,
        AlpacaPaper(KEYS, base_url=server.url) as paper,
        pytest.raises(AlpacaUnknown, match="could not be asked about it"),
    ):
        paper.submit(order)
    assert list(server.orders) == [order.client_order_id] and server.posts == 1
