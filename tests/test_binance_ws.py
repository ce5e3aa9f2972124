"""The stream client against the replay server on 127.0.0.1: dropped and aged-out connections,
REST backfill through loopback Binance, malformed messages, and bars built from real trades."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from loopback_binance import FakeTime, LoopbackBinance
from websockets.asyncio.client import connect

from config.settings import BinanceSettings
from market.binance_rest import BinanceRestClient
from market.binance_ws import (
    AggTrade,
    Bar,
    BinanceStream,
    Reconnected,
    StreamEvent,
    StreamRefused,
    StreamUnavailable,
    Trade,
    TradeBarAggregator,
    backoff_delay,
    parse_message,
    rest_backfill,
)
from market.models import CANDLE_COLUMNS
from market.orderbook import DepthUpdate
from market.replay_server import ReplayServer, sample_backfill
from market.sample import load_sample

FIXTURES = Path(__file__).parent / "fixtures" / "binance"
BTC, ETH = "btcusdt@kline_1m", "ethusdt@kline_1m"
TIMEOUT_S = 20.0  # a hang fails the test instead of the run


@pytest.fixture
def rest_client() -> Iterator[tuple[BinanceRestClient, LoopbackBinance]]:
    server = LoopbackBinance().start()
    clock = FakeTime()  # after the sample's end, so every sample bar counts as closed
    client = BinanceRestClient(
        BinanceSettings(base_url=server.base_url, max_retries=0),
        clock=clock.time,
        sleep=clock.sleep,
    )
    yield client, server
    client.close()
    server.stop()


class Sleeps:
    """The injected sleep: records every backoff delay and waits `real_s` instead."""

    def __init__(self, real_s: float | None = None) -> None:
        self.delays: list[float] = []
        self.real_s = real_s

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(seconds if self.real_s is None else self.real_s)


def _sample_bars(symbol: str, start: int, stop: int) -> list[dict[str, Any]]:
    return load_sample(symbol).iloc[start:stop].to_dict("records")


def _fields(bar: Bar) -> dict[str, Any]:
    return {c: getattr(bar, c) for c in CANDLE_COLUMNS}


async def _consume(
    stream: BinanceStream,
    done: Callable[[list[StreamEvent]], bool],
    on_event: Callable[[StreamEvent], Awaitable[None]] | None = None,
) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    async with asyncio.timeout(TIMEOUT_S), stream:
        async for event in stream:
            events.append(event)
            if on_event is not None:
                await on_event(event)
            if done(events):
                break
    return events


def _bars(events: list[StreamEvent], symbol: str) -> list[Bar]:
    return [e for e in events if isinstance(e, Bar) and e.symbol == symbol]


def _reached(symbol_index: dict[str, int]) -> Callable[[list[StreamEvent]], bool]:
    """Done when every symbol has delivered the bar at its sample index."""
    sample = {s: int(load_sample(s)["open_time"].iloc[i]) for s, i in symbol_index.items()}

    def done(events: list[StreamEvent]) -> bool:
        return all(any(b.open_time >= t for b in _bars(events, s)) for s, t in sample.items())

    return done


@pytest.mark.slow
def test_dropped_connections_lose_no_bar_and_repeat_none_thanks_to_rest_backfill(
    rest_client: tuple[BinanceRestClient, LoopbackBinance],
) -> None:
    client, rest = rest_client
    start, stop = 100, 150
    sleeps = Sleeps()

    async def run() -> tuple[list[StreamEvent], BinanceStream, ReplayServer]:
        # 20 ms a bar, 4 messages a bar (both symbols, one x:false each): a drop every ~2 bars,
        # and each reconnect waits 30 ms, so bars close while the client is away.
        async with ReplayServer(
            speed=3000, start_index=start, partial_updates=1, drop_after=7
        ) as server:
            stream = BinanceStream(
                [BTC, ETH],
                base_url=server.url,
                backfill=rest_backfill(client),
                backoff_base_s=0.04,
                random_source=lambda: 0.5,
                sleep=sleeps,
            )
            done = _reached({"BTCUSDT": stop - 1, "ETHUSDT": stop - 1})
            return await _consume(stream, done), stream, server

    events, stream, server = asyncio.run(run())

    for symbol in ("BTCUSDT", "ETHUSDT"):
        got = [_fields(b) for b in _bars(events, symbol)][: stop - start]
        assert got == _sample_bars(symbol, start, stop)
    bars = [e for e in events if isinstance(e, Bar)]
    backfilled = [b for b in bars if b.source == "backfill"]
    reconnects = [e for e in events if isinstance(e, Reconnected)]
    assert server.dropped >= 3
    assert len(reconnects) == stream.stats.reconnects >= 3
    assert not any(r.planned for r in reconnects)
    assert backfilled, "bars closed while disconnected came from REST"
    assert stream.stats.backfilled_bars == len(backfilled)
    assert rest.count("/api/v3/klines") >= 1
    assert stream.stats.duplicate_bars == 0
    assert stream.stats.missing_bars == 0
    # Each reconnect succeeded at once, so every wait is the first, jittered step.
    assert sleeps.delays == [backoff_delay(0, 0.04, 60.0, 0.5)] * len(sleeps.delays)
    assert len(sleeps.delays) == len(reconnects)


def test_resume_after_backfills_up_to_the_first_bar_and_skips_bars_already_seen() -> None:
    start = 100
    times = load_sample("BTCUSDT")["open_time"]

    async def run() -> tuple[list[StreamEvent], BinanceStream]:
        async with ReplayServer(
            speed=float("inf"), start_index=start, stop_index=start + 8
        ) as server:
            stream = BinanceStream(
                [BTC, ETH],
                base_url=server.url,
                backfill=sample_backfill,
                resume_after={
                    ("BTCUSDT", "1m"): int(times[start - 4]),  # the consumer stored up to 96
                    ("ETHUSDT", "1m"): int(times[start + 2]),  # ... and up to 102
                },
            )
            done = _reached({"BTCUSDT": start + 7, "ETHUSDT": start + 7})
            return await _consume(stream, done), stream

    events, stream = asyncio.run(run())
    btc, eth = _bars(events, "BTCUSDT"), _bars(events, "ETHUSDT")
    assert [_fields(b) for b in btc] == _sample_bars("BTCUSDT", start - 3, start + 8)
    assert [b.source for b in btc[:3]] == ["backfill"] * 3
    assert [_fields(b) for b in eth] == _sample_bars("ETHUSDT", start + 3, start + 8)
    assert stream.stats.duplicate_bars == 3


def test_only_closed_klines_become_bars_and_bad_messages_are_counted_not_fatal() -> None:
    start, count = 200, 6
    kline_capture = (FIXTURES / "ws_spot_btcusdt_kline_1m_2020-10-02.json").read_text()
    trade_capture = (FIXTURES / "ws_spot_btcusdt_trade_2020-06-19.json").read_text()
    agg_capture = (FIXTURES / "ws_spot_btcusdt_aggTrade_2020-06-19.json").read_text()
    depth_raw = json.loads((FIXTURES / "ws_spot_btcusdt_depthUpdate_2024-08-07.json").read_text())
    depth_capture = json.dumps({"stream": "btcusdt@depth@100ms", "data": depth_raw})
    assert json.loads(kline_capture)["data"]["k"]["x"] is False
    injected = [
        "not json at all",
        '{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1601630228469}}',
        '{"stream":"btcusdt@ticker","data":{"e":"24hrTicker","E":1601630228469}}',
        kline_capture,
        trade_capture,
        agg_capture,
        depth_capture,
    ]

    async def run() -> tuple[list[StreamEvent], BinanceStream]:
        async with ReplayServer(
            speed=1200, start_index=start, stop_index=start + count, partial_updates=3
        ) as server:

            async def inject_after_first_bar(event: StreamEvent) -> None:
                if isinstance(event, Bar) and event.open_time == server.open_time("BTCUSDT", start):
                    for message in injected:
                        server.send_raw(message)

            stream = BinanceStream([BTC], base_url=server.url)
            done = _reached({"BTCUSDT": start + count - 1})
            return await _consume(stream, done, inject_after_first_bar), stream

    events, stream = asyncio.run(run())
    bars = _bars(events, "BTCUSDT")
    assert [_fields(b) for b in bars] == _sample_bars("BTCUSDT", start, start + count)
    assert stream.stats.open_klines == 3 * count + 1  # every x:false, the real capture too
    assert stream.stats.malformed == 2
    assert stream.stats.ignored == 1
    trades = [e for e in events if isinstance(e, Trade)]
    aggs = [e for e in events if isinstance(e, AggTrade)]
    assert trades == [parse_message(trade_capture).data]
    assert (trades[0].price, trades[0].quantity, trades[0].trade_id) == (
        9302.0,
        0.001019,
        343719861,
    )
    assert aggs == [parse_message(agg_capture).data]
    (depth,) = [e for e in events if isinstance(e, DepthUpdate)]
    assert (depth.symbol, depth.first_update_id, depth.final_update_id) == (
        "BTCUSDT",
        49981777515,
        49981777539,
    )
    assert depth.bids[1] == (57265.01, 5.23762)
    assert (57249.36, 0.0) in depth.bids  # a removal is kept for the book to apply
    assert len(depth.asks) == len(depth_raw["a"])
    assert stream.stats.reconnects == 0


def test_connection_is_renewed_at_the_configured_max_age_without_losing_bars() -> None:
    start, count, max_age = 300, 28, 0.3

    async def run() -> tuple[list[StreamEvent], list[float], BinanceStream, ReplayServer, Sleeps]:
        sleeps = Sleeps()
        async with ReplayServer(speed=2400, start_index=start) as server:  # 25 ms a bar
            stream = BinanceStream(
                [BTC],
                base_url=server.url,
                backfill=sample_backfill,
                max_connection_age_s=max_age,
                sleep=sleeps,
            )
            loop = asyncio.get_running_loop()
            began = loop.time()
            stamps: list[float] = []

            async def stamp(event: StreamEvent) -> None:
                if isinstance(event, Reconnected):
                    stamps.append(loop.time() - began)

            events = await _consume(stream, _reached({"BTCUSDT": start + count - 1}), stamp)
            return events, stamps, stream, server, sleeps

    events, stamps, stream, server, sleeps = asyncio.run(run())
    bars = _bars(events, "BTCUSDT")
    assert [_fields(b) for b in bars] == _sample_bars("BTCUSDT", start, start + count)
    reconnects = [e for e in events if isinstance(e, Reconnected)]
    assert reconnects and all(r.planned for r in reconnects)
    assert stream.stats.planned_reconnects == len(reconnects) == server.connections - 1
    assert max_age <= stamps[0] < max_age + 1.0
    assert sleeps.delays == []  # a planned renewal does not back off


def test_unreachable_stream_backs_off_exponentially_with_jitter_then_gives_up() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    randoms = iter([0.0, 0.5, 0.99])
    sleeps = Sleeps(real_s=0.0)

    async def run() -> None:
        stream = BinanceStream(
            [BTC],
            base_url=f"ws://127.0.0.1:{port}",
            backoff_base_s=1.0,
            backoff_max_s=3.0,
            max_attempts=3,
            sleep=sleeps,
            random_source=lambda: next(randoms),
        )
        await _consume(stream, lambda events: False)

    with pytest.raises(StreamUnavailable, match=r"gave up after 3 reconnection attempt"):
        asyncio.run(run())
    assert sleeps.delays == pytest.approx([1.0 * 0.5, 2.0 * 0.75, 3.0 * 0.995])


def test_a_stream_the_server_refuses_fails_at_once_with_the_status() -> None:
    """The replay has no real ETHUSDT depth capture, so it refuses that stream, loudly."""
    sleeps = Sleeps()

    async def run() -> None:
        async with ReplayServer(speed=600) as server:
            stream = BinanceStream(["ethusdt@depth@100ms"], base_url=server.url, sleep=sleeps)
            await _consume(stream, lambda events: False)

    with pytest.raises(StreamRefused, match="HTTP 400"):
        asyncio.run(run())
    assert sleeps.delays == []


# -- bars from trades ------------------------------------------------------------------


def _rest_trades() -> list[Trade]:
    """Binance REST /api/v3/trades rows, mapped field by field onto the stream's trade."""
    rows = json.loads((FIXTURES / "rest_spot_trades_BTCUSDT_2021-10-22.json").read_text())
    return [
        Trade(
            event_time=r["time"],
            symbol="BTCUSDT",
            trade_id=r["id"],
            price=r["price"],
            quantity=r["qty"],
            trade_time=r["time"],
            buyer_is_maker=r["isBuyerMaker"],
        )
        for r in rows
    ]


