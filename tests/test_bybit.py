"""Bybit v5 spot against a loopback exchange replaying real captures: rules from the real
instruments-info, a day of real 1m bars paged as Bybit pages them, its retCodes, and the book
rebuilt from the recorded snapshot and deltas, through a gap that forces a resubscribe."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest

from config.venues import BybitSettings
from core.errors import UserError
from market.binance_ws import Bar
from market.books import Books
from market.rest_client import ProgressFailed
from tests.loopback_bybit import DAY_2022_12_13_MS, BybitRest, BybitSocket, Fault, lean_bars
from venues.bybit.rest import BybitAuthError, BybitRestClient, BybitUnavailable
from venues.bybit.stream import BybitStream, PublicTrade, book_topic, kline_topic, trade_topic

LAST_U = 62_505_723  # the recording's last orderbook delta
AFTER_2022_S = 1_700_000_000.0


@pytest.fixture
def rest():
    with BybitRest() as server:
        yield server


def client(rest: BybitRest, sleeps: list[float] | None = None, retries: int = 2):
    settings = BybitSettings(base_url=rest.url, max_retries=retries)
    sink = sleeps if sleeps is not None else []
    return BybitRestClient(settings, clock=lambda: AFTER_2022_S, sleep=sink.append)


def test_rules_come_from_the_real_instruments_info(rest: BybitRest) -> None:
    with client(rest) as bybit:
        rules = bybit.rules(["btcusdt", "ETHUSDT"])
        everything = bybit.rules()
    btc = rules["BTCUSDT"]
    assert (btc.tick_size, btc.step_size, btc.min_notional) == (
        Decimal("0.1"),
        Decimal("0.000001"),
        Decimal("5"),
    )
    assert (btc.base_asset, btc.quote_asset, btc.status) == ("BTC", "USDT", "TRADING")
    assert rules["ETHUSDT"].tick_size == Decimal("0.01")
    assert len(everything) == 557


def test_unknown_symbol_is_a_user_error(rest: BybitRest) -> None:
    with client(rest) as bybit, pytest.raises(UserError, match="NOPEUSDT"):
        bybit.rules(["NOPEUSDT"])


def test_a_day_of_real_bars_comes_back_in_two_pages_oldest_first(rest: BybitRest) -> None:
    pages: list[int] = []
    end = DAY_2022_12_13_MS + 86_400_000 - 60_000
    with client(rest) as bybit:
        bars = bybit.klines("BTCUSDT", "1m", DAY_2022_12_13_MS, end, on_page=pages.append)
    real = lean_bars("bybit_spot_BTCUSDT_1m_trade_2022-12-13_lean.csv")
    assert len(bars) == len(real) and len(pages) == 2
    assert bars["open_time"].is_monotonic_increasing
    assert bars["close"].tolist() == [float(r[4]) for r in real]
    assert (bars["close_time"] - bars["open_time"] == 59_999).all()


def test_rate_limit_waits_for_the_reset_time_bybit_names(rest: BybitRest) -> None:
    reset_ms = int((AFTER_2022_S + 7) * 1000)
    rest.faults.append(
        Fault("/v5/market/kline", 10006, headers={"X-Bapi-Limit-Reset-Timestamp": str(reset_ms)})
    )
    sleeps: list[float] = []
    with client(rest, sleeps) as bybit:
        bars = bybit.klines("BTCUSDT", "1m", DAY_2022_12_13_MS, DAY_2022_12_13_MS + 59 * 60_000)
    assert len(bars) == 60
    assert sleeps == [7.0]


def test_auth_errors_are_never_retried(rest: BybitRest) -> None:
    rest.faults.append(Fault("/v5/market/instruments-info", 10003))
    with client(rest) as bybit, pytest.raises(BybitAuthError, match="10003"):
        bybit.rules(["BTCUSDT"])
    assert len(rest.requests) == 1


def test_server_errors_are_retried_then_reported(rest: BybitRest) -> None:
    rest.faults += [Fault("/v5/market/instruments-info", status=502) for _ in range(3)]
    with client(rest, retries=2) as bybit, pytest.raises(BybitUnavailable, match="HTTP 502"):
        bybit.rules(["BTCUSDT"])
    assert len(rest.requests) == 3


def test_bybits_clock_is_measured_and_this_machines_used_when_bybit_does_not_say(
    rest: BybitRest, caplog: pytest.LogCaptureFixture
) -> None:
    rest.skew_ms = 86_400_000  # a day ahead of this machine, whose clock the client is given
    with client(rest) as bybit:
        assert abs(bybit.server_time() - bybit.exchange_clock()()) < 60_000  # not 2023
        rest.faults.append(Fault("/v5/market/time", 10001))
        assert bybit.exchange_clock()() == AFTER_2022_S * 1000
    assert "Bybit's clock is unknown (Bybit refused GET /v5/market/time" in caplog.text


def recorded_final_book() -> tuple[dict[float, float], dict[float, float]]:
    """The spot book after every recorded message, applied here by hand."""
    from tests.loopback_bybit import session_frames

    sides: dict[str, dict[float, float]] = {"b": {}, "a": {}}
    for message in session_frames():
        if message["topic"].startswith("orderbook."):
            if message["type"] == "snapshot":
                sides = {"b": {}, "a": {}}
            for side in ("b", "a"):
                for price, qty in message["data"][side]:
                    if float(qty):
                        sides[side][float(price)] = float(qty)
                    else:
                        sides[side].pop(float(price), None)
    return sides["b"], sides["a"]


async def replay(socket: BybitSocket) -> tuple[Books, BybitStream, list[Any]]:
    books = Books(None)
    topics = [book_topic("BTCUSDT"), trade_topic("BTCUSDT"), kline_topic("BTCUSDT")]
    stream = BybitStream(topics, url=socket.url, backoff_base_s=0.01)
    others: list[Any] = []
    async with asyncio.timeout(60), stream:
        async for event in stream:
            await books.on_event(event)
            if isinstance(event, Bar | PublicTrade):
                others.append(event)
            [stats] = books.stats()
            if stats.last_update_id == LAST_U:
                break
    return books, stream, others


def book_of(books: Books) -> tuple[dict[float, float], dict[float, float]]:
    quote = books.quote("BTCUSDT", levels=1000)
    assert quote is not None
    return {lv.price: lv.quantity for lv in quote.bids}, {
        lv.price: lv.quantity for lv in quote.asks
    }


def test_the_recorded_session_rebuilds_the_book_bars_and_trades() -> None:
    async def scenario() -> tuple[Books, BybitStream, list[Any], BybitSocket]:
        async with BybitSocket() as socket:
            return (*await replay(socket), socket)

    books, stream, others, socket = asyncio.run(scenario())
    assert book_of(books) == recorded_final_book()
    assert stream.stats.book_gaps == 0 and socket.snapshots_sent == 0
    bars = [e for e in others if isinstance(e, Bar)]
    assert [(b.open_time, b.open, b.close, b.volume) for b in bars] == [
        (1786310760000, 65140.4, 65140.5, 0.15388)
    ]
    assert sum(isinstance(e, PublicTrade) for e in others) == 11
    assert socket.received[0] == {
        "op": "subscribe",
        "args": ["orderbook.200.BTCUSDT", "publicTrade.BTCUSDT", "kline.1.BTCUSDT"],
    }


def test_a_missed_delta_resubscribes_and_the_book_ends_true() -> None:
    async def scenario() -> tuple[Books, BybitStream, BybitSocket]:
        async with BybitSocket(skip_deltas=frozenset({50})) as socket:
            books, stream, _ = await replay(socket)
            return books, stream, socket

    books, stream, socket = asyncio.run(scenario())
    assert stream.stats.book_gaps == 1 and socket.snapshots_sent == 1
    assert {"op": "unsubscribe", "args": ["orderbook.200.BTCUSDT"]} in socket.received
    assert book_of(books) == recorded_final_book()
    [stats] = books.stats()
    assert stats.snapshots == 2


def test_bybit_settings_refuse_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        BybitSettings.model_validate(json.loads('{"base_url": "https://x", "fee": 1}'))


@pytest.mark.slow
def test_agent_data_downloads_a_day_of_bybit_bars_into_the_store(cli, rest: BybitRest) -> None:
    env = {"AGENT_BYBIT__BASE_URL": rest.url}
    args = ("--symbol", "BTCUSDT", "--start", "2022-12-13", "--end", "2022-12-14")
    first = cli("agent-data", "download", "--exchange", "bybit", *args, env=env)
    assert first.returncode == 0, first.stderr
    assert "bybit BTCUSDT 1m: 1,440 closed bars" in first.stdout
    assert "1,440 new in the store" in first.stdout
    listed = cli("agent-data", "list")
    assert any(
        "bybit" in row and "2022-12-13 00:00" in row and "1,440" in row
        for row in listed.stdout.splitlines()
    ), listed.stdout


@pytest.mark.slow
def test_agent_data_says_when_bybit_is_unreachable_or_the_exchange_is_unknown(cli) -> None:
    args = ("--symbol", "BTCUSDT", "--start", "2022-12-13", "--end", "2022-12-14")
    down = cli("agent-data", "download", "--exchange", "bybit", *args)
    assert down.returncode == 1 and "cannot connect to Bybit" in down.stderr
    unknown = cli("agent-data", "download", "--exchange", "kraken", *args)
    assert unknown.returncode == 2
    assert "unknown exchange 'kraken': one of binance, bybit" in unknown.stderr


def test_agent_trade_paper_trades_on_the_bybit_stream(cli, rest: BybitRest) -> None:
    from tests.loopback_bybit import SocketThread

    with SocketThread(BybitSocket()) as socket:
        env = {"AGENT_BYBIT__BASE_URL": rest.url, "AGENT_BYBIT__STREAM_URL": socket.url}
        args = ("--strategy", "sma_cross", "--symbol", "BTCUSDT", "--account", "by")
        run = cli("agent-trade", "--feed", "bybit", *args, "--max-bars", "1", env=env)
    assert run.returncode == 0, run.stderr
    assert "feed: Bybit public market data" in run.stderr
    assert "BTCUSDT from the depth stream" in run.stderr
    assert "1 bars processed" in run.stdout
    assert (
        "/v5/market/instruments-info",
        {"category": "spot", "limit": "1000", "symbol": "BTCUSDT"},
    ) in rest.requests
    listed = cli("agent-data", "list")
    assert any("bybit" in row and "2026-08-09 21:26" in row for row in listed.stdout.splitlines())


def test_a_dropped_connection_reconnects_and_the_book_rebuilds_from_a_new_snapshot() -> None:
    async def scenario() -> tuple[Books, BybitStream, list[Any], BybitSocket]:
        async with BybitSocket(drop_after=120) as socket:
            return (*await replay(socket), socket)

    books, stream, _, socket = asyncio.run(scenario())
    assert socket.connections == 2 and stream.stats.connections == 2
    assert book_of(books) == recorded_final_book()
    [stats] = books.stats()
    assert stats.snapshots == 2


def test_the_stream_pings_bybit_as_its_docs_ask() -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with BybitSocket() as socket:
            stream = BybitStream([book_topic("BTCUSDT")], url=socket.url, ping_interval_s=0.01)
            async with asyncio.timeout(60), stream:
                async for _ in stream:
                    if {"op": "ping"} in socket.received:
                        break
            return socket.received

    assert {"op": "ping"} in asyncio.run(scenario())


def test_a_failing_progress_callback_is_not_reported_as_bybit_s_reply(rest: BybitRest) -> None:
    def broken(rows: int) -> None:
        raise KeyError("total")

    with client(rest) as bybit, pytest.raises(ProgressFailed) as raised:
        bybit.klines("BTCUSDT", "1m", DAY_2022_12_13_MS, DAY_2022_12_13_MS, on_page=broken)
    assert isinstance(raised.value.__cause__, KeyError)
