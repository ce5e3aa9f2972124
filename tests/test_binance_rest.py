"""The Binance REST client against a real HTTP server on 127.0.0.1 serving real captures."""

# The loopback fixtures are imported, so their names reappear as test parameters.
# ruff: noqa: F811

from __future__ import annotations

import logging
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import diskcache
import pandas as pd
import pytest
from loopback_binance import (  # noqa: F401 (pytest fixtures)
    EXCHANGE_INFO_2021,
    EXCHANGE_INFO_LEGACY,
    FakeTime,
    Fault,
    LoopbackBinance,
    binance_server,
    fake_time,
)

from config.settings import BinanceSettings
from core.errors import UserError
from market.binance_rest import (
    BinanceBanned,
    BinanceRequestError,
    BinanceRestClient,
    BinanceUnavailable,
    UnknownSymbolError,
)
from market.models import CANDLE_COLUMNS
from market.rest_client import ProgressFailed
from market.sample import load_sample

MINUTE_MS = 60_000
FIRST_OPEN = 1_761_711_720_000  # the bundled sample's first bar, 2025-10-29 04:22 UTC
LAST_OPEN = 1_761_970_860_000  # and its last, 2025-11-01 04:21 UTC
KLINES = "/api/v3/klines"
TIME = "/api/v3/time"

MakeClient = Callable[..., BinanceRestClient]


@pytest.fixture
def make_client(binance_server: LoopbackBinance, fake_time: FakeTime) -> Iterator[MakeClient]:
    """A client on the loopback server with the fake clock and sleep; settings overridable."""
    opened: list[BinanceRestClient] = []

    def make(cache_dir: Path | None = None, **overrides: object) -> BinanceRestClient:
        settings = BinanceSettings(base_url=binance_server.base_url, **overrides)
        client = BinanceRestClient(
            settings, cache_dir=cache_dir, clock=fake_time.time, sleep=fake_time.sleep
        )
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def _sample_rows(start: int, count: int) -> pd.DataFrame:
    sample = load_sample("BTCUSDT")
    first = int(sample.index[sample["open_time"] == start][0])
    return sample.iloc[first : first + count].reset_index(drop=True)


def test_klines_paginate_past_1000_rows_into_unique_contiguous_sample_rows(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
) -> None:
    pages: list[int] = []
    end = FIRST_OPEN + 2499 * MINUTE_MS

    bars = make_client().klines("btcusdt", "1m", FIRST_OPEN, end, on_page=pages.append)

    assert binance_server.count(KLINES) == 3
    starts = [int(r.params["startTime"]) for r in binance_server.received]
    assert starts == [FIRST_OPEN, FIRST_OPEN + 1000 * MINUTE_MS, FIRST_OPEN + 2000 * MINUTE_MS]
    assert {r.params["limit"] for r in binance_server.received} == {"1000"}
    assert pages == [1000, 2000, 2500]
    assert list(bars.columns) == list(CANDLE_COLUMNS)
    assert len(bars) == 2500 and bars["open_time"].is_unique
    assert (bars["open_time"].diff().dropna() == MINUTE_MS).all()
    pd.testing.assert_frame_equal(bars, _sample_rows(FIRST_OPEN, 2500), check_exact=True)


def test_exactly_1000_rows_take_one_request(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
) -> None:
    bars = make_client().klines("BTCUSDT", "1m", FIRST_OPEN, FIRST_OPEN + 999 * MINUTE_MS)
    assert len(bars) == 1000
    assert binance_server.count(KLINES) == 1


def test_a_bar_still_forming_is_left_out(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
    fake_time: FakeTime,
) -> None:
    fake_time.now = (LAST_OPEN + 30_000) / 1000  # half-way through the sample's last bar
    bars = make_client().klines("BTCUSDT", "1m", LAST_OPEN - 9 * MINUTE_MS, LAST_OPEN)
    assert len(bars) == 9
    assert bars["open_time"].iloc[-1] == LAST_OPEN - MINUTE_MS
    assert (bars["close_time"] < LAST_OPEN + 30_000).all()


