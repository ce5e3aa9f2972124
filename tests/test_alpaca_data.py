"""The Alpaca market-data client against a loopback server replaying captured bodies: paging
by next_page_token, the iex feed and the key headers on every call, a crossed pre-market quote
flagged and never priced, snapshots, latest quote and trade, the clock and the calendar."""

from __future__ import annotations

import pandas as pd
import pytest
from loopback_alpaca import LoopbackAlpaca, body

from core.errors import UserError
from venues.alpaca.data import AlpacaData, AlpacaKeys

KEYS = AlpacaKeys(key_id="PKTEST", secret="not-a-secret")


def client(server: LoopbackAlpaca) -> AlpacaData:
    return AlpacaData(KEYS, data_url=server.url, trading_url=server.url)


def test_bars_follow_next_page_token_until_the_last_page() -> None:
    """Page 1 (AAPL ×2) names a token; page 2 (AAPL and TSLA, no token) ends the paging."""
    pages = [
        body("rest_v2_stocks_bars_AAPL_1Day_2022-02-01_limit2.json"),
        body("rest_v2_stocks_bars_AAPL_TSLA_1Day_2022-03-09.json"),
    ]
    with LoopbackAlpaca({"/v2/stocks/bars": pages}) as server:
        bars = client(server).bars(["AAPL", "TSLA"], "1Day", "2022-02-01")
    asked = [q for path, q, _ in server.requests if path == "/v2/stocks/bars"]
    assert len(asked) == 2
    assert "page_token" not in asked[0]
    assert asked[1]["page_token"] == pages[0]["next_page_token"]
    assert all(q["feed"] == "iex" and q["adjustment"] == "raw" for q in asked)
    assert list(bars["AAPL"]["close"]) == [174.61, 175.84, 162.95]
    assert list(bars["TSLA"]["open"]) == [839.0]
    assert bars["AAPL"]["open_time"].is_monotonic_increasing


def test_daily_klines_are_sessions_dated_at_midnight_utc_oldest_first() -> None:
    desc = body("rest_v2_stocks_bars_TSLA_1Day_2023-09_desc_limit3.json")
    last = {"bars": {}, "next_page_token": None}  # the page past the window: empty
    with LoopbackAlpaca({"/v2/stocks/bars": [desc, last]}) as server:
        start = int(pd.Timestamp("2023-09-25", tz="UTC").value // 1_000_000)
        frame = client(server).klines("TSLA", "1d", start, start + 3 * 86_400_000)
    days = pd.to_datetime(frame["open_time"], unit="ms")
    assert list(days.dt.strftime("%Y-%m-%d")) == ["2023-09-25", "2023-09-26", "2023-09-27"]
    assert (days == days.dt.normalize()).all()
    assert list(frame["close"])[-1] == 240.5


def test_a_crossed_pre_market_quote_is_flagged_and_gives_no_price() -> None:
    quotes = body("rest_v2_stocks_quotes_AAPL_2022-03-09_limit2.json")
    latest = body("rest_v2_stocks_quotes_latest_AAPL_2022-03-18.json")
    routes = {"/v2/stocks/quotes": [quotes], "/v2/stocks/quotes/latest": [latest]}
    with LoopbackAlpaca(routes) as server:
        api = client(server)
        pre_market = api.quotes("AAPL", "2022-03-09T09:00:00Z")
        normal = api.latest_quote("AAPL")
    assert pre_market and all(q.crossed and q.mid is None for q in pre_market)
    assert pre_market[0].bid == 159.52 and pre_market[0].ask == 158.65
    assert not normal.crossed and normal.mid == pytest.approx((161.1 + 161.11) / 2)


def test_snapshot_latest_trade_clock_and_calendar() -> None:
    routes = {
        "/v2/stocks/snapshots": [body("rest_v2_stocks_snapshots_AAPL_2022-03-18.json")],
        "/v2/stocks/trades/latest": [body("rest_v2_stocks_trades_latest_AAPL_IEX_2022-03-18.json")],
        "/v2/clock": [body("rest_broker_v1_clock_2022-05-16.json")],
        "/v2/calendar": [body("rest_broker_v1_calendar_2022-05-16_17.json")],
    }
    with LoopbackAlpaca(routes) as server:
        api = client(server)
        snap = api.snapshot("AAPL")
        trade = api.latest_trade("AAPL")
        clock = api.clock()
        days = api.calendar("2022-05-16", "2022-05-17")
        rules = api.rules(["AAPL"])
    assert snap.trade.price == 161.1998 and snap.quote.mid == pytest.approx(161.195)
    assert snap.prev_daily_bar["c"] == 160.62
    assert trade.price == 161.2958
    assert not clock.is_open and clock.next_open == pd.Timestamp("2022-05-17 13:30", tz="UTC")
    assert [(d.open.hour, d.close.hour, d.session_open.hour) for d in days] == [(13, 20, 8)] * 2
    assert str(rules["AAPL"].tick_size) == "0.01" and rules["AAPL"].step_size == 1
    for _path, _query, headers in server.requests:
        assert headers["APCA-API-KEY-ID"] == "PKTEST"


def test_keys_come_from_the_environment_or_the_run_stops_saying_which() -> None:
    with pytest.raises(UserError, match="APCA_API_SECRET_KEY"):
        AlpacaKeys.from_env({"APCA_API_KEY_ID": "PK"})
    keys = AlpacaKeys.from_env({"APCA_API_KEY_ID": "PK", "APCA_API_SECRET_KEY": "s3cr3t"})
    assert "s3cr3t" not in repr(keys)
