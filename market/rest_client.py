"""What every exchange's REST client shares: one connection pool at a base URL, an
injected clock and sleep (so loopback tests never wait), closing it on `with` exit, the one
retry loop each venue's requests go through, and a public client's GET and kline window."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, Concatenate, ParamSpec, Protocol, Self, TypedDict, TypeVar, Unpack

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from core.errors import UserError, VenueError
from core.plain_http import sync_transport_options
from market.models import interval_ms, iso_ms, parse_symbol

log = logging.getLogger(__name__)
OnPage = Callable[[int], None] | None  # told the number of rows fetched so far, page by page


class Transient(Exception):
    """A failure another attempt may cure; `wait_s` when the server said how long to wait."""

    def __init__(self, cause: str, wait_s: float | None = None) -> None:
        super().__init__(cause)
        self.wait_s = wait_s


class ClientHooks(TypedDict, total=False):
    """What a loopback test injects: a transport, and a clock and sleep that never wait."""

    transport: httpx.BaseTransport | None
    clock: Callable[[], float]
    sleep: Callable[[float], None]


class VenueSettings(Protocol):
    base_url: str
    timeout_s: float
    max_retries: int
    max_retry_after_s: float


def kline_window(symbol: str, interval: str, start_ms: int, end_ms: int) -> tuple[str, int]:
    """The symbol as the venues spell it and the interval in ms, or why the window is wrong."""
    symbol = parse_symbol(symbol)
    step = interval_ms(interval)
    if end_ms < start_ms:
        raise UserError(f"end {iso_ms(end_ms)} UTC is before start {iso_ms(start_ms)} UTC")
    return symbol, step


SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, ArithmeticError)
"""What reading a reply of the wrong shape raises: a field missing, a list empty, text where a
number goes (pydantic's ValidationError is a ValueError, a bad Decimal an ArithmeticError)."""


class Reader(Protocol):
    """A client that says what a reply of the wrong shape is, in its venue's own error."""

    def unreadable(self, what: str, exc: Exception) -> Exception: ...


C = TypeVar("C", bound=Reader)
R = TypeVar("R")
Q = ParamSpec("Q")


def shape(exc: Exception) -> str:
    """One line on a reply's wrong shape, for a log or an error a person reads."""
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r} in it"
    text = str(exc).splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no detail'}" + (
        f" ({text[1].strip()})" if len(text) > 1 else ""
    )


class ProgressFailed(RuntimeError):
    """The caller's progress callback raised: a bug on our side, never the venue's reply."""


def progress(on_page: OnPage) -> OnPage:
    """`on_page` with its own failures told apart: a query under `reads_reply` would otherwise
    report a KeyError or TypeError of the callback as a reply of the wrong shape."""
    if on_page is None:
        return None
    report = on_page

    def told(rows: int) -> None:
        try:
            report(rows)
        except SHAPE_ERRORS as exc:
            raise ProgressFailed(f"the progress callback failed: {exc}") from exc

    return told


def reads_reply(query: Callable[Concatenate[C, Q], R]) -> Callable[Concatenate[C, Q], R]:
    """A query that reads the venue's reply: a reply of the wrong shape is the venue being
    unusable (`RestClient.unreadable`), never a traceback halfway through a command or a
    trading loop."""

    @functools.wraps(query)
    def read(client: C, *args: Q.args, **kwargs: Q.kwargs) -> R:
        try:
            return query(client, *args, **kwargs)
        except SHAPE_ERRORS as exc:
            raise client.unreadable(query.__name__.strip("_"), exc) from None

    return read


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
            headers={"Accept": "application/json"},
            **sync_transport_options(self.base_url, transport),
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

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    unavailable: ClassVar[Callable[[str], Exception]]
    """The venue's own error for being unusable: a VenueError its callers catch."""

    @property
    def venue_label(self) -> str:
        raise NotImplementedError

    def unreadable(self, what: str, exc: Exception) -> Exception:
        """A reply to `what` of the wrong shape, as the venue's unavailability naming what was
        wrong with it."""
        return self.unavailable(
            f"{self.venue_label}'s reply to {what} cannot be read: {shape(exc)}"
        )

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


class PublicClient(RestClient):
    """A venue's public REST client, set up from its settings: GETs retried on transient
    failures, a refused connection reported at once (the machine is offline: fall back now,
    not after the backoff)."""

    venue: ClassVar[str]

    def __init__(self, settings: VenueSettings, **hooks: Unpack[ClientHooks]) -> None:
        super().__init__(settings.base_url, settings.timeout_s, **hooks)
        self._settings = settings
        self._skew_ms = 0  # the venue's clock less this machine's, once `exchange_clock` knows

    @property
    def venue_label(self) -> str:
        return self.venue

    def server_time(self) -> int:
        """The venue's clock in epoch ms."""
        raise NotImplementedError

    def exchange_clock(self) -> Callable[[], int]:
        """The venue's clock in epoch ms: this machine's, corrected by the offset measured now
        against `server_time` (half the round trip taken as the way there), so a bar is judged
        closed or not by the clock that closed it. This machine's clock when the venue does not
        answer."""
        sent = self._now_ms()
        try:
            offset = self.server_time() - (sent + self._now_ms()) // 2
        except VenueError as exc:
            log.warning("%s's clock is unknown (%s): using this machine's", self.venue, exc)
            offset = 0
        self._skew_ms = offset
        return lambda: self._now_ms() + offset

    def _closed_before(self) -> int:
        """A bar whose close is before this is closed by both clocks, this machine's and the
        venue's once measured: a machine clock ahead of the venue's took the bar still
        forming, with its values so far, for a closed one."""
        now = self._now_ms()
        return min(now, now + self._skew_ms)

    def _get_retried(
        self,
        send: Callable[[], Any],
        path: str,
        wait: Callable[[RetryCallState], float],
        before_sleep: Callable[[RetryCallState], None] | None = None,
    ) -> Any:
        return self._retried(
            send,
            venue=self.venue,
            what=f"GET {path}",
            attempts=self._settings.max_retries + 1,
            wait=wait,
            unavailable=self.unavailable,
            before_sleep=before_sleep,
        )

    def _http_get(self, path: str, params: dict[str, Any]) -> httpx.Response:
        try:
            return self._http.get(path, params=params)
        except httpx.ConnectError as exc:
            raise self.unavailable(
                f"cannot connect to {self.venue} at {self.base_url} ({exc})"
            ) from exc
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise Transient(f"{type(exc).__name__}: {exc or 'no detail'}") from exc