def test_klines_for_days_covers_the_days_before_end(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
) -> None:
    end = LAST_OPEN + MINUTE_MS
    bars = make_client().klines_for_days("BTCUSDT", "1m", 1, end_ms=end)
    assert len(bars) == 1440
    assert bars["open_time"].iloc[0] == end - 86_400_000
    assert bars["open_time"].iloc[-1] == LAST_OPEN
    with pytest.raises(UserError, match="days"):
        make_client().klines_for_days("BTCUSDT", "1m", 0)


def test_depth_snapshot_from_the_capture(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
) -> None:
    client = make_client()
    book = client.depth("BTCUSDT", limit=10)
    assert book.last_update_id == 14527958487
    assert book.bids[0] == (60650.0, 0.00213)
    assert book.asks[0] == (60650.01, 0.61982)
    assert len(book.bids) == len(book.asks) == 10
    assert book.bids[0][0] < book.asks[0][0]
    assert [p for p, _ in book.bids] == sorted((p for p, _ in book.bids), reverse=True)
    assert binance_server.received[-1].params == {"symbol": "BTCUSDT", "limit": "10"}
    assert client.used_weight == binance_server.weight == 5


def test_exchange_info_2024_rules_and_json_encoded_symbols(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
) -> None:
    rules = make_client().exchange_info(["BTCUSDT", "ethusdt"])
    assert binance_server.received[-1].params == {"symbols": '["BTCUSDT","ETHUSDT"]'}
    btc = rules["BTCUSDT"]
    assert btc.tick_size == Decimal("0.01")
    assert btc.step_size == Decimal("0.00001")
    assert btc.min_notional == Decimal("5")
    assert rules["ETHUSDT"].step_size == Decimal("0.0001")


@pytest.mark.parametrize("capture", [EXCHANGE_INFO_LEGACY, EXCHANGE_INFO_2021])
def test_exchange_info_legacy_min_notional(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
    capture: Path,
) -> None:
    binance_server.exchange_info = capture
    rules = make_client().exchange_info()
    assert set(rules) == {"BTCUSDT", "ETHUSDT"}
    assert rules["BTCUSDT"].min_notional == Decimal("10")
    assert rules["BTCUSDT"].max_notional is None
    assert binance_server.received[-1].params == {}


def test_server_time(binance_server: LoopbackBinance, make_client: MakeClient) -> None:
    assert abs(make_client().server_time() - time.time() * 1000) < 5_000


def test_429_waits_retry_after_then_succeeds(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
    fake_time: FakeTime,
) -> None:
    binance_server.script(Fault(429, {"Retry-After": "2"}))
    assert make_client().server_time() > 0
    assert fake_time.sleeps == [2.0]
    assert binance_server.count(TIME) == 2


def test_429_retry_after_above_the_cap_is_clamped(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
    fake_time: FakeTime,
) -> None:
    binance_server.script(Fault(429, {"Retry-After": "120"}))
    make_client(max_retry_after_s=5).server_time()
    assert fake_time.sleeps == [5.0]


def test_429_past_max_retries_is_unavailable(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
    fake_time: FakeTime,
) -> None:
    binance_server.script(*[Fault(429, {"Retry-After": "1"})] * 3)
    with pytest.raises(BinanceUnavailable, match="429"):
        make_client(max_retries=2).server_time()
    assert binance_server.count(TIME) == 3
    assert fake_time.sleeps == [1.0, 1.0]


def test_418_bans_every_call_without_a_request_until_the_ban_ends(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
    fake_time: FakeTime,
) -> None:
    binance_server.script(Fault(418, {"Retry-After": "300"}))
    client = make_client()
    with pytest.raises(BinanceBanned, match=r"ends at 2025-11-01 05:05:30 UTC") as banned:
        client.server_time()
    assert isinstance(banned.value, BinanceUnavailable)  # callers fall back to local data
    assert binance_server.count() == 1 and fake_time.sleeps == []

    fake_time.now += 299
    with pytest.raises(BinanceBanned, match=r"05:05:30 UTC \(in 1 s\)"):
        client.klines("BTCUSDT", "1m", FIRST_OPEN, FIRST_OPEN)
    with pytest.raises(BinanceBanned):
        client.depth("BTCUSDT")
    assert binance_server.count() == 1

    fake_time.now += 2
    assert len(client.klines("BTCUSDT", "1m", FIRST_OPEN, FIRST_OPEN)) == 1
    assert binance_server.count() == 2


