"""`agent-arb run --books --mode testnet` as a real subprocess: both live books from the loopback
streams (tests/loopback_cross.py, Binance anchored above Bybit), and each leg a signed order on a
loopback exchange (tests/loopback_exchange.py for Binance, tests/loopback_bybit_trading.py for
Bybit) that checks signatures, keeps balances and fills market orders at a set price."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from loopback_bybit_trading import API_KEY as BYBIT_KEY
from loopback_bybit_trading import API_SECRET as BYBIT_SECRET
from loopback_bybit_trading import BybitExchange
from loopback_cross import CrossVenue, bybit_first_mid
from loopback_exchange import API_KEY, API_SECRET, INSUFFICIENT_BALANCE, ExchangeFault
from loopback_exchange import LoopbackExchange as BinanceExchange

from arbitrage.pairs import ArbDesk, ArbLimits, Inventory, LegFill, Pair, PairState
from arbitrage.signed_legs import SignedLegs, decision_id, holdings_on
from arbitrage.spread import Edge, VenueBook
from execution.binance_executor import BinanceExecutor
from risk.approval import client_order_id
from risk.limits import RiskLimits
from venues.bybit.trading import BybitExecutor

PREMIUM_BPS = 60.0  # Binance's book over Bybit's: buy on Bybit, sell on Binance
RUN = ("agent-arb", "run", "--books", "--mode", "testnet", "--json", "--quantity", "0.001",
       "--fee-bps", "10,10", "--seconds", "30", "--every", "0.2", "--max-age-ms", "30000")  # fmt: skip


@dataclass
class Venues:
    books: CrossVenue
    binance: BinanceExchange
    bybit: BybitExchange

    def env(self) -> dict[str, str]:
        return self.books.env() | {
            "AGENT_BINANCE__TRADE_URL": self.binance.base_url,
            "AGENT_BYBIT__TRADE_URL": self.bybit.url,
            "BINANCE_API_KEY": API_KEY,
            "BINANCE_API_SECRET": API_SECRET,
            "BYBIT_API_KEY": BYBIT_KEY,
            "BYBIT_API_SECRET": BYBIT_SECRET,
        }


@pytest.fixture
def venues() -> Iterator[Venues]:
    mid = Decimal(repr(bybit_first_mid()))
    start = {"USDT": "10000", "BTC": "0.01"}
    binance = BinanceExchange(
        balances=start, prices={"BTCUSDT": f"{mid * Decimal('1.006'):.2f}"}
    ).start()
    try:
        with (
            BybitExchange(prices={"BTCUSDT": f"{mid:.2f}"}, balances=start) as bybit,
            CrossVenue(premium_bps=PREMIUM_BPS) as books,
        ):
            yield Venues(books, binance, bybit)
    finally:
        binance.stop()


def _cid(account: str, pair_id: str, leg: str) -> str:
    return client_order_id(decision_id(account, pair_id, leg))


def books_at(venues: Venues, at: int) -> dict[str, VenueBook]:
    """Both venues' books 0.5 either side of their set prices, seen at `at`."""
    mids = {v: float(getattr(venues, v).prices["BTCUSDT"]) for v in ("bybit", "binance")}
    return {
        venue: VenueBook(
            venue=venue,
            bids=[(mid - 0.5, 1.0)],
            asks=[(mid + 0.5, 1.0)],
            time_ms=at,
            taker_fee_bps=10,
        )
        for venue, mid in mids.items()
    }


def signed_legs(venues: Venues, account: str, limits: RiskLimits | None = None) -> SignedLegs:
    """The legs `agent-arb run --mode testnet` sends, in process: both signed executors on the
    loopback exchanges, the inventory their balances hold."""
    executors = {
        "binance": BinanceExecutor(API_KEY, API_SECRET, base_url=venues.binance.base_url),
        "bybit": BybitExecutor(BYBIT_KEY, BYBIT_SECRET, base_url=venues.bybit.url),
    }
    rules = {v: e.symbol_rules("BTCUSDT") for v, e in executors.items()}
    inventory = Inventory({v: holdings_on(e, rules[v]) for v, e in executors.items()})
    return SignedLegs(account, "BTCUSDT", executors, rules, limits or RiskLimits(), inventory)


