"""A trailing stop on the signed venue (the loopback exchange, speaking Binance): the level
ratchets on closed bars with the fill model's own rule, the stop resting at the exchange is
replaced as the trail passes it (so it holds the latest level while we are down), a restart
keeps the level, and the exit books `trailing_stop` on the same bar a paper account exits."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from loopback_exchange import ExchangeFault, LoopbackExchange
from test_binance_executor import NOW, approve
from test_exchange_protection import PREFIX, close, restart, venue

from execution.binance_venue import BinanceVenue
from execution.paper import GrowingFeed, PaperExecutor
from market.models import Candle
from market.sample import sample_rules

MINUTE = 60_000
PCT = 0.02  # 2% below the highest high


@pytest.fixture
def exchange() -> Iterator[LoopbackExchange]:
    server = LoopbackExchange(balances={"USDT": "10000", "BTC": "0"}).start()
    yield server
    server.stop()


def bar(feed: GrowingFeed, open_: float, high: float, low: float, close_: float) -> int:
    """Append one closed 1m bar; returns its index."""
    start = NOW + len(feed) * MINUTE
    candle = Candle(
        open_time=start,
        open=open_,
        high=high,
        low=low,
        close=close_,
        volume=1.0,
        close_time=start + MINUTE - 1,
    )
    return feed.append(start, start + MINUTE - 1, {"BTCUSDT": candle})


def closed(place: BinanceVenue, exchange: LoopbackExchange, *ohlc: float) -> int:
    """Bar closes: the exchange trades at its close, then the venue sees the bar."""
    exchange.move("BTCUSDT", str(ohlc[3]))
    index = bar(place.feed, *ohlc)
    place.on_bar(index)
    return index


def enter(place: BinanceVenue, **levels: Any) -> None:
    answer = place.execute(approve("trail-1", quantity=0.01, trailing_stop_pct=PCT, **levels))
    assert answer["status"] == "filled", answer


def resting_stop(exchange: LoopbackExchange) -> dict[str, Any]:
    (stop,) = [o for o in exchange.open_with(PREFIX) if o["type"] == "STOP_LOSS_LIMIT"]
    return stop


def test_the_trail_ratchets_and_the_resting_stop_follows_it_up(exchange) -> None:
    place = venue(exchange)
    enter(place)  # bought at 65,000: the trail starts 2% below, at 63,700
    assert resting_stop(exchange)["stopPrice"] == "63700.00000000"
    closed(place, exchange, 65_000, 66_000, 64_800, 65_900)
    assert place.brackets["BTCUSDT"]["trail_stop"] == pytest.approx(66_000 * (1 - PCT))
    first = resting_stop(exchange)
    assert first["stopPrice"] == "64680.00000000"
    assert exchange.count("DELETE", "/api/v3/order") == 1  # the old one was taken down
    # A lower high never lowers it, and nothing is replaced.
    closed(place, exchange, 65_900, 65_950, 65_000, 65_100)
    assert resting_stop(exchange)["clientOrderId"] == first["clientOrderId"]
    assert exchange.count("DELETE", "/api/v3/order") == 1


def test_with_a_target_the_whole_oco_is_replaced_and_keeps_its_target(exchange) -> None:
    place = venue(exchange)
    enter(place, take_profit=70_000.0)
    closed(place, exchange, 65_000, 67_000, 64_900, 66_800)
    legs = exchange.open_with(PREFIX)
    assert sorted(o["type"] for o in legs) == ["LIMIT_MAKER", "STOP_LOSS_LIMIT"]
    prices = {
        o["type"]: o["stopPrice" if o["type"] == "STOP_LOSS_LIMIT" else "price"] for o in legs
    }
    assert prices == {"LIMIT_MAKER": "70000.00000000", "STOP_LOSS_LIMIT": "65660.00000000"}
    assert exchange.count("DELETE", "/api/v3/orderList") == 1


def test_a_fixed_stop_above_the_trail_rests_until_the_trail_passes_it(exchange) -> None:
    place = venue(exchange)
    enter(place, stop_loss=64_500.0)
    assert resting_stop(exchange)["stopPrice"] == "64500.00000000"
    closed(place, exchange, 65_000, 65_500, 64_900, 65_400)  # trail 64,190: below
    assert exchange.count("DELETE", "/api/v3/order") == 0
    closed(place, exchange, 65_400, 66_500, 65_300, 66_400)  # trail 65,170: above
    assert resting_stop(exchange)["stopPrice"] == "65170.00000000"


def test_a_restart_keeps_the_level_and_the_one_resting_stop(exchange) -> None:
    place = venue(exchange)
    enter(place)
    stale = place.changes({})[2].brackets[0]["protection"]  # the stop at 63,700, soon replaced
    closed(place, exchange, 65_000, 66_000, 64_800, 65_900)
    again = restart(place, lambda: venue(exchange))
    assert again.brackets["BTCUSDT"]["trail_stop"] == pytest.approx(64_680.0)
    assert [o["stopPrice"] for o in exchange.open_with(PREFIX)] == ["64680.00000000"]
    # Killed between the cancel and the new stop's reply: the restart finds the old one gone
    # and rests the latest level, once.
    lost = restart(place, lambda: venue(exchange), protection=stale)
    assert [o["stopPrice"] for o in exchange.open_with(PREFIX)] == ["64680.00000000"]
    assert lost.protections["BTCUSDT"].stop == Decimal("64680")


def test_the_exchange_fires_the_trailed_stop_and_books_a_trailing_stop_exit(exchange) -> None:
    place = venue(exchange)
    enter(place)
    closed(place, exchange, 65_000, 66_000, 64_800, 65_900)
    exchange.move("BTCUSDT", "64600")  # through 64,680: the stop-limit sells at 64,356.6
    closed(place, exchange, 65_900, 65_900, 64_600, 64_700)
    assert place.ledger.quantity("BTCUSDT") == 0 and exchange.open_with(PREFIX) == []
    exit_fill = place.new_fills[-1]
    assert exit_fill.reason.value == "trailing_stop"
    assert exit_fill.price == pytest.approx(64_356.6)


def test_where_no_stop_can_rest_the_loop_exits_on_the_bar_whose_low_crosses(exchange) -> None:
    place = BinanceVenue(
        venue(exchange).executor,
        {"BTCUSDT": sample_rules()["BTCUSDT"].model_copy(update={"min_notional": Decimal(10**6)})},
        GrowingFeed(["BTCUSDT"]),
        cash=10_000,
    )  # the exchange's minimum is above the position: nothing can rest, the loop watches
    enter(place)
    assert exchange.open_with(PREFIX) == []
    # Bar 0's high (66,000) sets 64,680 for bar 1; bar 0's own low (64,000) meets 63,700 only.
    closed(place, exchange, 65_000, 66_000, 64_000, 65_900)
    assert place.protective_exits(0) == []
    closed(place, exchange, 65_900, 65_950, 64_600, 64_700)
    assert place.protective_exits(1) == [("BTCUSDT", "trailing_stop 64680 crossed (low 64600)")]
    assert place.execute(close(place))["status"] == "filled"
    assert place.new_fills[-1].reason.value == "trailing_stop"


BARS = [  # open, high, low, close: the entry fills at bar 1's open on paper
    (65_000, 65_100, 64_900, 65_000),
    (65_000, 65_300, 64_950, 65_200),
    (65_200, 66_500, 65_100, 66_400),
    (66_400, 66_600, 65_400, 65_500),  # 65,400 is above 66,500 x 0.98 = 65,170: holds
    (65_500, 66_000, 65_100, 65_200),  # through 65,268 (66,600 x 0.98): the exit bar
    (65_200, 65_300, 64_000, 64_100),
]


def exit_bar_and_reason(place: Any, exchange: LoopbackExchange | None) -> tuple[int, str]:
    """Step the bars as the runner does (venue, then protective exits); the entry is decided on
    bar 0's close. The exchange's price walks each bar's low and then its close."""
    for index, (open_, high, low, close_) in enumerate(BARS):
        if exchange is not None:
            exchange.move("BTCUSDT", str(low))
            exchange.move("BTCUSDT", str(close_))
        place.on_bar(bar(place.feed, open_, high, low, close_))
        for _symbol, _why in place.protective_exits(index):
            place.execute(close(place))
        if index == 0:
            assert place.execute(approve("trail-1", quantity=0.01, trailing_stop_pct=PCT))
        elif place.ledger.quantity("BTCUSDT") == 0:
            return index, place.new_fills[-1].reason.value
    raise AssertionError("no exit")