def test_500_then_success(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
    fake_time: FakeTime,
) -> None:
    binance_server.script(Fault(500), Fault(503))
    bars = make_client().klines("BTCUSDT", "1m", FIRST_OPEN, FIRST_OPEN + 4 * MINUTE_MS)
    assert len(bars) == 5
    assert binance_server.count(KLINES) == 3
    assert len(fake_time.sleeps) == 2 and all(0 < s <= 30 for s in fake_time.sleeps)


def test_timeout_is_retried_then_succeeds(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
) -> None:
    client = make_client(timeout_s=0.2)
    binance_server.script(Fault(delay_s=3.0))
    began = time.monotonic()
    assert client.server_time() > 0
    assert binance_server.count(TIME) == 2
    assert time.monotonic() - began < 2.0  # gave up on the slow reply, did not wait it out


def test_persistent_timeout_is_unavailable_naming_url_and_cause(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
) -> None:
    client = make_client(timeout_s=0.2, max_retries=1)
    binance_server.delay_s = 3.0
    began = time.monotonic()
    with pytest.raises(BinanceUnavailable) as unavailable:
        client.server_time()
    assert time.monotonic() - began < 2.0
    assert binance_server.base_url in str(unavailable.value)
    assert "ReadTimeout" in str(unavailable.value)
    assert binance_server.count(TIME) == 2


def test_unknown_symbol_is_a_user_error_naming_it_and_not_retried(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
    fake_time: FakeTime,
) -> None:
    client = make_client()
    with pytest.raises(UnknownSymbolError, match="FOOBARUSDT") as unknown:
        client.klines("FOOBARUSDT", "1m", FIRST_OPEN, FIRST_OPEN)
    assert isinstance(unknown.value, UserError) and unknown.value.exit_code == 2
    assert unknown.value.code == -1121 and unknown.value.msg == "Invalid symbol."
    assert binance_server.count(KLINES) == 1 and fake_time.sleeps == []

    with pytest.raises(UnknownSymbolError, match="among BTCUSDT, NOPEUSDT"):
        client.exchange_info(["BTCUSDT", "NOPEUSDT"])


def test_other_4xx_is_a_typed_request_error_with_binance_code(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
) -> None:
    with pytest.raises(BinanceRequestError, match="-1120") as refused:
        make_client().klines("BTCUSDT", "5m", FIRST_OPEN, FIRST_OPEN)  # the loopback has 1m only
    assert not isinstance(refused.value, UserError)
    assert (refused.value.status, refused.value.code) == (400, -1120)
    assert binance_server.count(KLINES) == 1