@pytest.mark.slow
def test_profitable_pairs_buy_on_bybit_and_sell_on_binance_by_signed_orders(
    cli, venues: Venues
) -> None:
    run = cli(*RUN, "--account", "sig", "--max-pairs", "2", env=venues.env())
    assert run.returncode == 0, run.stderr
    assert "orders: Binance testnet and Bybit testnet, signed" in run.stderr
    assert "key permissions" in run.stderr
    report = json.loads(run.stdout)
    assert report["basis"] == "books" and report["mode"] == "testnet"
    assert report["pair_states"] == {"arb-000001": "complete", "arb-000002": "complete"}
    assert report["pnl_quote"] > 0
    for pair_id in report["pair_states"]:
        [buy] = venues.bybit.orders_with(_cid("sig", pair_id, "buy"))
        [sell] = venues.binance.orders_with(_cid("sig", pair_id, "sell"))
        assert (buy["side"], buy["orderStatus"], Decimal(buy["qty"])) == (
            "Buy",
            "Filled",
            Decimal("0.001"),
        )
        assert (sell["side"], sell["status"]) == ("SELL", "FILLED")
    # the inventory started from the accounts' balances and moved by what the venues charged
    assert report["inventory_start"]["bybit"] == {"base": 0.01, "quote": 10_000.0}
    assert report["inventory_end"]["bybit"]["base"] == pytest.approx(0.01 + 2 * 0.001 * 0.999)
    assert report["inventory_end"]["binance"]["base"] == pytest.approx(0.01 - 2 * 0.001)
    assert API_SECRET not in run.stderr + run.stdout and BYBIT_SECRET not in run.stderr


@pytest.mark.slow
def test_a_rejected_second_leg_is_unwound_on_the_first_venue(cli, venues: Venues) -> None:
    venues.binance.script(ExchangeFault(status=400, body=INSUFFICIENT_BALANCE))
    run = cli(*RUN, "--account", "lone", "--max-pairs", "1", env=venues.env())
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["pair_states"] == {"arb-000001": "closed"}
    assert not venues.binance.orders
    [buy] = venues.bybit.orders_with(_cid("lone", "arb-000001", "buy"))
    [close] = venues.bybit.orders_with(_cid("lone", "arb-000001", "close-1"))
    assert (buy["side"], close["side"]) == ("Buy", "Sell")
    # the close reverses the quantity the leg filled, as on paper; the buy's fee, paid in coins,
    # is part of the pair's loss
    assert Decimal(close["qty"]) == Decimal(buy["qty"]) == Decimal("0.001")
    assert report["pnl_quote"] < 0


@pytest.mark.slow
def test_a_second_leg_the_book_fills_in_part_has_the_rest_unwound_on_the_first_venue(
    cli, venues: Venues
) -> None:
    """Binance's book holds 0.0004 BTC at the price: the market sell fills that much and
    expires. The pair must reverse the 0.0006 it bought on Bybit and sold nowhere, as a paper
    pair does with a partial leg, and the report must count what the exchanges filled."""
    venues.binance.depth["BTCUSDT"] = Decimal("0.0004")
    run = cli(*RUN, "--account", "thin", "--max-pairs", "1", env=venues.env())
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["pair_states"] == {"arb-000001": "closed"}
    [sell] = [
        o for o in venues.binance.orders if o["clientOrderId"] == _cid("thin", "arb-000001", "sell")
    ]
    assert (sell["status"], Decimal(sell["executedQty"])) == ("EXPIRED", Decimal("0.0004"))
    [buy] = venues.bybit.orders_with(_cid("thin", "arb-000001", "buy"))
    [close] = venues.bybit.orders_with(_cid("thin", "arb-000001", "close-1"))
    assert (buy["side"], close["side"]) == ("Buy", "Sell")
    assert Decimal(close["qty"]) == Decimal("0.0006")
    assert report["inventory_end"]["binance"]["base"] == pytest.approx(0.01 - 0.0004)


