"""What every exchange's REST client shares: one connection pool at a base URL, an
injected clock and sleep (so loopback tests never wait), closing it on `with` exit, and the
one retry loop each venue's requests go through."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt


class Transient(Exception):
    """A failure another attempt may cure; `wait_s` when the server said how long to wait."""

    def __init__(self, cause: str, wait_s: float | None = None) -> None:
        super().__init__(cause)
        self.wait_s = wait_s


class RestClient:
    """The connection pool and the injected clock a venue's REST client runs on."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._clock = clock
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            headers={"Accept": "application/json"},
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _retried(
        self,
        send: Callable[[], Any],
        *,
        venue: str,
        what: str,
        attempts: int,
        wait: Callable[[RetryCallState], float],
        unavailable: Callable[[str], Exception],
        before_sleep: Callable[[RetryCallState], None] | None = None,
        chain: bool = True,
    ) -> Any:
        """`send()` until it stops raising Transient, at most `attempts` times; then the venue's
        `unavailable` error. `chain=False` when the failure may hold a signed request's key."""
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait,
            retry=retry_if_exception_type(Transient),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(send)
        except Transient as exc:
            raise unavailable(
                f"{venue} at {self.base_url} is unavailable: {what} failed {attempts} time(s), "
                f"last with {exc}"
            ) from (exc if chain else None)