def test_weight_over_budget_waits_for_the_next_minute(
    binance_server: LoopbackBinance,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    requests_when_waiting: list[int] = []

    def sleep(seconds: float) -> None:
        requests_when_waiting.append(binance_server.count())
        fake_time.sleep(seconds)

    binance_server.weight = 4990  # other programs on this IP used most of the minute
    settings = BinanceSettings(base_url=binance_server.base_url)  # budget 6000 * 0.8 = 4800
    with BinanceRestClient(settings, clock=fake_time.time, sleep=sleep) as client:
        client.server_time()
        assert client.used_weight == 4991
        assert client.used_weights == {"1m": 4991}
        assert fake_time.sleeps == []
        with caplog.at_level(logging.WARNING, logger="market.binance_rest"):
            client.server_time()
    assert fake_time.sleeps == [30.0]  # the clock stood at hh:mm:30
    assert requests_when_waiting == [1]  # the wait came before the second request
    assert binance_server.count(TIME) == 2
    assert "waiting 30.0 s for the next minute" in caplog.text


def test_weight_under_budget_or_from_a_past_minute_does_not_wait(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
    fake_time: FakeTime,
) -> None:
    client = make_client()
    client.server_time()
    client.server_time()
    binance_server.weight = 5000
    client.server_time()
    fake_time.now += 60  # the next minute: Binance has reset the count
    assert client.used_weight == 0
    client.server_time()
    assert fake_time.sleeps == []


def test_second_identical_fetch_is_served_from_the_disk_cache(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
    tmp_path: Path,
) -> None:
    end = FIRST_OPEN + 2499 * MINUTE_MS
    first = make_client(cache_dir=tmp_path).klines("BTCUSDT", "1m", FIRST_OPEN, end)
    assert binance_server.count() == 3
    pages: list[int] = []
    again = make_client(cache_dir=tmp_path).klines(
        "BTCUSDT", "1m", FIRST_OPEN, end, on_page=pages.append
    )
    assert binance_server.count() == 3
    assert pages == [1000, 2000, 2500]
    pd.testing.assert_frame_equal(again, first, check_exact=True)
    with sqlite3.connect(tmp_path / "cache.db") as db:
        modes = [mode for (mode,) in db.execute("SELECT mode FROM Cache")]
    assert len(modes) == 3 and diskcache.core.MODE_PICKLE not in modes  # JSON, never pickle


def test_a_page_with_a_bar_still_forming_is_not_cached(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
    fake_time: FakeTime,
    tmp_path: Path,
) -> None:
    client = make_client(cache_dir=tmp_path)
    start = LAST_OPEN - 999 * MINUTE_MS  # one full page, ending with the sample's last bar
    fake_time.now = (LAST_OPEN + 30_000) / 1000  # half-way through that bar
    assert len(client.klines("BTCUSDT", "1m", start, LAST_OPEN)) == 999
    assert len(client.klines("BTCUSDT", "1m", start, LAST_OPEN)) == 999
    assert binance_server.count(KLINES) == 2

    fake_time.now = (LAST_OPEN + MINUTE_MS) / 1000  # the last bar has closed
    assert len(client.klines("BTCUSDT", "1m", start, LAST_OPEN)) == 1000
    assert len(client.klines("BTCUSDT", "1m", start, LAST_OPEN)) == 1000
    assert binance_server.count(KLINES) == 3


def test_a_window_reaching_past_now_is_not_cached(
    binance_server: LoopbackBinance,
    make_client: MakeClient,
    fake_time: FakeTime,
    tmp_path: Path,
) -> None:
    """Every bar returned is closed, but bars of the window still to come would be missing."""
    client = make_client(cache_dir=tmp_path)
    fake_time.now = (LAST_OPEN + 90_000) / 1000
    start, end = LAST_OPEN - 9 * MINUTE_MS, LAST_OPEN + 10 * MINUTE_MS
    assert len(client.klines("BTCUSDT", "1m", start, end)) == 10
    assert len(client.klines("BTCUSDT", "1m", start, end)) == 10
    assert binance_server.count(KLINES) == 2


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_unavailable_quickly() -> None:
    base_url = f"http://127.0.0.1:{_closed_port()}"
    with BinanceRestClient(BinanceSettings(base_url=base_url)) as client:
        began = time.monotonic()
        with pytest.raises(BinanceUnavailable) as unavailable:
            client.klines("BTCUSDT", "1m", FIRST_OPEN, FIRST_OPEN)
        assert time.monotonic() - began < 1.0
    assert f"cannot connect to Binance at {base_url}" in str(unavailable.value)


def test_connection_refused_is_not_retried(fake_time: FakeTime) -> None:
    """An offline machine falls back to local data at once instead of backing off."""
    settings = BinanceSettings(base_url=f"http://127.0.0.1:{_closed_port()}", max_retries=4)
    with (
        BinanceRestClient(settings, clock=fake_time.time, sleep=fake_time.sleep) as client,
        pytest.raises(BinanceUnavailable, match="cannot connect"),
    ):
        client.server_time()
    assert fake_time.sleeps == []


def test_a_failing_progress_callback_is_our_bug_not_an_unreadable_reply(
    binance_server: LoopbackBinance, make_client: MakeClient
) -> None:
    """A reply of the wrong shape is Binance being unusable; the same exception raised by the
    caller's own progress callback is not, and must not be reported as Binance's."""

    def broken(rows: int) -> None:
        raise TypeError("the progress bar was given a bad total")

    with pytest.raises(ProgressFailed, match="bad total") as raised:
        make_client().klines("BTCUSDT", "1m", FIRST_OPEN, FIRST_OPEN, on_page=broken)
    assert not isinstance(raised.value, BinanceUnavailable)
    assert isinstance(raised.value.__cause__, TypeError)