def _ohlcv(bar: Bar) -> tuple[Any, ...]:
    return (bar.open_time, bar.open, bar.high, bar.low, bar.close, bar.trades)


def test_one_second_bars_from_real_trades_have_the_right_ohlcv() -> None:
    trades = _rest_trades()
    bars = TradeBarAggregator("BTCUSDT", 1_000)
    closed = [bar for t in trades for bar in bars.add(t)]
    assert [_ohlcv(b) for b in closed] == [(1634942949000, 60650.0, 60655.0, 60650.0, 60654.99, 8)]
    assert bars.current is not None and _ohlcv(bars.current)[1:] == (60654.99,) * 4 + (2,)
    closed += bars.close_until(1634942951000)
    first, second = closed
    assert first.volume == pytest.approx(0.06692, abs=1e-12)
    assert first.taker_buy_volume == pytest.approx(0.02407, abs=1e-12)  # buyer not maker
    want_quote = sum(
        Decimal(str(t.price)) * Decimal(str(t.quantity))
        for t in trades
        if t.trade_time < 1634942950000
    )
    assert first.quote_volume == pytest.approx(float(want_quote), rel=1e-12)
    assert (second.volume, second.taker_buy_volume) == (pytest.approx(0.01442), 0.0)
    assert (first.interval, first.close_time, first.source) == ("1s", 1634942949999, "trades")


