"""Protection that survives our process: after an entry fills on Binance (the loopback exchange,
speaking Binance's order and order-list shapes), its stop and target rest there as one OCO;
a restart finds it instead of placing another, a fill while we were down is booked, and our own
exit cancels it before selling."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from loopback_exchange import API_KEY, API_SECRET, NO_SUCH_LIST, ExchangeFault, LoopbackExchange
from test_binance_executor import NOW, RULES, approve

from core.errors import UserError
from execution.binance_executor import OCO_PATH, ORDER_LIST_PATH, BinanceExecutor
from execution.binance_venue import BinanceVenue
from execution.paper import GrowingFeed
from market.sample import sample_rules
from risk import (
    Approved,
    ApprovedOrder,
    MarketView,
    PortfolioView,
    PositionView,
    RiskLimits,
    RiskState,
    SignalSource,
    TradeSignal,
    assess,
)

PREFIX = "agp-"


@pytest.fixture
def exchange() -> Iterator[LoopbackExchange]:
    server = LoopbackExchange(balances={"USDT": "10000", "BTC": "0"}).start()
    yield server
    server.stop()


def venue(exchange: LoopbackExchange) -> BinanceVenue:
    executor = BinanceExecutor(
        API_KEY, API_SECRET, base_url=exchange.base_url, sleep=lambda s: None, timeout_s=2.0
    )
    return BinanceVenue(executor, sample_rules(), GrowingFeed(["BTCUSDT"]), cash=10_000)


def enter(place: BinanceVenue, **levels: Any) -> None:
    answer = place.execute(approve("protect-1", quantity=0.01, **levels))
    assert answer["status"] == "filled", answer


def close(place: BinanceVenue) -> ApprovedOrder:
    """The gate's close of the whole held position."""
    held = place.ledger.quantity("BTCUSDT")
    signal = TradeSignal(
        decision_id="protect-exit",
        source=SignalSource.STRATEGY,
        symbol="BTCUSDT",
        action="close",
        created_ms=NOW,
    )
    portfolio = PortfolioView(
        cash=place.ledger.cash,
        equity=10_000.0,
        peak_equity=10_000.0,
        day_start_equity=10_000.0,
        positions={"BTCUSDT": PositionView(quantity=held, avg_price=65_000.0)},
    )
    view = MarketView(
        symbol="BTCUSDT", last_price=65_000.0, data_time_ms=NOW, rules=RULES["BTCUSDT"]
    )
    verdict = assess(signal, portfolio, view, NOW, RiskLimits(), RiskState())
    assert isinstance(verdict, Approved), verdict
    return verdict.order


def restart(before: BinanceVenue, fresh: Callable[[], BinanceVenue], **drop: Any) -> BinanceVenue:
    """A new process (`fresh` makes its venue) from what the old one committed; `drop` edits
    the stored brackets, as a kill -9 between the entry's fill and the protection's reply
    would have left them."""
    orders, fills, checkpoint = before.changes({})
    brackets = [{**b, **drop} for b in checkpoint.brackets]
    again = fresh()
    again.restore(checkpoint.model_copy(update={"brackets": brackets}), fills, orders)
    again.reconcile()
    return again


def test_an_entry_with_stop_and_target_rests_one_oco_at_the_exchange(exchange) -> None:
    place = venue(exchange)
    enter(place, stop_loss=64_000.0, take_profit=67_000.0)
    legs = exchange.open_with(PREFIX)
    assert sorted(o["type"] for o in legs) == ["LIMIT_MAKER", "STOP_LOSS_LIMIT"]
    assert len({o["orderListId"] for o in legs}) == 1
    stop = next(o for o in legs if o["type"] == "STOP_LOSS_LIMIT")
    assert (stop["stopPrice"], stop["price"]) == ("64000.00000000", "63680.00000000")
    # The coins bought (less the fee Binance took in BTC) are held by the OCO, not free.
    assert exchange.balance("BTC") == (0, stop["_locked"][1])
    assert place.protective_exits(0) == []  # the exchange fires it, not the loop