@pytest.mark.slow
def test_a_first_leg_the_book_fills_in_part_is_hedged_by_what_it_bought(
    cli, venues: Venues
) -> None:
    """Bybit's book holds 0.000613 BTC at the price: the market buy fills that much and Bybit
    cancels the rest. The sell on Binance must be what was bought, down to Binance's stepSize
    (0.00061), not the pair's 0.001 (which would sell 0.000387 unhedged and pay to buy it
    back). The 0.000003 left on Bybit is under its 5 USDT minimum order: no close is sent, the
    pair says what stayed, and the next pair opens rather than waiting on it for ever."""
    venues.bybit.depth["BTCUSDT"] = Decimal("0.000613")
    run = cli(*RUN, "--account", "part", "--max-pairs", "2", env=venues.env())
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["pair_states"] == {"arb-000001": "complete", "arb-000002": "complete"}
    for pair_id in report["pair_states"]:
        [buy] = venues.bybit.orders_with(_cid("part", pair_id, "buy"))
        assert (buy["orderStatus"], Decimal(buy["cumExecQty"])) == (
            "PartiallyFilledCanceled",
            Decimal("0.000613"),
        )
        [sell] = venues.binance.orders_with(_cid("part", pair_id, "sell"))
        assert (sell["status"], Decimal(sell["executedQty"])) == ("FILLED", Decimal("0.00061"))
        assert not venues.bybit.orders_with(_cid("part", pair_id, "close-1"))
        note = report["pair_notes"][pair_id]
        assert "3e-06 buy left on bybit, which cannot trade it" in note and "minNotional" in note
    assert report["inventory_end"]["binance"]["base"] == pytest.approx(0.01 - 2 * 0.00061)


@pytest.mark.slow
def test_a_restart_after_a_lost_reply_reconciles_the_pair_without_a_second_order(
    cli, venues: Venues
) -> None:
    # Binance takes the sell leg but its reply is lost, and the status query fails too: the run
    # cannot know, so it stops, leaving the pair open in the journal.
    venues.binance.script(
        ExchangeFault(status=503, after_accept=True),
        ExchangeFault(method="GET", status=503),
    )
    first = cli(*RUN, "--account", "rs", "--max-pairs", "1", env=venues.env())
    assert first.returncode == 2
    last_line = first.stderr.strip().splitlines()[-1]
    assert "sell leg of arb-000001" in last_line and "same --account to reconcile" in last_line
    again = cli(*RUN, "--account", "rs", "--max-pairs", "1", env=venues.env())
    assert again.returncode == 0, again.stderr
    assert "reconciled arb-000001: open → complete" in again.stderr
    report = json.loads(again.stdout)
    assert report["pair_states"] == {"arb-000001": "complete", "arb-000002": "complete"}
    for pair_id in report["pair_states"]:
        assert len(venues.bybit.orders_with(_cid("rs", pair_id, "buy"))) == 1
        assert len(venues.binance.orders_with(_cid("rs", pair_id, "sell"))) == 1
    assert len(venues.binance.orders) == len(venues.bybit.orders) == 2


@pytest.mark.slow
def test_a_key_that_can_withdraw_stops_the_run_before_any_order(cli, venues: Venues) -> None:
    venues.bybit.key_info["permissions"] = {"Spot": ["SpotTrade"], "Wallet": ["Withdraw"]}
    run = cli(*RUN, "--account", "wd", env=venues.env())
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: refusing Bybit testnet trading with this API key: Wallet")
    assert not venues.bybit.orders and not venues.binance.orders


@pytest.mark.slow
def test_an_account_with_paper_pairs_is_never_reconciled_against_an_exchange(cli) -> None:
    paper = cli("agent-arb", "run", "--mode", "paper", "--fee-bps", "1,1", "--account", "mix")
    assert paper.returncode == 0, paper.stderr
    signed = cli(*RUN, "--account", "mix")
    assert signed.returncode == 2
    assert signed.stderr.strip().splitlines()[-1] == (
        "error: account 'mix' holds paper pairs: use another --account for testnet"
    )


