"""Protection that survives our process on Bybit, whose spot API holds no OCO: after an entry
fills, its stop rests there alone as a conditional stop-limit sell (the loopback exchange keeps
conditional orders by Bybit's documented rules) and the loop watches the target. A restart finds
the stop instead of placing another, a fill while we were down is booked, and our own exit
cancels the stop, under its orderFilter, before selling."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from loopback_bybit_trading import API_KEY, API_SECRET, BybitExchange, TradeFault, envelope
from test_binance_executor import approve
from test_exchange_protection import close, restart
from test_trailing_exchange import bar

from execution.binance_venue import BinanceVenue
from execution.paper import GrowingFeed
from market.models import Candle
from venues.bybit.trading import BybitExecutor

PREFIX = "agp-"
CANCEL = ("POST", "/v5/order/cancel")


@pytest.fixture
def exchange() -> Iterator[BybitExchange]:
    with BybitExchange(prices={"BTCUSDT": "65000"}) as running:
        yield running


def venue(exchange: BybitExchange) -> BinanceVenue:
    trader = BybitExecutor(
        API_KEY, API_SECRET, base_url=exchange.url, sleep=lambda s: None, timeout_s=2.0
    )
    rules = {"BTCUSDT": trader.symbol_rules("BTCUSDT")}
    return BinanceVenue(trader, rules, GrowingFeed(["BTCUSDT"]), cash=10_000, exchange="Bybit")


def enter(place: BinanceVenue, **levels: float) -> None:
    answer = place.execute(approve("protect-1", quantity=0.01, **levels))
    assert answer["status"] == "filled", answer


def resting(exchange: BybitExchange) -> list[dict]:
    return [o for o in exchange.orders if o["orderLinkId"].startswith(PREFIX)]


def test_the_stop_rests_at_bybit_as_a_conditional_sell_and_the_loop_keeps_the_target(
    exchange,
) -> None:
    place = venue(exchange)
    enter(place, stop_loss=64_000.0, take_profit=67_000.0)
    [stop] = resting(exchange)
    assert (stop["orderStatus"], stop["side"], stop["orderType"]) == (
        "Untriggered",
        "Sell",
        "Limit",
    )
    # The whole position (0.01 less the 0.1% Bybit kept in BTC), the trigger at the stop and the
    # limit 0.5% under it, on Bybit's own grid (tickSize 0.1).
    assert (stop["qty"], stop["triggerPrice"], stop["price"]) == ("0.009990", "64000.0", "63680.0")
    assert place.protections["BTCUSDT"].kind == "stop"
    # A bar through both levels: the stop is Bybit's to fire, the target is still the loop's.
    place.feed.append(0, 59_999, {"BTCUSDT": Candle(open_time=0, open=65_000, high=67_500,
                      low=63_500, close=66_000, volume=1, close_time=59_999)})  # fmt: skip
    assert place.protective_exits(0) == [("BTCUSDT", "take_profit 67000 reached (high 67500)")]


def test_a_stop_that_filled_while_we_were_down_is_booked_at_restart(exchange) -> None:
    place = venue(exchange)
    enter(place, stop_loss=64_000.0)
    exchange.move("BTCUSDT", "63900")  # through the trigger: the stop-limit sells at 63,680
    again = restart(place, lambda: venue(exchange))
    [stop] = resting(exchange)
    assert stop["orderStatus"] == "Filled"
    assert again.ledger.quantity("BTCUSDT") == 0
    exit_fill = again.new_fills[-1]
    assert (exit_fill.reason.value, exit_fill.price) == ("stop_loss", 63_680.0)
    assert again.ledger.cash == pytest.approx(float(exchange.wallet["USDT"]))
    assert "BTCUSDT" not in again.brackets and "BTCUSDT" not in again.protections


def test_a_restart_finds_the_stop_and_places_no_second(exchange) -> None:
    place = venue(exchange)
    enter(place, stop_loss=64_000.0)
    # Killed after the stop was sent but before its reply was stored: the same id is found.
    lost = restart(place, lambda: venue(exchange), protection=None)
    [stop] = resting(exchange)
    assert stop["orderStatus"] == "Untriggered"
    assert lost.protections["BTCUSDT"].client_id == stop["orderLinkId"]


def test_our_exit_cancels_the_stop_under_its_filter_before_selling(exchange) -> None:
    place = venue(exchange)
    enter(place, stop_loss=64_000.0, take_profit=67_000.0)
    answer = place.execute(close(place))
    assert answer["status"] == "filled", answer
    [stop] = resting(exchange)
    assert stop["orderStatus"] == "Deactivated" and exchange.count(*CANCEL) == 1
    assert exchange.wallet["BTC"] == Decimal(0) and "BTCUSDT" not in place.protections


def test_a_stop_that_triggered_but_rests_unfilled_is_cancelled_as_a_plain_order(exchange) -> None:
    """The price fell through the trigger and under the limit: the stop is now a resting limit
    sell, which Bybit's cancel finds only without the conditional filter."""
    place = venue(exchange)
    enter(place, stop_loss=64_000.0)
    exchange.move("BTCUSDT", "63600")
    answer = place.execute(close(place))
    assert answer["status"] == "filled", answer
    [stop] = resting(exchange)
    assert stop["orderStatus"] == "Cancelled" and exchange.count(*CANCEL) == 2
    assert exchange.wallet["BTC"] == Decimal(0)


