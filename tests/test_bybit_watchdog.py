"""Bybit's stream, like Binance's: a socket that stays open but goes quiet is noticed and
reopened, the closed bars it missed are fetched over Bybit's REST before the stream resumes, and
the bars the new socket repeats are not delivered twice. The bars are the real Bybit BTCUSDT 1m
bars of 2022-12-13, sent as Bybit's kline messages and served by the loopback /v5/market/kline."""

from __future__ import annotations

import asyncio
from typing import Any

from loopback_bybit import BybitRest, kline_message, lean_bars
from websockets.asyncio.server import ServerConnection, serve

from config.venues import BybitSettings
from market.binance_ws import Bar, BarGap, Reconnected, rest_backfill
from venues.bybit.rest import BybitRestClient
from venues.bybit.stream import BybitStream, kline_topic

BARS = lean_bars("bybit_spot_BTCUSDT_1m_trade_2022-12-13_lean.csv")[:20]
OPEN = [int(row[0]) for row in BARS]
STALL_AFTER = 10  # the first socket sends bars 0-9, then nothing, yet stays open
RESUME_AT = 15  # the second socket starts at bar 15 (after repeating bar 9): 10-14 are missed


class StallingSocket:
    """Bybit's public socket that goes silent on its first connection."""

    def __init__(self) -> None:
        self.connections = 0
        self.now_ms = 0  # the market's clock: the close of the last bar sent

    async def play(self, ws: ServerConnection) -> None:
        self.connections += 1
        await ws.recv()  # the subscribe op
        rows = BARS[:STALL_AFTER] if self.connections == 1 else [BARS[9], *BARS[RESUME_AT:]]
        for row in rows:
            self.now_ms = max(self.now_ms, int(row[0]) + 60_000)
            await ws.send(kline_message(row))
        await ws.wait_closed()  # silent, but open: only a watchdog notices


async def follow(rest_url: str) -> tuple[list[Any], BybitStream]:
    socket = StallingSocket()
    client = BybitRestClient(BybitSettings(base_url=rest_url, max_retries=0))
    async with serve(socket.play, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        stream = BybitStream(
            [kline_topic("BTCUSDT")],
            url=f"ws://127.0.0.1:{port}/v5/public/spot",
            silence_s=0.3,
            backfill=rest_backfill(client),
            # the market's now: past bar RESUME_AT when it reconnects, then as bars are sent
            clock_ms=lambda: max(OPEN[RESUME_AT] + 60_000, socket.now_ms),
            backoff_base_s=0.01,
        )
        events: list[Any] = []

        async def collect() -> None:
            async for event in stream:
                events.append(event)
                if isinstance(event, Bar) and event.open_time == OPEN[-1]:
                    return

        try:
            await asyncio.wait_for(collect(), 60)  # a guard against a hang, not a timing
        finally:
            await stream.aclose()
            client.close()
    return events, stream


def test_a_silent_bybit_socket_is_reopened_and_its_missed_bars_backfilled() -> None:
    with BybitRest() as rest:
        events, stream = asyncio.run(follow(rest.url))
    bars = [e for e in events if isinstance(e, Bar)]
    assert [b.open_time for b in bars] == OPEN  # every minute once, in order
    assert [b.source for b in bars[10:16]] == ["backfill"] * 6  # 10-14, and 15 before the socket
    assert all(b.source == "stream" for b in bars[:10] + bars[16:])
    assert bars[12].close == float(BARS[12][4])  # the real bar, from REST
    reconnects = [e for e in events if isinstance(e, Reconnected)]
    assert len(reconnects) == 1 and reconnects[0].reason == "stalled: no message for 0.3 s"
    assert not any(isinstance(e, BarGap) for e in events)
    assert stream.stats.stalls == 1
    assert stream.stats.duplicate_bars == 2  # bar 9 and bar 15, sent again by the new socket
    assert stream.stats.backfilled_bars == 6
