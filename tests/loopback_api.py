"""The REST API on a real uvicorn on 127.0.0.1, in a thread of the test process, with the store
and settings of a fresh offline data directory; and the replay server's REST endpoint beside it."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
import websockets
from fastapi import FastAPI

from market.replay_server import ReplayServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server(uvicorn.Server):
    """uvicorn's server, told when it started and when to stop instead of looking every 0.1 s:
    a test's wait for each was most of a short API test's setup and teardown."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self._stopped: asyncio.Future[None] | None = None

    async def main_loop(self) -> None:
        await self.on_tick(0)  # the Date and Server headers every response carries
        self._stopped = asyncio.get_running_loop().create_future()
        self.ready.set()
        await self._stopped

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown without its fixed 0.1 s pause (a tenth of a second at every API
        test's teardown): the listeners close, each connection is asked to close, and they and
        the app's tasks are waited for every 5 ms (10 s at most), then the lifespan ends."""
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        async with asyncio.timeout(10):
            while self.server_state.connections or self.server_state.tasks:
                await asyncio.sleep(0.005)
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        stopped = self._stopped
        if stopped is not None:
            loop.call_soon_threadsafe(lambda: stopped.done() or stopped.set_result(None))


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """The app's base URL while a uvicorn server runs it on a free loopback port."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    server = _Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    while not server.ready.wait(0.01):
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.stop(loop)
        thread.join(timeout=10)
        loop.close()


async def _market_moves(replay: ReplayServer) -> None:
    """Start the replay's market and wait until its book has both sides (a replayed stretch
    starts from an empty book and can be one-sided for its first messages)."""
    await replay.start()
    async with websockets.connect(f"{replay.url}/stream?streams=btcusdt@depth@100ms") as ws:
        for _ in range(200):
            await ws.recv()
            book = replay.depth["BTCUSDT"].snapshot(5)
            if book["bids"] and book["asks"]:
                return
    raise RuntimeError("the replayed book never had both sides")


@contextmanager
def replay_rest() -> Iterator[str]:
    """The loopback replay server's REST base URL (`GET /api/v3/depth` from real captures), its
    market already moving."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    replay = ReplayServer(speed=600)
    asyncio.run_coroutine_threadsafe(_market_moves(replay), loop).result(timeout=60)
    try:
        yield replay.http_url
    finally:
        asyncio.run_coroutine_threadsafe(replay.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