def test_a_trailing_stop_is_moved_up_at_bybit_as_the_trail_passes_it(exchange) -> None:
    place = venue(exchange)
    answer = place.execute(approve("trail-1", quantity=0.01, trailing_stop_pct=0.02))
    assert answer["status"] == "filled", answer
    [first] = resting(exchange)
    assert first["triggerPrice"] == "63700.0"  # 2% under the 65,000 fill
    exchange.move("BTCUSDT", "65900")
    place.on_bar(bar(place.feed, 65_000, 66_000, 64_800, 65_900))
    old, new = resting(exchange)
    assert old["orderStatus"] == "Deactivated"
    assert (new["orderStatus"], new["triggerPrice"]) == ("Untriggered", "64680.0")
    assert place.protections["BTCUSDT"].client_id == new["orderLinkId"]


def test_an_exit_waits_while_the_stop_cannot_be_cancelled(exchange) -> None:
    """Bybit refuses the cancel: the stop still rests, and as a conditional order holds no coins
    it would sell the next ones bought if it were forgotten. So the exit is refused for now,
    the stop stays followed, and the next exit cancels it and sells."""
    place = venue(exchange)
    enter(place, stop_loss=64_000.0)
    exchange.faults.append(TradeFault(path="/v5/order/cancel", ret_code=10001))
    answer = place.execute(close(place))
    assert answer["status"] == "rejected" and "could not be cancelled" in answer["reason"]
    [stop] = resting(exchange)
    assert stop["orderStatus"] == "Untriggered" and "BTCUSDT" in place.protections
    assert [o["side"] for o in exchange.orders].count("Sell") == 1  # the stop alone
    again = place.execute(close(place))
    assert again["status"] == "filled", again
    assert stop["orderStatus"] == "Deactivated" and "BTCUSDT" not in place.protections


def test_a_trail_through_the_close_exits_rather_than_resting_a_stop_above_the_market(
    exchange,
) -> None:
    """The bar's high lifts the trail to 64,680 but it closes at 64,600. Bybit would take a
    conditional sell with its trigger above the market and fire it only on a rise, so the
    loop exits now, as it does on Binance when Binance refuses that stop."""
    place = venue(exchange)
    assert (
        place.execute(approve("trail-2", quantity=0.01, trailing_stop_pct=0.02))["status"]
        == "filled"
    )
    exchange.move("BTCUSDT", "64600")
    place.on_bar(bar(place.feed, 65_000, 66_000, 64_500, 64_600))
    [stop] = resting(exchange)  # no stop rests above the market
    assert (stop["orderStatus"], stop["triggerPrice"]) == ("Untriggered", "63700.0")
    assert place.protective_exits(0) == [("BTCUSDT", "trailing_stop 64680 crossed (close 64600)")]
    assert place.execute(close(place))["status"] == "filled"
    assert place.new_fills[-1].reason.value == "trailing_stop"
    assert stop["orderStatus"] == "Deactivated" and place.ledger.quantity("BTCUSDT") == 0


def test_a_stop_that_filled_in_part_leaves_the_rest_watched_and_sold(exchange) -> None:
    """The stop triggers and the book takes only 0.004 of the 0.00999 held at its limit; our
    exit then cancels the rest. What it sold is booked as the stop-loss, and the 0.00599 left
    keeps its stop, watched by the loop, which sells it on the next bar through the stop,
    rather than leaving it without one."""
    place = venue(exchange)
    enter(place, stop_loss=64_000.0)
    exchange.depth["BTCUSDT"] = Decimal("0.004")
    exchange.move("BTCUSDT", "63900")
    first = place.execute(close(place))
    assert first["status"] == "rejected" and "sold part of the position first" in first["reason"]
    assert place.ledger.quantity("BTCUSDT") == pytest.approx(0.00599)
    assert place.brackets["BTCUSDT"]["stop_loss"] == 64_000.0 and not place.protections
    exchange.depth.clear()  # the book refills
    index = bar(place.feed, 63_900, 64_100, 63_500, 63_800)
    assert place.protective_exits(index) == [("BTCUSDT", "stop_loss 64000 crossed (low 63500)")]
    assert place.execute(close(place))["status"] == "filled"
    assert place.ledger.quantity("BTCUSDT") == 0
    assert [f.reason.value for f in place.new_fills[-2:]] == ["stop_loss", "stop_loss"]


