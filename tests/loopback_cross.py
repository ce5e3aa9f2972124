"""Both venues' books fresh at the same moment on 127.0.0.1, from two real recordings made years
apart at different prices. The transform, applied as messages go out (the fixture files are
never edited):
- Bybit: the recorded spot BTCUSDT session (2026-08-09, 45 s) unchanged but for `ts`, which
  becomes the wall-clock time it is sent at plus `bybit_offset_ms` (negative: a book that is
  old); frames go out every 20 ms.
- Binance: the real Binance.US diff-depth capture (2025-07-13, ~119,000 USDT) through
  market.depth_replay's documented replay, its prices re-anchored multiplicatively onto Bybit's
  first recorded mid × (1 + premium_bps / 10,000), each message stamped with the wall-clock time
  it is sent at; `GET /api/v3/depth` on the same port answers the matching snapshot."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loopback_bybit import BybitSocket, session_frames
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from market.depth_replay import DepthReplay

BINANCE_DEPTH = (
    Path(__file__).parent
    / "fixtures"
    / "binance"
    / "ws_binanceus_btcusdt_depthUpdate_stream_2025-07-13_71msgs.jsonl"
)
STEP_S = 0.02  # one recorded depth message every 20 ms of wall time
BYBIT_PACE_S = 0.02  # the 367 recorded Bybit frames over ~7 s, so its book stays fresh a while


def now_ms() -> int:
    return int(time.time() * 1000)


def bybit_first_mid() -> float:
    snapshot = next(f for f in session_frames() if f["topic"].startswith("orderbook."))
    return (float(snapshot["data"]["b"][0][0]) + float(snapshot["data"]["a"][0][0])) / 2


class BinanceDepth:
    """Binance's combined stream (`btcusdt@depth@100ms`) and `/api/v3/depth` on one port."""

    def __init__(self, anchor: float) -> None:
        messages = [json.loads(line) for line in BINANCE_DEPTH.read_text().splitlines() if line]
        self.replay = DepthReplay("BTCUSDT", messages, lambda _: anchor)
        self._server: Server | None = None
        self._clients: set[ServerConnection] = set()
        self._player: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{next(iter(self._server.sockets)).getsockname()[1]}"

    async def __aenter__(self) -> BinanceDepth:
        self._server = await serve(self._serve, "127.0.0.1", 0, process_request=self._rest)
        self._player = asyncio.create_task(self._play())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._player is not None
        self._player.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._player
        self._server.close()
        await self._server.wait_closed()

    def _rest(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != "/api/v3/depth":
            return None
        limit = int(parse_qs(urlsplit(request.path).query).get("limit", ["100"])[-1])
        body = json.dumps(self.replay.snapshot(limit)).encode()
        headers = Headers([("Content-Type", "application/json")])
        return Response(200, "OK", headers, body)

    async def _serve(self, ws: ServerConnection) -> None:
        self._clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            self._clients.discard(ws)

    async def _play(self) -> None:
        while True:
            await asyncio.sleep(STEP_S)
            if not self._clients:
                continue
            payload = self.replay.next(now_ms())
            frame = json.dumps({"stream": "btcusdt@depth@100ms", "data": payload})
            for ws in list(self._clients):
                with contextlib.suppress(Exception):
                    await ws.send(frame)


class CrossVenue:
    """Both loopback venues on their own event loop in a thread, for a CLI subprocess."""

    def __init__(self, premium_bps: float = 20.0, bybit_offset_ms: int = 0) -> None:
        self.binance = BinanceDepth(bybit_first_mid() * (1 + premium_bps / 10_000))
        self.bybit = BybitSocket(stamp=lambda _: now_ms() + bybit_offset_ms, pace_s=BYBIT_PACE_S)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __enter__(self) -> CrossVenue:
        self._thread.start()
        self._call(self.binance.__aenter__())
        self._call(self.bybit.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self.bybit.__aexit__())
        self._call(self.binance.__aexit__())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def env(self) -> dict[str, str]:
        ws = self.binance.url.replace("http://", "ws://")
        return {
            "AGENT_BINANCE__BASE_URL": self.binance.url,
            "AGENT_BINANCE__STREAM_URL": ws,
            "AGENT_BYBIT__STREAM_URL": self.bybit.url,
        }