def test_a_restart_finds_the_oco_and_places_no_second(exchange) -> None:
    place = venue(exchange)
    enter(place, stop_loss=64_000.0, take_profit=67_000.0)
    again = restart(place, lambda: venue(exchange))
    assert len(exchange.open_with(PREFIX)) == 2
    # Killed after the OCO was sent but before its reply was stored: the same id is found.
    lost = restart(place, lambda: venue(exchange), protection=None)
    assert len(exchange.open_with(PREFIX)) == 2
    assert "BTCUSDT" in again.protections and "BTCUSDT" in lost.protections


def test_a_stop_that_filled_while_we_were_down_is_booked_at_restart(exchange) -> None:
    place = venue(exchange)
    enter(place, stop_loss=64_000.0, take_profit=67_000.0)
    exchange.move("BTCUSDT", "63900")  # through the stop: the stop-limit sells at 63,680
    again = restart(place, lambda: venue(exchange))
    assert exchange.open_with(PREFIX) == []
    assert again.ledger.quantity("BTCUSDT") == 0
    exit_fill = again.new_fills[-1]
    assert (exit_fill.reason.value, exit_fill.price) == ("stop_loss", 63_680.0)
    assert again.ledger.cash == pytest.approx(float(exchange.balance("USDT")[0]))
    assert "BTCUSDT" not in again.brackets


def test_our_exit_cancels_the_protection_before_selling(exchange) -> None:
    place = venue(exchange)
    enter(place, stop_loss=64_000.0, take_profit=67_000.0)
    answer = place.execute(close(place))
    assert answer["status"] == "filled", answer
    assert exchange.open_with(PREFIX) == []
    assert exchange.count("DELETE", "/api/v3/orderList") == 1
    assert exchange.balance("BTC")[1] == 0 and "BTCUSDT" not in place.protections


def test_a_stop_without_a_target_rests_as_one_stop_loss_limit(exchange) -> None:
    place = venue(exchange)
    enter(place, stop_loss=64_000.0)
    (stop,) = exchange.open_with(PREFIX)
    assert (stop["type"], stop["orderListId"]) == ("STOP_LOSS_LIMIT", -1)
    answer = place.execute(close(place))
    assert answer["status"] == "filled" and exchange.open_with(PREFIX) == []


def test_an_oco_whose_reply_is_lost_and_not_yet_listed_stays_followed(exchange) -> None:
    """Binance took the OCO, its reply could not be read, and the list query (a lagging
    replica) said no such list: the OCO may rest and hold the coins, so it is followed, not
    forgotten. The next bar finds it resting, and our exit cancels it before selling."""
    exchange.script(
        ExchangeFault(path=OCO_PATH, status=200, body={"unexpected": True}, after_accept=True),
        ExchangeFault(method="GET", path=ORDER_LIST_PATH, status=400, body=NO_SUCH_LIST),
    )
    place = venue(exchange)
    enter(place, stop_loss=64_000.0, take_profit=67_000.0)
    assert len(exchange.open_with(PREFIX)) == 2  # it rests at the exchange
    assert "BTCUSDT" in place.protections
    place.watch_protections()
    assert "BTCUSDT" in place.protections and place.protective_exits(0) == []
    answer = place.execute(close(place))
    assert answer["status"] == "filled", answer
    assert exchange.open_with(PREFIX) == [] and exchange.count("POST", OCO_PATH) == 1


def test_an_oco_lost_before_binance_took_it_leaves_the_stop_to_the_loop(exchange) -> None:
    """The OCO's connection dropped before Binance read it: the query finds no list; it is
    followed until the next bar's check says it is gone, then the loop watches the stop."""
    exchange.script(ExchangeFault(path=OCO_PATH, drop=True))
    place = venue(exchange)
    enter(place, stop_loss=64_000.0, take_profit=67_000.0)
    assert exchange.open_with(PREFIX) == [] and "BTCUSDT" in place.protections
    place.watch_protections()
    assert "BTCUSDT" not in place.protections and "BTCUSDT" in place.brackets
    assert exchange.count("POST", OCO_PATH) == 1  # never a second one sent blind