def test_an_order_whose_fills_lag_its_status_is_booked_when_they_read_in_full(exchange) -> None:
    """Bybit says Filled while its execution list is still empty: booking then would record a
    filled order that moved nothing (no coins, no stop). It stays unknown, and the next bar's
    settle books the fills once they add up to what was executed, and rests the stop."""
    empty = envelope({"category": "spot", "list": [], "nextPageCursor": ""})
    exchange.faults += [TradeFault(path="/v5/execution/list", body=empty) for _ in range(3)]
    place = venue(exchange)
    answer = place.execute(approve("lagging", quantity=0.01, stop_loss=64_000.0))
    assert answer["status"] == "unknown" and "fills" in answer["reason"], answer
    assert place.ledger.quantity("BTCUSDT") == 0
    exchange.faults.clear()
    place.settle()
    assert place.ledger.quantity("BTCUSDT") > 0
    (order,) = place.orders.values()
    assert order.status == "filled" and len(resting(exchange)) == 1


def test_a_restart_after_a_stop_filled_in_part_books_that_fill_once(exchange) -> None:
    """The part fill was booked when our exit cancelled the rest; a restart that asks for the
    planned protection must not find that same order and book its fill a second time."""
    place = venue(exchange)
    enter(place, stop_loss=64_000.0)
    exchange.depth["BTCUSDT"] = Decimal("0.004")
    exchange.move("BTCUSDT", "63900")
    assert "sold part" in place.execute(close(place))["reason"]
    held = place.ledger.quantity("BTCUSDT")
    exchange.depth.clear()
    again = restart(place, lambda: venue(exchange))
    assert again.ledger.quantity("BTCUSDT") == pytest.approx(held)
    assert again.ledger.quantity("BTCUSDT") == pytest.approx(float(exchange.wallet["BTC"]))


def test_an_exit_refused_at_bybit_leaves_a_stop_that_really_rests(exchange) -> None:
    """The stop came down for the exit and the exit was refused. Rested again under the same
    orderLinkId it was a duplicate Bybit refuses, which the venue took for a stop in place:
    it followed a cancelled order. It now rests under the next id, untriggered at Bybit, and
    a restart finds that one."""
    place = venue(exchange)
    enter(place, stop_loss=64_000.0)
    first = place.protections["BTCUSDT"].client_id
    exchange.faults.append(TradeFault(ret_code=170131))  # the exit: insufficient balance
    assert place.execute(close(place))["status"] == "rejected"
    followed = place.protections["BTCUSDT"]
    (live,) = [o for o in resting(exchange) if o["orderStatus"] == "Untriggered"]
    assert live["orderLinkId"] == followed.client_id != first
    again = restart(place, lambda: venue(exchange), protection=None)
    assert again.protections["BTCUSDT"].client_id == followed.client_id
    assert len([o for o in resting(exchange) if o["orderStatus"] == "Untriggered"]) == 1


def test_no_stop_is_rested_above_the_market_at_bybit_the_loop_exits(exchange) -> None:
    """The trail was crossed and the exit sold only part: a Bybit stop above the market would
    fire only on a rise, so none rests for the rest, and the loop exits it at once."""
    place = venue(exchange)
    assert place.execute(approve("trail-2", quantity=0.01, trailing_stop_pct=0.02))["status"] == (
        "filled"
    )
    exchange.move("BTCUSDT", "64600")
    place.on_bar(bar(place.feed, 65_000, 66_000, 64_500, 64_600))
    assert place.protective_exits(0) == [("BTCUSDT", "trailing_stop 64680 crossed (close 64600)")]
    exchange.depth["BTCUSDT"] = Decimal("0.004")  # a thin book: the exit sells only part
    place.execute(close(place))
    exchange.depth.clear()
    assert place.ledger.quantity("BTCUSDT") > 0
    assert not [o for o in resting(exchange) if o["orderStatus"] == "Untriggered"]
    index = bar(place.feed, 64_600, 64_600, 64_550, 64_590)
    place.on_bar(index)  # the bar closes: what is due now comes from the levels the loop watches
    assert [symbol for symbol, _ in place.protective_exits(index)] == ["BTCUSDT"]