def test_windows_without_trades_are_flat_bars_at_the_last_price() -> None:
    bars = TradeBarAggregator("BTCUSDT", 100)
    closed = [bar for t in _rest_trades() for bar in bars.add(t)] + bars.close_until(1634942950100)
    assert [b.open_time - 1634942949000 for b in closed] == list(range(200, 1100, 100))
    flat = [b for b in closed if b.trades == 0]
    assert [b.open_time - 1634942949000 for b in flat] == [300, 400, 600, 700]
    for bar in flat:
        previous = next(b for b in reversed(closed) if b.open_time < bar.open_time)
        assert (bar.open, bar.high, bar.low, bar.close) == (previous.close,) * 4
        assert bar.volume == 0
    skipping = TradeBarAggregator("BTCUSDT", 100, fill_empty=False)
    kept = [bar for t in _rest_trades() for bar in skipping.add(t)]
    assert all(b.trades for b in kept) and len(kept) == len(closed) - len(flat) - 1


def test_agg_trades_count_their_trades_and_late_trades_are_refused() -> None:
    rows = json.loads((FIXTURES / "rest_spot_aggTrades_BTCUSDT_2021-10-22.json").read_text())
    # REST aggTrades use the stream's own short keys; only e, E and s are the stream's.
    aggs = [
        AggTrade.model_validate({"e": "aggTrade", "E": r["T"], "s": "BTCUSDT", **r}) for r in rows
    ]
    bars = TradeBarAggregator("BTCUSDT", 1_000)
    closed = [bar for a in aggs for bar in bars.add(a)]
    assert bars.add(aggs[0]) == [] and bars.late_trades == 1  # from a window already closed
    closed += bars.close_until(1634944099000)
    assert [_ohlcv(b) for b in closed] == [
        (1634944096000, 60759.6, 60759.6, 60759.59, 60759.6, 4),
        (1634944097000, 60759.6, 60759.6, 60759.6, 60759.6, 3),
        (1634944098000, 60759.59, 60759.6, 60759.59, 60759.6, 3),
    ]
    assert closed[0].volume == pytest.approx(0.01167)
    assert closed[2].taker_buy_volume == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("capture", "taker_buy"),
    [
        ("ws_spot_btcusdt_trade_2020-06-19.json", True),
        ("ws_spot_ethusdt_trade_combined_2021-12-12.json", False),
    ],
)
def test_a_real_stream_trade_makes_a_one_trade_bar(capture: str, taker_buy: bool) -> None:
    raw = json.loads((FIXTURES / capture).read_text())["data"]
    trade = parse_message((FIXTURES / capture).read_text()).data
    assert isinstance(trade, Trade)
    bars = TradeBarAggregator(raw["s"], 60_000)
    assert bars.add(trade) == []
    (bar,) = bars.close_until(raw["T"] - raw["T"] % 60_000 + 60_000)
    price, qty = float(raw["p"]), float(raw["q"])
    assert (bar.symbol, bar.open, bar.high, bar.low, bar.close) == (
        raw["s"],
        price,
        price,
        price,
        price,
    )
    assert (bar.volume, bar.trades, bar.quote_volume) == (qty, 1, price * qty)
    assert bar.taker_buy_volume == (qty if taker_buy else 0.0)
    assert bar.open_time == raw["T"] - raw["T"] % 60_000


def test_the_replay_sends_its_messages_uncompressed_even_when_a_client_offers_deflate() -> None:
    """The replay runs on the user's machine: compressing its ~60 depth messages a bar cost
    ~10% of a paper loop's CPU and saved no bandwidth. The client still offers deflate, as
    real Binance streams accept it."""

    async def run() -> tuple[str | None, str]:
        async with (
            ReplayServer(speed=float("inf"), start_index=0, stop_index=2) as server,
            connect(f"{server.url}/stream?streams={BTC}") as ws,
        ):
            message = await asyncio.wait_for(ws.recv(), TIMEOUT_S)
            return ws.response.headers.get("Sec-WebSocket-Extensions"), str(message)

    extensions, message = asyncio.run(run())
    assert extensions is None
    assert json.loads(message)["stream"] == BTC