def test_a_key_binance_stops_accepting_stops_the_run_instead_of_rejecting_orders(exchange) -> None:
    """Revoked mid-run (or restricted to another IP), the key gets -2015 on every signed call.
    That is no order's rejection: nothing can trade or take the stop down until a person fixes
    the key, so the venue raises the one-line UserError that ends the run, entries and exits
    alike, and books nothing as rejected."""
    place = venue(exchange)
    enter(place, stop_loss=64_000.0, take_profit=67_000.0)
    exchange.api_key = "revoked"
    with pytest.raises(UserError, match=r"-2015.*BINANCE_API_KEY"):
        place.execute(close(place))  # the stop cannot be taken down: no exit waits for ever
    assert len(exchange.open_with(PREFIX)) == 2  # the protection still rests
    with pytest.raises(UserError, match="-2015"):
        place.execute(approve("after-revoke", quantity=0.01))
    assert [o.status for o in place.orders.values()].count("rejected") == 0


def _covered(place: BinanceVenue, exchange: LoopbackExchange) -> Decimal:
    """What rests at the exchange to protect BTCUSDT, by the legs' shared quantity."""
    legs = exchange.open_with(PREFIX)
    sizes = {Decimal(o["origQty"]) for o in legs}
    assert len(sizes) <= 1, legs  # one protection, never two
    held = place.protections.get("BTCUSDT")
    assert (held is None) == (not legs)
    return sizes.pop() if sizes else Decimal(0)


def test_adding_to_a_protected_position_rests_one_protection_for_all_of_it(exchange) -> None:
    """A second entry replaces the first protection with one for the whole position: the first
    would lock its coins against the new one (Binance), and left resting it would be an orphan
    that sells a later position's coins."""
    place = venue(exchange)
    enter(place, stop_loss=64_000.0, take_profit=67_000.0)
    first = _covered(place, exchange)
    answer = place.execute(
        approve("protect-2", quantity=0.01, stop_loss=63_000.0, take_profit=68_000.0)
    )
    assert answer["status"] == "filled", answer
    whole = _covered(place, exchange)
    assert whole > first and whole == Decimal(repr(place.ledger.quantity("BTCUSDT"))).quantize(
        Decimal("0.00001"), rounding="ROUND_FLOOR"
    )
    (stop,) = [o for o in exchange.open_with(PREFIX) if o["type"] == "STOP_LOSS_LIMIT"]
    assert stop["stopPrice"] == "63000.00000000"  # the latest entry's levels


def test_an_entry_filled_in_part_is_protected_for_what_it_bought(exchange) -> None:
    exchange.depth["BTCUSDT"] = Decimal("0.006")  # a thin book: the market buy expires in part
    place = venue(exchange)
    place.execute(approve("protect-part", quantity=0.01, stop_loss=64_000.0))
    exchange.depth.clear()
    assert 0 < place.ledger.quantity("BTCUSDT") < 0.01
    assert _covered(place, exchange) > 0


@pytest.mark.parametrize("refusal", ["filter", "thin book"])
def test_an_exit_refused_or_filled_in_part_leaves_the_rest_protected(exchange, refusal) -> None:
    """Our exit takes the protection down before it sells; when the sale is refused, or sells
    only part, what is still held rests under a protection again at once."""
    place = venue(exchange)
    enter(place, stop_loss=64_000.0, take_profit=67_000.0)
    if refusal == "filter":
        exchange.script(
            ExchangeFault(status=400, body={"code": -1013, "msg": "Filter failure: LOT_SIZE"})
        )
    else:
        exchange.depth["BTCUSDT"] = Decimal("0.003")
    place.execute(close(place))
    exchange.depth.clear()
    assert place.ledger.quantity("BTCUSDT") > 0
    assert _covered(place, exchange) > 0


