"""The Alpaca bar poller: which bar has closed by Alpaca's clock, and, against a loopback
market whose clock moves a bar per question, every bar of the file once, in order, waiting
towards the open while the market is shut; a failed poll is retried and reported, and
MAX_FAILURES in a row end the feed."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from loopback_alpaca_market import AlpacaMarket

from market.binance_ws import Bar, MarketClosed, Reconnected
from venues.alpaca.data import AlpacaData, AlpacaError, AlpacaKeys
from venues.alpaca.polling import MAX_FAILURES, AlpacaBarPoller, last_closed_open

KEYS = AlpacaKeys(key_id="PKTEST", secret="not-a-secret")
STEPS = st.sampled_from([60_000, 900_000, 3_600_000])


@given(now=st.integers(0, 2**42), step=STEPS, settle=st.integers(0, 60_000))
def test_the_newest_closed_bar_closed_before_now_and_the_next_one_has_not(now, step, settle):
    opens = last_closed_open(now, step, settle)
    assert opens % step == 0
    assert opens + step <= now - settle < opens + 2 * step


async def collect(market: AlpacaMarket, count: int, waits: list[float]) -> list[object]:
    """A poller's events on `market` up to its `count`th bar or reconnect (heartbeats are kept
    but not counted), its sleeps kept instead of slept."""

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    api = AlpacaData(KEYS, data_url=market.url, trading_url=market.url)
    poller = AlpacaBarPoller(
        api, ["EA"], "15m", after_ms=None, settle_s=0, max_wait_s=3600, sleep=no_wait
    )
    seen: list[object] = []
    async for event in poller:
        seen.append(event)
        if sum(not isinstance(e, MarketClosed) for e in seen) == count:
            break
    return seen


@pytest.mark.slow
def test_the_poller_yields_every_bar_once_in_order() -> None:
    waits: list[float] = []
    with AlpacaMarket() as market:
        seen = asyncio.run(collect(market, len(market.bars), waits))
    expected = [int(t.value // 1_000_000) for t in market.bars["t"]]
    assert [bar.open_time for bar in seen if isinstance(bar, Bar)] == expected
    beats = [e for e in seen if isinstance(e, MarketClosed)]
    assert beats and all(b.poll_every_ms <= 3_600_000 for b in beats)  # at least hourly
    monday_open = pd.Timestamp("2026-06-01 13:30", tz="UTC").value // 1_000_000
    assert monday_open in {b.next_open_ms for b in beats}  # the weekend waits for Monday
    assert 900.0 in waits  # open: until the next 15-minute bar has closed
    assert max(waits) == 3600  # closed overnight: towards the open, at most max_wait_s


def test_failed_polls_are_retried_and_reported_and_too_many_end_the_feed() -> None:
    with AlpacaMarket() as market:
        market.bars_down = 2
        seen = asyncio.run(collect(market, 4, []))
        market.bars_down = MAX_FAILURES
        with pytest.raises(AlpacaError, match="503"):
            asyncio.run(collect(market, 10, []))
    assert isinstance(seen[0], Reconnected) and seen[0].attempts == 2
    first_three = [int(t.value // 1_000_000) for t in market.bars["t"].iloc[:3]]
    assert [
        bar.open_time for bar in seen[1:] if isinstance(bar, Bar)
    ] == first_three  # none lost to the outage
