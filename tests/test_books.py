"""The book in use: the real depth capture replayed by the loopback Binance server, through the
real stream client and REST snapshots into Books, read by the risk gate, the agent's tool and
the fill model; plus the replay's own promise that a snapshot agrees with the diffs after it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import BinanceSettings
from execution.slippage import BookWalk, FixedBps
from market.binance_rest import BinanceRequestError, BinanceRestClient, DepthSnapshot
from market.binance_ws import Bar, BinanceStream, Reconnected, depth_stream
from market.books import BookQuote, Books, rest_snapshots
from market.depth_replay import DepthReplay, sessions
from market.orderbook import DepthUpdate, OrderBook
from market.replay_server import ReplayServer
from market.sample import load_depth_sample, load_sample, sample_rules
from risk import (
    Approved,
    MarketView,
    PortfolioView,
    ReasonCode,
    RiskLimits,
    RiskState,
    SignalSource,
    TradeSignal,
    Vetoed,
    assess,
)
from tools import ALL_TOOLS, MarketData, ToolEnv, flat_portfolio

STREAMS = ["btcusdt@kline_1m", depth_stream("BTCUSDT")]
SPEED = 600.0  # a bar every 0.1 s, a depth message every 1/60 s


class Replay:
    """A loopback replay with the stream client and Books wired as a runner would wire them."""

    def __init__(self, server: ReplayServer, client: BinanceRestClient) -> None:
        self.server = server
        self.books = Books(rest_snapshots(client, limit=100))
        self.stream = BinanceStream(
            STREAMS, base_url=server.url, backoff_base_s=0.01, backoff_max_s=0.05
        )
        self.events: list[object] = []

    async def until(self, done: Callable[[object], bool]) -> object:
        """Feed events to Books until `done(event)` holds after one was applied."""
        async for event in self.stream:
            await self.books.on_event(event)
            self.events.append(event)
            if done(event):
                return event
        raise AssertionError("the stream ended")

    def caught_up(self, event: object) -> bool:
        """The client has applied every depth message the server has sent so far."""
        return (
            isinstance(event, DepthUpdate)
            and event.final_update_id == self.server.depth["BTCUSDT"].last_update_id
        )

    def server_book(self) -> tuple[list[list[float]], list[list[float]]]:
        snapshot = self.server.depth["BTCUSDT"].snapshot(5000)
        as_floats = [[[float(p), float(q)] for p, q in snapshot[k]] for k in ("bids", "asks")]
        return as_floats[0], as_floats[1]


def replayed(scenario: Callable[[Replay], Any], **server_args: Any) -> Any:
    async def run() -> Any:
        async with ReplayServer(speed=SPEED, **server_args) as server:
            client = BinanceRestClient(BinanceSettings(base_url=server.http_url, max_retries=0))
            replay = Replay(server, client)
            try:
                return await scenario(replay)
            finally:
                await replay.stream.aclose()
                client.close()

    return asyncio.run(run())


def levels(quote: BookQuote) -> tuple[list[list[float]], list[list[float]]]:
    return [[b.price, b.quantity] for b in quote.bids], [[a.price, a.quantity] for a in quote.asks]


def quoted_bar(replay: Replay) -> Callable[[object], bool]:
    return lambda event: isinstance(event, Bar) and replay.books.quote("BTCUSDT") is not None


# -- the gate reads the replayed book ---------------------------------------------------------


def _entry(bar: Bar) -> TradeSignal:
    return TradeSignal(
        decision_id="book-1",
        source=SignalSource.STRATEGY,
        symbol="BTCUSDT",
        action="buy",
        size_pct=0.1,
        stop_loss=bar.close * 0.99,
        created_ms=bar.close_time + 1,
    )


def test_replayed_book_feeds_the_gate_a_tight_spread_limit_vetoes_and_a_loose_one_approves() -> (
    None
):
    async def scenario(replay: Replay) -> tuple[Bar, BookQuote]:
        bar = await replay.until(quoted_bar(replay))
        assert isinstance(bar, Bar)
        quote = replay.books.quote("BTCUSDT")
        assert quote is not None
        return bar, quote

    bar, quote = replayed(scenario)
    # Re-anchored onto the replayed bars: the book sits at the bar's price, spread a few bps.
    assert quote.best_bid < quote.best_ask
    assert abs(quote.mid / bar.close - 1) < 0.005
    assert 0 < quote.spread_bps < 50
    view = MarketView(
        symbol="BTCUSDT",
        last_price=bar.close,
        data_time_ms=bar.close_time,
        best_bid=quote.best_bid,
        best_ask=quote.best_ask,
        rules=sample_rules()["BTCUSDT"],
    )
    cash = PortfolioView(cash=10_000, equity=10_000, peak_equity=10_000, day_start_equity=10_000)
    now = bar.close_time + 1

    tight = assess(_entry(bar), cash, view, now, RiskLimits(max_spread_bps=1.0), RiskState())
    assert isinstance(tight, Vetoed)
    assert [r.code for r in tight.reasons] == [ReasonCode.WIDE_SPREAD]
    assert f"spread {quote.spread_bps:.1f} bps exceeds 1 bps" in tight.reasons[0].message

    loose = assess(_entry(bar), cash, view, now, RiskLimits(max_spread_bps=50.0), RiskState())
    assert isinstance(loose, Approved)


# -- resyncs ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_each_gap_in_the_replayed_depth_resyncs_from_a_snapshot_to_the_servers_book() -> None:
    """The capture's 3 real gaps and the gap between two passes of it: each real gap discards
    the book, a REST snapshot rebuilds it, and after every gap the rebuilt book is the
    server's, level for level."""
    gaps: list[tuple[int, int]] = []
    checked_after_gap: list[int] = []

    async def scenario(replay: Replay) -> int:
        previous: int | None = None

        def step(event: object) -> bool:
            nonlocal previous
            if isinstance(event, DepthUpdate):
                if previous is not None and event.first_update_id != previous + 1:
                    gaps.append((previous, event.first_update_id))
                previous = event.final_update_id
            quote = replay.books.quote("BTCUSDT", levels=5000)
            if quote is not None and replay.caught_up(event) and gaps:
                assert levels(quote) == replay.server_book()
                if len(checked_after_gap) < len(gaps):
                    checked_after_gap.append(quote.resyncs)
            return len(checked_after_gap) == 4

        await replay.until(step)
        (stats,) = replay.books.stats()
        assert stats.snapshots >= stats.resyncs + 1  # the first sync plus one per resync
        return stats.resyncs

    resyncs = replayed(scenario)
    assert len(gaps) >= 4
    real = [(a, b) for a, b in gaps[:3]]
    assert [b - a for a, b in real] == [5528, 1799213, 391689]  # the capture's own gaps
    assert checked_after_gap == sorted(checked_after_gap)
    # Each real gap costs a resync. The gap between the passes can come while the third gap's
    # snapshot is still being fetched: served after the server restarted its pass, that one
    # snapshot already holds the second pass's book and covers both (seen on a loaded CI run),
    # so the fourth resync may not be needed; the book still equals the server's, as checked.
    assert checked_after_gap[-1] >= 3 and resyncs >= 3