def test_a_protection_that_cannot_come_down_for_an_add_leaves_the_whole_to_the_loop(
    exchange,
) -> None:
    """The old protection covers the first lot only and could not be replaced: the loop
    watches the stop for the whole position rather than trusting a part cover."""
    from test_trailing_exchange import bar  # it imports this module

    place = venue(exchange)
    enter(place, stop_loss=64_000.0, take_profit=67_000.0)
    exchange.script(
        *[ExchangeFault(method="DELETE", path=ORDER_LIST_PATH, status=503)] * 4,
        *[ExchangeFault(method="GET", status=503)] * 4,
    )
    place.execute(approve("protect-2", quantity=0.01, stop_loss=63_000.0, take_profit=68_000.0))
    assert _covered(place, exchange) < Decimal(repr(place.ledger.quantity("BTCUSDT")))
    index = bar(place.feed, 65_000, 65_100, 62_900, 63_100)
    assert place.protective_exits(index) == [("BTCUSDT", "stop_loss 63000 crossed (low 62900)")]


def test_a_stop_placed_before_a_crash_and_filled_while_down_is_booked_not_placed_again(
    exchange,
) -> None:
    """Killed after the OCO was sent but before it was stored, and the stop fired while we
    were down: the restart asks for the planned id before resting anything, books the sale,
    and sends no second stop for coins already sold."""
    place = venue(exchange)
    enter(place, stop_loss=64_000.0, take_profit=67_000.0)
    exchange.move("BTCUSDT", "63900")
    again = restart(place, lambda: venue(exchange), protection=None)
    assert again.ledger.quantity("BTCUSDT") == 0
    assert again.new_fills[-1].reason.value == "stop_loss"
    assert exchange.count("POST", OCO_PATH) == 1 and exchange.open_with(PREFIX) == []


def test_an_order_whose_fills_cannot_be_read_yet_is_unknown_not_a_stopped_loop(exchange) -> None:
    """The buy's reply was lost, its status says FILLED (a status carries no fills), and the
    trades query is down: the order is unknown, settled on a later bar, and nothing raises out
    of the venue to stop an unattended loop."""
    exchange.script(
        ExchangeFault(drop=True, after_accept=True),
        *[ExchangeFault(method="GET", path="/api/v3/myTrades", status=500)] * 4,
    )
    place = venue(exchange)
    answer = place.execute(approve("lost-reply", quantity=0.01, stop_loss=64_000.0))
    assert answer["status"] == "unknown", answer
    place.settle()
    assert place.ledger.quantity("BTCUSDT") > 0 and _covered(place, exchange) > 0


def test_a_stop_the_exchange_refused_once_rests_on_a_later_bar(exchange) -> None:
    """The OCO was refused when the entry filled (a filter, say): the loop watches the stop
    meanwhile, and each bar tries again, so the position is protected at the exchange for
    when the process stops, not only after a restart."""
    from test_trailing_exchange import closed  # it imports this module

    exchange.script(
        ExchangeFault(
            path=OCO_PATH, status=400, body={"code": -1013, "msg": "Filter failure: PERCENT_PRICE"}
        )
    )
    place = venue(exchange)
    enter(place, stop_loss=64_000.0, take_profit=67_000.0)
    assert exchange.open_with(PREFIX) == [] and "BTCUSDT" not in place.protections
    index = closed(place, exchange, 65_000, 65_100, 64_900, 65_000)
    assert len(exchange.open_with(PREFIX)) == 2 and "BTCUSDT" in place.protections
    assert place.protective_exits(index) == []  # none due: the bar stayed above the stop


def test_a_stop_rested_again_at_a_bars_close_did_not_guard_that_bar(exchange) -> None:
    """The bar went through the stop while none rested; resting it at the close does not
    undo that: the loop still exits for that bar."""
    from test_trailing_exchange import closed  # it imports this module

    exchange.script(
        ExchangeFault(
            path=OCO_PATH, status=400, body={"code": -1013, "msg": "Filter failure: PERCENT_PRICE"}
        )
    )
    place = venue(exchange)
    enter(place, stop_loss=64_000.0, take_profit=67_000.0)
    index = closed(place, exchange, 65_000, 65_100, 63_900, 64_500)
    assert "BTCUSDT" in place.protections  # rested at the close, above it
    assert place.protective_exits(index) == [("BTCUSDT", "stop_loss 64000 crossed (low 63900)")]