def test_reconciling_asks_each_venue_for_the_unjournaled_legs_and_sends_nothing(
    venues: Venues,
) -> None:
    """In process, past the CLI: a lone leg whose close went out before the process died is
    found closed, and an open pair whose legs never left is failed; neither sends an order."""
    legs = signed_legs(venues, "rc")
    mid = float(venues.bybit.prices["BTCUSDT"])
    now = venues.binance.now_ms()
    book = VenueBook(venue="bybit", bids=[(mid - 0.5, 1.0)], asks=[(mid + 0.5, 1.0)],
                     time_ms=now, taker_fee_bps=10)  # fmt: skip
    edge = Edge(buy_venue="bybit", sell_venue="binance", quantity=0.001, buy_vwap=mid,
                sell_vwap=mid * 1.006, gross_bps=60, costs_bps=20, net_bps=40, net_quote=0.4)  # fmt: skip
    buy = legs.take("arb-000001", "bybit", "buy", 0.001, book, "buy")
    refused = LegFill.missed("binance", "sell", 0.001, 10, "rejected")
    lone = Pair(pair_id="arb-000001", opened_ms=now, state=PairState.LONE_LEG, edge=edge,
                legs=[buy, refused])  # fmt: skip
    legs.take("arb-000001", "bybit", "sell", 0.001, book, "close-1")  # then the process died
    sent = (len(venues.bybit.orders), len(venues.binance.orders))
    mended = legs.recover(lone)
    assert mended.state == PairState.CLOSED
    [close] = mended.closes
    assert (close.venue, close.side, close.filled) == ("bybit", "sell", 0.001)
    never = legs.recover(Pair(pair_id="arb-000002", opened_ms=now, edge=edge))
    assert never.state == PairState.FAILED
    assert all(f.reason.startswith("never reached the venue") for f in never.legs)
    assert (len(venues.bybit.orders), len(venues.binance.orders)) == sent


def test_a_restart_reads_a_hedge_leg_as_the_size_it_was_sent_at_and_leaves_the_residual(
    venues: Venues,
) -> None:
    """In process: Bybit fills 0.000613 of the pair's 0.001 buy, the sell on Binance hedges
    0.00061, and the process dies before journaling either. Reconciling reads each leg as the
    venue has it (the sell asked for 0.00061 and filled it), and the close rule then leaves the
    0.000003 below Bybit's minimum order as a noted residual, sending nothing."""
    venues.bybit.depth["BTCUSDT"] = Decimal("0.000613")
    legs = signed_legs(venues, "hr")
    mid = float(venues.bybit.prices["BTCUSDT"])
    now = venues.binance.now_ms()
    quotes = {"bids": [(mid - 0.5, 1.0)], "asks": [(mid + 0.5, 1.0)], "time_ms": now}
    books = {v: VenueBook(venue=v, taker_fee_bps=10, **quotes) for v in ("binance", "bybit")}
    edge = Edge(buy_venue="bybit", sell_venue="binance", quantity=0.001, buy_vwap=mid,
                sell_vwap=mid * 1.006, gross_bps=60, costs_bps=20, net_bps=40, net_quote=0.4)  # fmt: skip
    legs.take("arb-000001", "bybit", "buy", 0.001, books["bybit"], "buy")
    legs.take("arb-000001", "binance", "sell", legs.lot(0.000613), books["binance"], "sell")
    sent = (len(venues.bybit.orders), len(venues.binance.orders))
    mended = legs.recover(Pair(pair_id="arb-000001", opened_ms=now, edge=edge))
    buy, sell = mended.legs
    assert (buy.requested, buy.filled) == (0.001, 0.000613)
    assert (sell.requested, sell.filled, sell.reason) == (0.00061, 0.00061, "filled")
    assert mended.state == PairState.LONE_LEG
    desk = ArbDesk(ArbLimits(quantity=0.001, max_notional_per_leg=1_000, daily_loss=10),
                   legs.inventory, legs, lambda pair: None, past=[mended], lot=legs.lot)  # fmt: skip
    desk.step(books, now)
    assert mended.state == PairState.COMPLETE
    assert "3e-06 buy left on bybit, which cannot trade it" in mended.note
    assert "minNotional" in mended.note and not mended.closes
    assert (len(venues.bybit.orders), len(venues.binance.orders)) == sent


