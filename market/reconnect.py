"""The reconnect loop both venues' market streams share (Binance's combined stream, Bybit's
public socket): why a socket dropped, when to give up, how long to back off, and the watchdog
that drops a socket gone silent. What is subscribed and how messages parse stay per venue."""

from __future__ import annotations

import asyncio
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Self, TypedDict, TypeVar, Unpack

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

log = logging.getLogger(__name__)

E = TypeVar("E")


class StreamUnavailable(Exception):
    """The stream could not be (re)opened within the allowed attempts."""


class StreamSilent(Exception):
    """Nothing arrived for longer than the watchdog allows: the socket is open but dead."""


DROPPED = (ConnectionClosed, StreamSilent, OSError, TimeoutError, InvalidHandshake)


def drop_reason(exc: BaseException) -> str:
    """Why a socket ended, as the `Reconnected` event and the log say it."""
    if isinstance(exc, ConnectionClosed):
        return f"connection lost: {exc}"
    if isinstance(exc, StreamSilent):
        return str(exc)
    return f"cannot connect: {type(exc).__name__}: {exc}"


def backoff_delay(attempt: int, base_s: float, max_s: float, rand: float) -> float:
    """Exponential backoff with jitter: base·2^attempt capped at max_s, scaled into [½, 1] by
    `rand` in [0, 1), so clients that failed together do not come back together."""
    return min(max_s, base_s * 2.0**attempt) * (0.5 + 0.5 * rand)


@dataclass(slots=True)
class FeedStats:
    """Counters an operator reads to trust (or distrust) a feed."""

    connections: int = 0
    messages: int = 0
    malformed: int = 0
    ignored: int = 0
    bars: int = 0
    duplicate_bars: int = 0
    backfilled_bars: int = 0
    backfill_failures: int = 0
    missing_bars: int = 0
    refused_bars: int = 0  # bars no market could print (NaN, a price of 0), dropped
    stalls: int = 0  # connections the watchdog gave up on


class Reconnect(TypedDict, total=False):
    """How a stream comes back: backoff base and cap, attempts before giving up (None:
    never), the sleep and randomness a test injects, and the watchdog's silence limit."""

    backoff_base_s: float
    backoff_max_s: float
    max_attempts: int | None
    sleep: Callable[[float], Awaitable[None]]
    random_source: Callable[[], float]
    silence_s: float | None


class ReconnectingStream(ABC, Generic[E]):
    """`async with stream as s: async for event in s` until the consumer stops; `_run` is the
    venue's connection loop, built on `_back_off` and `_next_message`."""

    def __init__(self, url: str, stats: FeedStats, **reconnect: Unpack[Reconnect]) -> None:
        self.url = url
        self.stats = stats
        self._base = reconnect.get("backoff_base_s", 1.0)
        self._cap = reconnect.get("backoff_max_s", 60.0)
        self._max_attempts = reconnect.get("max_attempts")
        self._sleep = reconnect.get("sleep", asyncio.sleep)
        self._random = reconnect.get("random_source", random.random)
        self._silence = reconnect.get("silence_s")  # a socket quiet this long is reopened
        self._events: AsyncGenerator[E, None] | None = None
        self._failures = 0  # failed attempts since the last message arrived
        self._socket: ClientConnection | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[E]:
        if self._events is None:
            self._events = self._run()
        return self._events

    async def aclose(self) -> None:
        """Close the socket now, rather than when the generator is garbage-collected. It is
        aborted: a consumer that stopped reading leaves frames unread, and a close handshake
        would wait behind them for its timeout; market data has nothing to flush."""
        if self._socket is not None:
            self._socket.transport.abort()
        if self._events is not None:
            await self._events.aclose()

    @abstractmethod
    def _run(self) -> AsyncGenerator[E, None]: ...

    async def _back_off(self, reason: str) -> None:
        """Wait before the next attempt, longer after each failure; give up after
        `max_attempts` failures in a row."""
        failures = self._failures
        if self._max_attempts is not None and failures >= self._max_attempts:
            raise StreamUnavailable(
                f"{self.url}: gave up after {failures} reconnection attempt(s); last: {reason}"
            )
        delay = backoff_delay(failures, self._base, self._cap, self._random())
        self._failures = failures + 1
        log.warning(
            "%s: %s; reconnecting in %.2f s (attempt %d)", self.url, reason, delay, failures + 1
        )
        await self._sleep(delay)

    async def _next_message(
        self, ws: ClientConnection, remaining: float | None = None
    ) -> str | bytes | None:
        """The next message, or None once `remaining` (a planned age limit) runs out. A peer
        silent past the watchdog is dropped: it would not answer a close handshake either."""
        limits = [t for t in (remaining, self._silence) if t is not None]
        wait = min(limits) if limits else None
        try:
            async with asyncio.timeout(wait):
                return await ws.recv()
        except TimeoutError:
            if remaining is not None and wait == remaining:
                return None
            self.stats.stalls += 1
            ws.transport.abort()
            raise StreamSilent(f"stalled: no message for {wait:g} s") from None
        except asyncio.CancelledError:
            ws.transport.abort()  # as in aclose: a close handshake would wait behind unread frames
            raise
