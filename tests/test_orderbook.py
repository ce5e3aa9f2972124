"""The local order book on real Binance diff-depth captures and on generated venues: sequencing,
resyncs on gaps, level removal, and fill estimates checked against independent recomputation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback_binance import DEPTH_CAPTURE, LoopbackBinance

from config.settings import BinanceSettings
from market.binance_rest import BinanceRestClient, BinanceUnavailable, DepthSnapshot
from market.orderbook import DepthUpdate, OrderBook

FIXTURES = Path(__file__).parent / "fixtures" / "binance"
US_STREAM = FIXTURES / "ws_binanceus_btcusdt_depthUpdate_stream_2025-07-13_71msgs.jsonl"
SPOT_EVENT = FIXTURES / "ws_spot_btcusdt_depthUpdate_2024-08-07.json"

Book = tuple[dict[float, float], dict[float, float]]


def _fold(book: Book, event: dict[str, Any]) -> None:
    """The reference: set every level's absolute quantity from the raw JSON, 0 deletes it."""
    for side, levels in zip(book, (event["b"], event["a"]), strict=True):
        for price, qty in levels:
            if float(qty) == 0:
                side.pop(float(price), None)
            else:
                side[float(price)] = float(qty)


def _state(book: OrderBook) -> Book:
    return dict(book.bids()), dict(book.asks())


def _from_stream(raw: dict[str, Any]) -> DepthSnapshot:
    """A snapshot made from a stream message, as the captures come without one: its
    lastUpdateId is the message's first id U (inside [U, u]) and its levels are the message's
    non-zero levels, i.e. the book that message describes when folded onto nothing."""
    folded: Book = ({}, {})
    _fold(folded, raw)
    return DepthSnapshot(
        symbol=raw["s"],
        last_update_id=raw["U"],
        bids=list(folded[0].items()),
        asks=list(folded[1].items()),
    )