def test_a_reconnect_discards_the_book_and_it_resyncs_from_a_new_snapshot() -> None:
    async def scenario(replay: Replay) -> tuple[list[int], int]:
        resyncs: list[int] = []

        def step(event: object) -> bool:
            resyncs.append(replay.books.stats()[0].resyncs)
            return isinstance(event, Reconnected)

        await replay.until(lambda event: replay.books.quote("BTCUSDT") is not None)
        await replay.until(step)
        assert replay.books.quote("BTCUSDT") is None  # nothing stale is shown meanwhile
        (dropped,) = replay.books.stats()
        await replay.until(
            lambda event: replay.caught_up(event) and replay.books.quote("BTCUSDT") is not None
        )
        quote = replay.books.quote("BTCUSDT", levels=5000)
        assert quote is not None and levels(quote) == replay.server_book()
        (after,) = replay.books.stats()
        return resyncs, after.snapshots - dropped.snapshots

    resyncs, snapshots = replayed(scenario, drop_after=40)
    assert len(resyncs) >= 2 and resyncs[-1] == resyncs[-2] + 1  # the reconnect's own resync
    assert snapshots >= 1


def test_the_replay_serves_no_ethusdt_book_and_says_so() -> None:
    """There is no real ETHUSDT depth capture: its snapshot is refused, never made up."""

    async def scenario(replay: Replay) -> str:
        client = BinanceRestClient(BinanceSettings(base_url=replay.server.http_url, max_retries=0))
        try:
            with pytest.raises(BinanceRequestError) as refused:
                await asyncio.to_thread(client.depth, "ETHUSDT", 100)
            snapshot = await asyncio.to_thread(client.depth, "BTCUSDT", 5)
        finally:
            client.close()
        assert snapshot.symbol == "BTCUSDT"
        return str(refused.value)

    message = replayed(scenario)
    assert "404" in message and "no depth capture for 'ETHUSDT', only for BTCUSDT" in message