def test_paper_and_the_signed_venue_exit_on_the_same_bar_for_the_same_reason(exchange) -> None:
    paper = PaperExecutor(sample_rules(), GrowingFeed(["BTCUSDT"]), cash=10_000)
    assert exit_bar_and_reason(paper, None) == (4, "trailing_stop")
    assert exit_bar_and_reason(venue(exchange), exchange) == (4, "trailing_stop")


def test_a_refused_move_rests_the_old_stop_again_and_exits_when_the_close_is_through_it(
    exchange, caplog
) -> None:
    place = venue(exchange)
    enter(place)
    first = resting_stop(exchange)
    # The high sets 64,680 but the bar closes at 64,600: Binance refuses a sell stop above the
    # market ("would trigger immediately"), so 63,700 rests again and the loop sells now.
    closed(place, exchange, 65_000, 66_000, 64_500, 64_600)
    again = resting_stop(exchange)
    assert again["stopPrice"] == "63700.00000000"
    assert again["clientOrderId"] != first["clientOrderId"]
    assert [r.levelname for r in caplog.records if "does not rest" in r.getMessage()] == ["ERROR"]
    assert place.protective_exits(0) == [("BTCUSDT", "trailing_stop 64680 crossed (close 64600)")]
    assert place.execute(close(place))["status"] == "filled"
    assert place.new_fills[-1].reason.value == "trailing_stop"
    assert place.ledger.quantity("BTCUSDT") == 0 and exchange.open_with(PREFIX) == []