def _sessions(raws: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split where U is not the previous u + 1, independently of the book's own check."""
    sessions: list[list[dict[str, Any]]] = []
    for raw in raws:
        if not sessions or raw["U"] != sessions[-1][-1]["u"] + 1:
            sessions.append([])
        sessions[-1].append(raw)
    return sessions


def test_binance_us_stream_resyncs_on_each_of_its_three_real_gaps_and_matches_a_fold() -> None:
    raws = [json.loads(line) for line in US_STREAM.read_text().splitlines()]
    current: list[dict[str, Any]] = []
    book = OrderBook("BTCUSDT", lambda: _from_stream(current[-1]))
    sessions = _sessions(raws)
    assert len(sessions) == 4  # the capture's 3 gaps

    checked = 0
    for session in sessions:
        reference: Book = ({}, {})
        for raw in session:
            current.append(raw)
            book.apply(DepthUpdate.model_validate_json(json.dumps(raw)))
            _fold(reference, raw)
            if book.synced:
                assert _state(book) == reference
                assert book.last_update_id == raw["u"]
                checked += 1
        assert book.synced, "every session ends with the book in sync"
        assert _state(book) == reference

    assert book.resyncs == 3
    assert book.snapshots == 4  # the first sync plus one per gap
    # A session whose first message spans a single id (U == u) is wholly inside its snapshot.
    stale = sum(1 for s in sessions if s[0]["U"] == s[0]["u"])
    assert book.stale_events == stale
    assert checked == book.updates == len(raws) - stale
    # The last message once more, as a reconnecting feed may repeat it: dropped, not reapplied.
    assert book.apply(DepthUpdate.model_validate_json(json.dumps(raws[-1])))
    assert (book.stale_events, book.updates) == (stale + 1, len(raws) - stale)
    assert _state(book) == reference
    best_ask = min(reference[1])
    assert book.best_ask == (best_ask, reference[1][best_ask])


def test_spot_event_sets_levels_and_zero_quantities_remove_them() -> None:
    raw = json.loads(SPOT_EVENT.read_text())
    removed = [float(p) for p, q in raw["b"] if float(q) == 0]
    assert removed, "the capture removes bid levels"
    # The snapshot holds the levels the event removes, and one bid the event does not mention.
    snapshot = DepthSnapshot(
        symbol="BTCUSDT",
        last_update_id=(raw["U"] + raw["u"]) // 2,
        bids=[(p, 1.0) for p in removed] + [(50_000.0, 3.0)],
        asks=[],
    )
    book = OrderBook("BTCUSDT", lambda: snapshot)

    assert book.apply(DepthUpdate.model_validate_json(SPOT_EVENT.read_text()))

    expected_bids = {float(p): float(q) for p, q in raw["b"] if float(q) != 0} | {50_000.0: 3.0}
    expected_asks = {float(p): float(q) for p, q in raw["a"]}
    assert _state(book) == (expected_bids, expected_asks)
    assert not set(removed) & set(dict(book.bids()))
    assert [p for p, _ in book.bids()] == sorted(expected_bids, reverse=True)
    assert book.best_bid == (57265.01, 5.23762)
    assert book.best_ask == (57265.03, 0.03705)
    assert book.spread == pytest.approx(0.02)
    assert book.mid == pytest.approx(57265.02)
    assert book.spread_bps == pytest.approx(0.02 / 57265.02 * 10_000)
    assert book.last_update_id == raw["u"]


def test_event_already_inside_the_snapshot_is_dropped_and_the_next_one_syncs() -> None:
    raw = json.loads(SPOT_EVENT.read_text())
    snapshot = DepthSnapshot(
        symbol="BTCUSDT", last_update_id=raw["u"], bids=[(57_000.0, 1.0)], asks=[(57_300.0, 2.0)]
    )
    book = OrderBook("BTCUSDT", lambda: snapshot)

    assert not book.apply(DepthUpdate.model_validate_json(SPOT_EVENT.read_text()))
    assert book.stale_events == 1
    assert book.best_bid is None  # nothing is shown before the book is in sync

    follow = DepthUpdate(
        E=raw["E"] + 100, s="BTCUSDT", U=raw["u"] + 1, u=raw["u"] + 4, b=[], a=[(57_299.0, 0.5)]
    )
    assert book.apply(follow)
    assert book.bids() == [(57_000.0, 1.0)]  # the stale event's bids were never applied
    assert book.asks() == [(57_299.0, 0.5), (57_300.0, 2.0)]
    assert book.snapshots == 1


def test_snapshot_older_than_the_buffered_events_is_never_used() -> None:
    raw = json.loads(SPOT_EVENT.read_text())
    old = DepthSnapshot(symbol="BTCUSDT", last_update_id=raw["U"] - 2, bids=[(1.0, 1.0)], asks=[])
    good = DepthSnapshot(symbol="BTCUSDT", last_update_id=raw["U"] + 3, bids=[], asks=[])
    snapshots = iter([old, good])
    book = OrderBook("BTCUSDT", lambda: next(snapshots))
    event = DepthUpdate.model_validate_json(SPOT_EVENT.read_text())

    assert not book.apply(event)
    assert book.snapshots_too_old == 1

    follow = DepthUpdate(E=raw["E"] + 100, s="BTCUSDT", U=raw["u"] + 1, u=raw["u"] + 1, b=[], a=[])
    assert book.apply(follow)  # the fresh snapshot, then both buffered events in order
    assert book.snapshots == 2
    assert (1.0, 1.0) not in book.bids()
    assert book.best_bid == (57265.01, 5.23762)
    assert book.last_update_id == raw["u"] + 1


def test_failing_snapshot_source_leaves_the_book_unsynced_then_it_recovers() -> None:
    raw = json.loads(SPOT_EVENT.read_text())
    calls: list[int] = []

    def source() -> DepthSnapshot:
        calls.append(1)
        if len(calls) == 1:
            raise BinanceUnavailable("cannot connect to Binance")
        return DepthSnapshot(symbol="BTCUSDT", last_update_id=raw["U"], bids=[], asks=[])

    book = OrderBook("BTCUSDT", source)
    event = DepthUpdate.model_validate_json(SPOT_EVENT.read_text())
    assert not book.apply(event)
    assert book.snapshot_failures == 1
    follow = DepthUpdate(E=raw["E"] + 100, s="BTCUSDT", U=raw["u"] + 1, u=raw["u"] + 2, b=[], a=[])
    assert book.apply(follow)
    assert book.best_ask == (57265.03, 0.03705)


def test_invalidate_discards_the_book_and_the_next_event_resyncs() -> None:
    snapshots = iter(
        [
            DepthSnapshot(symbol="BTCUSDT", last_update_id=10, bids=[(99.0, 1.0)], asks=[]),
            DepthSnapshot(symbol="BTCUSDT", last_update_id=20, bids=[(98.0, 2.0)], asks=[]),
        ]
    )
    book = OrderBook("BTCUSDT", lambda: next(snapshots))
    assert book.apply(DepthUpdate(E=1, s="BTCUSDT", U=9, u=11, b=[], a=[(101.0, 1.0)]))
    book.invalidate("reconnected")
    assert (book.synced, book.best_bid, book.resyncs) == (False, None, 1)
    assert book.apply(DepthUpdate(E=2, s="BTCUSDT", U=20, u=21, b=[], a=[(102.0, 1.0)]))
    assert book.bids() == [(98.0, 2.0)]
    assert book.asks() == [(102.0, 1.0)]


@pytest.fixture
def depth_client() -> Iterator[BinanceRestClient]:
    server = LoopbackBinance().start()
    client = BinanceRestClient(BinanceSettings(base_url=server.base_url, max_retries=0))
    yield client
    client.close()
    server.stop()


def test_rest_snapshot_from_loopback_binance_then_diffs_give_spread_and_fill_prices(
    depth_client: BinanceRestClient,
) -> None:
    book = OrderBook("BTCUSDT", lambda: depth_client.depth("BTCUSDT", limit=10))
    capture = json.loads(DEPTH_CAPTURE.read_text())
    last_id = capture["lastUpdateId"]
    # The best bid 60650.00 leaves the book; the best ask's quantity changes to 0.5.
    diff = DepthUpdate(
        E=0, s="BTCUSDT", U=last_id - 3, u=last_id + 2, b=[(60650.0, 0.0)], a=[(60650.01, 0.5)]
    )
    assert book.apply(diff)

    assert book.best_bid == (60648.08, 0.06346)
    assert book.best_ask == (60650.01, 0.5)
    assert book.spread == pytest.approx(60650.01 - 60648.08)

    asks = [(Decimal(p), Decimal(q)) for p, q in capture["asks"]]
    asks[0] = (Decimal("60650.01"), Decimal("0.5"))
    want, cost, left = Decimal("1"), Decimal(0), Decimal("1")
    for price, qty in asks:
        take = min(left, qty)
        cost, left = cost + take * price, left - take
    fill = book.average_fill_price("buy", 1.0)
    assert fill.complete
    assert fill.filled == pytest.approx(1.0)
    assert fill.average_price == pytest.approx(float(cost / want), rel=1e-12)
    assert fill.worst_price == 60659.71
    assert fill.levels == 9
    assert fill.impact_bps == pytest.approx((float(cost / want) - 60650.01) / 60650.01 * 1e4)

    total_asks = float(sum(q for _, q in asks))
    thin = book.average_fill_price("buy", 10.0)
    assert not thin.complete
    assert thin.filled == pytest.approx(total_asks)
    assert thin.shortfall == pytest.approx(10.0 - total_asks)
    assert thin.levels == 10

    sell = book.average_fill_price("sell", 0.1)
    bids = [(float(p), float(q)) for p, q in capture["bids"]][1:]  # best bid removed
    assert sell.worst_price == bids[1][0]  # 0.06346 + 0.03654 of the next level
    assert sell.average_price == pytest.approx(
        (bids[0][0] * bids[0][1] + bids[1][0] * (0.1 - bids[0][1])) / 0.1
    )
    with pytest.raises(ValueError, match="positive"):
        book.average_fill_price("buy", 0)


# -- generated venues ------------------------------------------------------------------

BID_PRICES = [t / 100 for t in range(9_980, 10_000)]  # 99.80 .. 99.99
ASK_PRICES = [t / 100 for t in range(10_000, 10_020)]  # 100.00 .. 100.19: never crossed
QTYS = st.sampled_from([0.0, 0.0, 0.001, 0.5, 1.0, 2.5])
BID_LEVELS = st.lists(st.tuples(st.sampled_from(BID_PRICES), QTYS), max_size=5)
ASK_LEVELS = st.lists(st.tuples(st.sampled_from(ASK_PRICES), QTYS), max_size=5)
STEP = st.fixed_dictionaries(
    {
        "bids": BID_LEVELS,
        "asks": ASK_LEVELS,
        "ids": st.integers(1, 3),
        "fate": st.sampled_from(["deliver"] * 6 + ["drop", "duplicate"]),
    }
)
VENUE_RUNS = st.fixed_dictionaries(
    {
        "bids": BID_LEVELS,
        "asks": ASK_LEVELS,
        "steps": st.lists(STEP, min_size=1, max_size=40),
        "lag": st.integers(0, 2),
        "quantity": st.sampled_from([0.001, 0.7, 3.0, 50.0]),
    }
)


def _naive_fill(levels: dict[float, float], side: str, quantity: float) -> tuple[float, bool]:
    """Sort everything from scratch and walk it: the obvious, slow way."""
    ordered = sorted(levels.items(), reverse=side == "sell")
    left, cost = quantity, 0.0
    for price, qty in ordered:
        take = min(left, qty)
        cost, left = cost + take * price, left - take
        if left <= 0:
            break
    filled = quantity - max(left, 0.0)
    return (cost / filled if filled else float("nan")), left <= 0


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(VENUE_RUNS)
def test_book_always_equals_the_venue_at_its_update_id(run: dict[str, Any]) -> None:
    """A venue applies every event; the stream drops or repeats some. Whenever the book says it
    is in sync it equals the venue's book at its update id, recomputed naively."""
    venue: Book = ({}, {})
    _fold(venue, {"b": run["bids"], "a": run["asks"]})
    history: list[tuple[int, Book]] = [(1_000, (dict(venue[0]), dict(venue[1])))]
    by_id = dict(history)

    def snapshot() -> DepthSnapshot:
        update_id, (bids, asks) = history[max(0, len(history) - 1 - run["lag"])]
        return DepthSnapshot(
            symbol="BTCUSDT",
            last_update_id=update_id,
            bids=list(bids.items()),
            asks=list(asks.items()),
        )

    book = OrderBook("BTCUSDT", snapshot)
    final_steps = [{"bids": [], "asks": [], "ids": 1, "fate": "deliver"}] * 2
    for step in run["steps"] + final_steps:
        first = history[-1][0] + 1
        last = first + step["ids"] - 1
        _fold(venue, {"b": step["bids"], "a": step["asks"]})
        history.append((last, (dict(venue[0]), dict(venue[1]))))
        by_id[last] = history[-1][1]
        event = DepthUpdate(E=last, s="BTCUSDT", U=first, u=last, b=step["bids"], a=step["asks"])
        for _ in range({"deliver": 1, "drop": 0, "duplicate": 2}[step["fate"]]):
            book.apply(event)
            if book.synced:
                assert book.last_update_id is not None
                assert _state(book) == by_id[book.last_update_id]
                bid, ask = book.best_bid, book.best_ask
                if bid is not None and ask is not None:
                    assert bid[0] < ask[0]
                    assert book.spread is not None and book.spread > 0

    if run["lag"] == 0:  # a fresh snapshot and two events in a row always end in sync
        assert book.synced
        assert _state(book) == venue
    if book.synced:
        for side, levels in (("buy", venue[1]), ("sell", venue[0])):
            fill = book.average_fill_price(side, run["quantity"])
            price, complete = _naive_fill(levels, side, run["quantity"])
            assert fill.complete == complete
            if levels:
                assert fill.average_price == pytest.approx(price, rel=1e-12)
            else:
                assert fill.average_price is None and fill.filled == 0