# -- the agent's tool --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def market() -> MarketData:
    return MarketData({s: load_sample(s) for s in ("BTCUSDT", "ETHUSDT")}, "1m")


def call(env: ToolEnv, arguments: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    outcome = ALL_TOOLS.call(env, "c1", "get_order_book", json.dumps(arguments))
    return outcome.ok, json.loads(outcome.content)


def test_get_order_book_shows_the_replayed_top_spread_depth_and_age(market: MarketData) -> None:
    async def scenario(replay: Replay) -> tuple[Bar, Books]:
        bar = await replay.until(quoted_bar(replay))
        assert isinstance(bar, Bar)
        return bar, replay.books

    bar, books = replayed(scenario)
    env = ToolEnv(
        market=market,
        now_ms=bar.close_time + 1,
        rules=sample_rules(),
        portfolio=flat_portfolio(10_000),
        book=books.quote,
    )
    quote = books.quote("BTCUSDT", levels=1000, depth_bps=25)
    assert quote is not None

    ok, out = call(env, {"symbol": "btcusdt", "levels": 3, "depth_bps": 25})
    assert ok
    bids, asks = levels(quote)
    assert out["bids"] == [[round(p, 8), q] for p, q in bids[:3]]
    assert out["asks"] == [[round(p, 8), q] for p, q in asks[:3]]
    assert [p for p, _ in out["bids"]] == sorted((p for p, _ in out["bids"]), reverse=True)
    assert out["bids"][0][0] < out["asks"][0][0]
    assert out["spread_bps"] == round((asks[0][0] - bids[0][0]) / quote.mid * 1e4, 2)
    near = quote.mid * 25 / 1e4
    assert out["bid_depth_quote"] == pytest.approx(
        sum(p * q for p, q in bids if p >= quote.mid - near), abs=0.01
    )
    assert out["ask_depth_quote"] == pytest.approx(
        sum(p * q for p, q in asks if p <= quote.mid + near), abs=0.01
    )
    assert out["age_s"] == (bar.close_time + 1 - quote.event_time_ms) / 1000 >= 0

    ok, out = call(env, {"symbol": "ETHUSDT"})
    assert not ok and "no synced ETHUSDT order book" in out["error"]

    backtest = ToolEnv(
        market=market, now_ms=env.now_ms, rules=sample_rules(), portfolio=flat_portfolio(10_000)
    )
    ok, out = call(backtest, {"symbol": "BTCUSDT"})
    assert not ok and "no order book in this mode" in out["error"]


# -- slippage from the book -------------------------------------------------------------------


def test_walking_the_replayed_book_costs_more_for_a_larger_order_and_falls_back_without_one() -> (
    None
):
    async def scenario(replay: Replay) -> Books:
        await replay.until(quoted_bar(replay))
        return replay.books

    books = replayed(scenario)
    quote = books.quote("BTCUSDT", levels=1000)
    assert quote is not None
    fallback = FixedBps(bps=3)
    walk = BookWalk("BTCUSDT", books, fallback)
    base = 110_000.0
    small, large = quote.asks[0].quantity / 2, quote.asks[0].quantity + quote.asks[1].quantity
    assert base < walk.price(+1, base, small, 1.0) < walk.price(+1, base, large, 1.0)
    # The small buy pays half the spread: the best ask against the mid.
    assert walk.price(+1, base, small, 1.0) == pytest.approx(base * quote.best_ask / quote.mid)
    assert walk.price(-1, base, quote.bids[0].quantity / 2, 1.0) == pytest.approx(
        base * quote.best_bid / quote.mid
    )
    whole_book = sum(a.quantity for a in quote.asks)
    assert walk.price(+1, base, whole_book * 2, 1.0) == fallback.price(+1, base, 1.0, 1.0)
    eth = BookWalk("ETHUSDT", books, fallback)
    assert eth.price(-1, 3_900.0, 0.5, 1.0) == pytest.approx(3_900.0 * (1 - 3 / 1e4))
    assert walk.cap(5.0, 1.0) == fallback.cap(5.0, 1.0)


PRICES = st.lists(st.integers(1, 400), min_size=1, max_size=12, unique=True)
QTYS = st.lists(st.sampled_from([0.001, 0.01, 0.3, 1.0, 2.5]), min_size=12, max_size=12)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(PRICES, PRICES, QTYS, st.floats(0.0001, 20), st.floats(0.0001, 20))
def test_book_walk_never_beats_the_mid_and_never_improves_with_size(
    bid_ticks: list[int], ask_ticks: list[int], qtys: list[float], q1: float, q2: float
) -> None:
    snapshot = DepthSnapshot(
        symbol="BTCUSDT",
        last_update_id=10,
        bids=[(100.0 - t / 100, q) for t, q in zip(bid_ticks, qtys, strict=False)],
        asks=[(100.0 + t / 100, q) for t, q in zip(ask_ticks, qtys, strict=False)],
    )
    books = Books(lambda symbol: snapshot)
    asyncio.run(books.on_event(DepthUpdate(E=1, s="BTCUSDT", U=11, u=11, b=[], a=[])))
    walk = BookWalk("BTCUSDT", books, FixedBps(bps=1_000))
    small, large = sorted((q1, q2))
    for side in (+1, -1):
        total = sum(q for _, q in (snapshot.asks if side > 0 else snapshot.bids))
        if large > total:
            continue  # too thin: the fallback prices it (checked above)
        a, b = walk.price(side, 50.0, small, 1.0), walk.price(side, 50.0, large, 1.0)
        assert side * (a - 50.0) > 0  # half the spread at least
        assert side * (b - a) >= -1e-9


# -- the replay's snapshot agrees with its diffs ------------------------------------------------


def test_replay_snapshot_plus_the_following_diffs_is_always_the_servers_book() -> None:
    """Two passes of the capture, a snapshot taken after every message: a book synced from it
    and fed the diffs that follow equals the server's book after each, until the next gap."""
    messages = load_depth_sample("BTCUSDT")
    server = DepthReplay("BTCUSDT", messages, lambda t: 100_000.0 + t)
    sent: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    for i in range(2 * len(messages)):
        sent.append(server.next(1_000 * (i + 1)))
        truth.append(server.snapshot(5000))
    assert len(sessions(sent)) == 2 * len(sessions(messages))  # a pass boundary is a gap too

    def levels_of(snapshot: dict[str, Any], side: str) -> list[tuple[float, float]]:
        return [(float(p), float(q)) for p, q in snapshot[side]]

    for start in range(len(sent) - 1):
        book = OrderBook("BTCUSDT", None)
        book.apply(DepthUpdate.model_validate(sent[start + 1]))
        snap = truth[start]
        book.offer(
            DepthSnapshot(
                symbol="BTCUSDT",
                last_update_id=snap["lastUpdateId"],
                bids=levels_of(snap, "bids"),
                asks=levels_of(snap, "asks"),
            )
        )
        for later in range(start + 1, len(sent)):
            if later > start + 1:
                book.apply(DepthUpdate.model_validate(sent[later]))
            if not book.synced:
                assert sent[later]["U"] != sent[later - 1]["u"] + 1  # only a gap unsyncs it
                break
            assert book.bids() == levels_of(truth[later], "bids")
            assert book.asks() == levels_of(truth[later], "asks")


def test_replay_keeps_the_captures_ids_sizes_and_relative_prices_anchored_on_the_bars() -> None:
    messages = load_depth_sample("BTCUSDT")
    first_session = len(sessions(messages)[0])
    anchor = 110_000.0
    replay = DepthReplay("BTCUSDT", messages, lambda t: anchor)
    sent = [replay.next(1_000 * (i + 1)) for i in range(first_session)]
    end_of_session = replay.snapshot(5000)
    sent += [replay.next(1_000 * (i + 1)) for i in range(first_session, len(messages) + 1)]

    assert [(m["U"], m["u"]) for m in sent[:-1]] == [(m["U"], m["u"]) for m in messages]
    span = messages[-1]["u"] - messages[0]["U"] + 2
    assert sent[-1]["U"] == messages[0]["U"] + span  # the next pass, one id skipped
    assert [m["E"] for m in sent[:3]] == [1_000, 2_000, 3_000]
    for raw, out in zip(messages, sent, strict=False):
        assert [q for _, q in out["a"] + out["b"]] == [q for _, q in raw["a"] + raw["b"]]
        prices = [float(p) for p, _ in raw["a"] + raw["b"]]
        scaled = [float(p) for p, _ in out["a"] + out["b"]]
        assert len({round(s / p, 9) for p, s in zip(prices, scaled, strict=True)}) <= 1
    best_bid, best_ask = float(end_of_session["bids"][0][0]), float(end_of_session["asks"][0][0])
    assert (best_bid + best_ask) / 2 == pytest.approx(anchor, rel=1e-12)
