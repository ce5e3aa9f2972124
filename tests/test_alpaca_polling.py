"""The Alpaca bar poller: which bar has closed by Alpaca's clock, and, against a loopback
market whose clock moves a bar per question, every bar of the file once, in order, with the
nights and the weekend crossed without a request for bars that cannot exist yet."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st
from loopback_alpaca_market import AlpacaMarket

from venues.alpaca.data import AlpacaData, AlpacaKeys
from venues.alpaca.polling import AlpacaBarPoller, last_closed_open

KEYS = AlpacaKeys(key_id="PKTEST", secret="not-a-secret")
STEPS = st.sampled_from([60_000, 900_000, 3_600_000])


@given(now=st.integers(0, 2**42), step=STEPS, settle=st.integers(0, 60_000))
def test_the_newest_closed_bar_closed_before_now_and_the_next_one_has_not(now, step, settle):
    opens = last_closed_open(now, step, settle)
    assert opens % step == 0
    assert opens + step <= now - settle < opens + 2 * step


def test_the_poller_yields_every_bar_once_in_order() -> None:
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    async def collect(market: AlpacaMarket, count: int) -> list[int]:
        api = AlpacaData(KEYS, data_url=market.url, trading_url=market.url)
        poller = AlpacaBarPoller(
            api, ["EA"], "15m", after_ms=None, settle_s=0, max_wait_s=3600, sleep=no_wait
        )
        seen = []
        async for bar in poller:
            seen.append(bar.open_time)
            if len(seen) == count:
                return seen
        return seen

    with AlpacaMarket() as market:
        count = len(market.bars)
        seen = asyncio.run(collect(market, count))
    expected = [int(t.value // 1_000_000) for t in market.bars["t"]]
    assert seen == expected
    assert 900.0 in waits  # open: until the next 15-minute bar has closed
    assert max(waits) == 3600  # closed overnight: towards the open, at most max_wait_s