def test_a_move_refused_for_a_filter_keeps_the_old_stop_and_the_loop_watches_the_new_level(
    exchange,
) -> None:
    place = venue(exchange)
    enter(place)
    exchange.script(
        ExchangeFault(status=400, body={"code": -1013, "msg": "Filter failure: PERCENT_PRICE"})
    )
    closed(place, exchange, 65_000, 66_000, 64_900, 65_900)
    assert resting_stop(exchange)["stopPrice"] == "63700.00000000"
    assert place.protective_exits(0) == []
    # The next bar's low goes through 64,680 while only 63,700 rested: the loop exits.
    closed(place, exchange, 65_900, 65_950, 64_600, 64_700)
    assert place.protective_exits(1) == [("BTCUSDT", "trailing_stop 64680 crossed (low 64600)")]
    assert place.execute(close(place))["status"] == "filled"
    assert place.ledger.quantity("BTCUSDT") == 0 and exchange.open_with(PREFIX) == []


def test_a_restart_after_a_refused_move_keeps_the_old_stop_resting(exchange) -> None:
    place = venue(exchange)
    enter(place)
    exchange.script(ExchangeFault(status=400, body={"code": -2010, "msg": "refused"}))
    closed(place, exchange, 65_000, 66_000, 64_900, 65_900)
    again = restart(place, lambda: venue(exchange))
    assert [o["stopPrice"] for o in exchange.open_with(PREFIX)] == ["63700.00000000"]
    assert again.protections["BTCUSDT"].stop == Decimal("63700")


def test_an_old_stop_rested_again_with_an_unknown_outcome_stays_followed(exchange) -> None:
    """The move is refused, and the old level's re-placement is taken but never confirmed (its
    reply lost, the status queries failing): it rests and holds the coins, so the venue
    follows it, and our exit cancels it before selling instead of being refused."""
    place = venue(exchange)
    enter(place)
    placements = 0
    send = place.executor.place_order

    def scripted(params: dict[str, str], symbol: str, cid: str) -> Any:
        nonlocal placements
        placements += 1
        if placements == 1:  # the move up: refused by a filter
            exchange.script(
                ExchangeFault(
                    status=400, body={"code": -1013, "msg": "Filter failure: PERCENT_PRICE"}
                )
            )
        else:  # the old level again: taken, its reply lost, every status query failing
            exchange.script(
                ExchangeFault(drop=True, after_accept=True),
                *[ExchangeFault(method="GET", status=500)] * 4,
            )
        return send(params, symbol, cid)

    place.executor.place_order = scripted
    closed(place, exchange, 65_000, 66_000, 64_900, 65_900)
    rests = resting_stop(exchange)
    assert rests["stopPrice"] == "63700.00000000"
    assert place.protections["BTCUSDT"].client_id == rests["clientOrderId"]
    assert place.execute(close(place))["status"] == "filled"
    assert place.ledger.quantity("BTCUSDT") == 0 and exchange.open_with(PREFIX) == []