def test_an_unreachable_exchange_stops_the_start_in_one_line(cli, venues: Venues) -> None:
    env = venues.env() | {"AGENT_BYBIT__TRADE_URL": "http://127.0.0.1:9"}
    run = cli(*RUN, "--account", "down", env=env)
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot start on Bybit testnet (http://127.0.0.1:9): Bybit at")
    assert "Traceback" not in run.stderr and not venues.binance.orders


def test_at_the_rate_limit_a_lone_legs_close_still_goes_out_and_new_pairs_wait(
    venues: Venues,
) -> None:
    """In process: pairs every second until the strategy's order rate (2 a minute here) is
    spent on both venues. A lone leg (Binance sold, its Bybit buy missed) closes by buying back
    on Binance past the rate limit, saying so; a new pair's throttled buy sends no sell."""
    legs = signed_legs(venues, "rl", RiskLimits(strategy={"max_orders_per_minute": 2}))
    journal: list[str] = []
    desk = ArbDesk(
        ArbLimits(quantity=0.001, max_notional_per_leg=1_000, daily_loss=100,
                  max_book_age_ms=60_000),
        legs.inventory, legs, lambda pair: journal.append(pair.state.value), lot=legs.lot,
    )  # fmt: skip
    now = venues.binance.now_ms()

    def books(at: int) -> dict[str, VenueBook]:
        return books_at(venues, at)

    burst = [desk.step(books(now + i * 1_000), now + i * 1_000) for i in range(2)]
    assert [p.state for p in burst if p is not None] == [PairState.COMPLETE] * 2
    sold = legs.take("arb-000009", "binance", "sell", 0.001, books(now)["binance"], "sell")
    edge = burst[0].edge
    lone = Pair(pair_id="arb-000009", opened_ms=now, state=PairState.LONE_LEG, edge=edge,
                legs=[LegFill.missed("bybit", "buy", 0.001, 10, "timed out"), sold])  # fmt: skip
    desk.pairs.append(lone)
    at = now + 2_000
    failed = desk.step(books(at), at)
    assert lone.state == PairState.CLOSED
    [close] = venues.binance.orders_with(_cid("rl", "arb-000009", "close-1"))
    assert (close["side"], close["status"]) == ("BUY", "FILLED")
    assert (
        "UNWIND" in lone.closes[0].reason and "orders in the last minute" in lone.closes[0].reason
    )
    # the new pair's buy on Bybit is throttled, and no Binance sell follows it
    assert failed is not None and failed.state == PairState.FAILED
    assert "RATE_LIMIT" not in failed.note and "orders in the last minute" in failed.note
    assert len(failed.legs) == 1
    assert len(venues.binance.orders) == 2 + 1 + 1  # two pairs' sells, the lone sell, its close


def test_a_lone_buy_whose_fee_bybit_kept_in_coins_ends_instead_of_blocking_the_desk(
    venues: Venues,
) -> None:
    """In process: Bybit holds no BTC before the pair, so after the buy it holds the 0.001
    bought less the 0.000001 fee it kept in BTC. The sell on Binance is refused, and the close
    can only sell the 0.000999 held; the 0.000001 left exists nowhere, and its close (vetoed:
    nothing held) must end the pair rather than hold back every pair after it."""
    venues.bybit.wallet["BTC"] = Decimal(0)
    venues.binance.script(ExchangeFault(status=400, body=INSUFFICIENT_BALANCE))
    legs = signed_legs(venues, "fee")
    desk = ArbDesk(
        ArbLimits(quantity=0.001, max_notional_per_leg=1_000, daily_loss=100,
                  max_book_age_ms=60_000),
        legs.inventory, legs, lambda pair: None, lot=legs.lot,
    )  # fmt: skip
    now = venues.binance.now_ms()
    first = desk.step(books_at(venues, now), now)
    assert first is not None and [c.filled for c in first.closes] == [0.000999]
    second = desk.step(books_at(venues, now + 1_000), now + 1_000)
    assert first.state == PairState.CLOSED
    assert "1e-06 buy left on bybit, which cannot trade it" in first.note
    assert "a lone leg is still open" not in desk.skipped
    assert second is not None and second.pair_id == "arb-000002"
