"""An exchange reply of the wrong shape (a field missing, an order that is not one) on the
loopback exchanges: the order is asked about, or left unknown until it can be read, and the
loop's venue goes on; never a traceback halfway through an order, never a second order."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loopback_binance import Fault, LoopbackBinance
from loopback_bybit_trading import API_KEY as BYBIT_KEY
from loopback_bybit_trading import API_SECRET as BYBIT_SECRET
from loopback_bybit_trading import BybitExchange, TradeFault
from loopback_exchange import ExchangeFault, LoopbackExchange
from test_binance_executor import approve
from test_exchange_protection import venue

from execution.binance_venue import BinanceVenue
from execution.paper import GrowingFeed
from venues.bybit.trading import BybitExecutor

NOT_AN_ORDER = {"symbol": "BTCUSDT", "note": "a proxy's idea of an answer"}


@pytest.fixture
def binance() -> Iterator[LoopbackExchange]:
    server = LoopbackExchange(balances={"USDT": "10000", "BTC": "0"}).start()
    yield server
    server.stop()


def placed(server: LoopbackExchange) -> list[dict]:
    return [o for o in server.orders if o["clientOrderId"].startswith("agt-")]


def test_a_placement_reply_that_is_not_an_order_is_asked_about_and_never_resent(
    binance: LoopbackExchange,
) -> None:
    binance.script(ExchangeFault(status=200, body=NOT_AN_ORDER, after_accept=True))
    place = venue(binance)
    answer = place.execute(approve("shape-1", quantity=0.01))
    assert answer["status"] == "filled", answer  # the status query found what was placed
    assert len(placed(binance)) == 1
    assert place.ledger.quantity("BTCUSDT") == pytest.approx(float(binance.balance("BTC")[0]))


def test_an_unreadable_status_reply_leaves_the_order_unknown_until_it_can_be_read(
    binance: LoopbackExchange,
) -> None:
    # The placement's reply is lost and the status query that follows answers nonsense.
    binance.script(
        ExchangeFault(status=503, after_accept=True),
        ExchangeFault(method="GET", status=200, body=NOT_AN_ORDER),
    )
    place = venue(binance)
    answer = place.execute(approve("shape-2", quantity=0.01))
    assert answer["status"] == "unknown", answer
    assert "reply to order_status cannot be read: ValidationError" in answer["reason"]
    place.settle()  # the next bar asks again, and this time the reply reads
    assert [o.status for o in place.orders.values()] == ["filled"]
    assert len(placed(binance)) == 1


def test_a_bybit_order_whose_status_cannot_be_read_is_unknown_then_settled() -> None:
    """Bybit's create answer holds only ids, so every order's fills come from a status query;
    when that answers nonsense the order is unknown (Bybit took it), not rejected."""
    with BybitExchange() as bybit:
        trader = BybitExecutor(
            BYBIT_KEY, BYBIT_SECRET, base_url=bybit.url, sleep=lambda s: None, timeout_s=2.0
        )
        rules = {"BTCUSDT": trader.symbol_rules("BTCUSDT")}
        venue = BinanceVenue(
            trader, rules, GrowingFeed(["BTCUSDT"]), cash=10_000.0, exchange="Bybit"
        )
        odd = {"retCode": 0, "retMsg": "OK", "result": {"list": [{"orderId": "1"}]}}
        bybit.faults.append(TradeFault(path="/v5/order/realtime", body=odd))
        order = approve("shape-3", quantity=0.01)
        answer = venue.execute(order)
        assert answer["status"] == "unknown", answer
        assert "Bybit took order" in answer["reason"] and "no 'symbol' in it" in answer["reason"]
        venue.settle()
        assert venue.orders[order.client_order_id].status == "filled"
        assert len(bybit.orders_with(order.client_order_id)) == 1


@pytest.mark.slow
def test_a_kline_page_of_the_wrong_shape_ends_a_download_in_one_line(cli) -> None:
    """Public market data too: a page whose rows are short is Binance being unusable, said in
    one line (exit 1, as for an unreachable exchange), not an IndexError traceback."""
    server = LoopbackBinance().start()
    try:
        server.script(Fault(status=200, body=[[1_761_711_720_000, "1", "2"]]))
        env = {"AGENT_BINANCE__BASE_URL": server.base_url, "AGENT_BINANCE__MAX_RETRIES": "0"}
        result = cli("agent-data", "download", "--symbol", "BTCUSDT", "--days", "1", env=env)
    finally:
        server.stop()
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "error: Binance's reply to klines cannot be read: IndexError: list index out of range"
    )
