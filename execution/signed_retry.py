"""The retry policy of a signed exchange client, shared by Binance's and Bybit's executors:
what may be sent again, how long to wait, and an order resent only after a status query by
its client order id found it absent, so no retry can double it. Signing, endpoints and
error codes stay with each venue."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypedDict, Unpack

import httpx
from pydantic import SecretStr
from tenacity import RetryCallState

from core.errors import UserError, VenueError
from core.logging import Redactor
from execution.signed_access import Endpoints, signed_access
from market.models import SymbolRules
from market.rest_client import RestClient, Transient

log = logging.getLogger(__name__)


class NotSent(Transient):
    """Refused before it was processed (connect failed, rate limit, clock): resending is safe."""


class MaybeSent(Transient):
    """A timeout, a dropped connection or a server error: it may have been executed."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class SignedOptions(TypedDict, total=False):
    """What a signed executor takes besides its key: live or testnet, a loopback test's URL,
    transport, clock and sleep, and the retry policy."""

    live: bool
    live_confirmed: bool
    base_url: str | None
    transport: httpx.BaseTransport | None
    clock_ms: Callable[[], int]
    sleep: Callable[[float], None]
    timeout_s: float
    recv_window_ms: int
    max_attempts: int
    max_retry_after_s: float
    backoff_s: float


class SignedClient(RestClient, ABC):
    """A venue's signed REST client: credentials, clock offset and the retry policy.
    Subclasses say how to send one request (`_send`) and query one order (`order_status`)."""

    endpoints: ClassVar[Endpoints]
    default_recv_window_ms: ClassVar[int]
    query_errors: ClassVar[tuple[type[Exception], ...]]  # a status query that cannot answer

    def __init__(
        self,
        api_key: str | SecretStr | None,
        api_secret: str | SecretStr | None,
        **options: Unpack[SignedOptions],
    ) -> None:
        live = options.get("live", False)
        access = signed_access(
            self.endpoints, api_key, api_secret, live=live,
            live_confirmed=options.get("live_confirmed", False), base_url=options.get("base_url"),
        )  # fmt: skip
        super().__init__(
            access.base_url,
            options.get("timeout_s", 10.0),
            transport=options.get("transport"),
            sleep=options.get("sleep", time.sleep),
        )
        self.live = live
        self._key, self._secret = access.key, access.secret
        self._redact = Redactor([access.key, access.secret])
        self._rules: dict[str, SymbolRules] = {}
        self._clock_ms = options.get("clock_ms", wall_ms)
        self._recv_window_ms = options.get("recv_window_ms", self.default_recv_window_ms)
        self._max_attempts = max(1, options.get("max_attempts", 4))
        self._max_retry_after_s = options.get("max_retry_after_s", 60.0)
        self._backoff_s = options.get("backoff_s", 0.5)
        self._offset_ms: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r}, base_url={self.base_url!r})"

    @property
    def mode(self) -> str:
        return "live" if self.live else "testnet"

    @property
    def venue_label(self) -> str:
        return self.endpoints.exchange

    def adopt_rules(self, rules: Mapping[str, SymbolRules]) -> None:
        """Rules the caller already holds (the store's daily cache): no per-symbol fetch."""
        self._rules.update(rules)

    @abstractmethod
    def order_status(self, symbol: str, client_order_id: str) -> Any: ...

    @abstractmethod
    def _send(self, method: str, path: str, params: Mapping[str, str], *, signed: bool) -> Any: ...

    @abstractmethod
    def _outcome_unknown(self, message: str, cid: str, symbol: str) -> Exception: ...

    # --- placement ----------------------------------------------------------------------------

    def _place_once(
        self,
        send: Callable[[], Any],
        symbol: str,
        cid: str,
        *,
        rest_after_last: bool,
        name_unknown_cause: bool,
    ) -> Any:
        """`send()` the order; after an unknown outcome, ask the venue whether it exists before
        sending it again (with the same client order id), so a retry never doubles it. Each
        venue keeps its own ending: whether a transient failure of the last attempt still
        waits, and whether the final error names the unknown outcome or the last failure."""
        venue = self.endpoints.exchange
        unknown: str | None = None
        last = "no attempt"
        for attempt in range(1, self._max_attempts + 1):
            try:
                return send()
            except MaybeSent as exc:
                unknown = last = str(exc)
                self._warn(
                    "order %s: outcome unknown (%s); querying its status before any resubmission",
                    cid,
                    exc,
                )
                self._sleep(self._delay(exc, attempt))
                existing = self._existing(symbol, cid)
                if existing is None and attempt < self._max_attempts:
                    # A query can trail its placement: an order taken moments ago may not show
                    # yet, and a resend of a filled one is a second order. Absent twice, a wait
                    # apart, before the same order goes again.
                    self._sleep(self._delay(exc, attempt))
                    existing = self._existing(symbol, cid)
                if existing is not None:
                    self._info(
                        "order %s exists on %s (%s): not resubmitted",
                        cid,
                        venue,
                        existing.status,
                    )
                    return existing
                if attempt < self._max_attempts:
                    self._warn(
                        "order %s does not exist on %s: resubmitting with the same client "
                        "order id (attempt %d of %d)",
                        cid,
                        venue,
                        attempt + 1,
                        self._max_attempts,
                    )
            except Transient as exc:
                last = str(exc)
                if attempt < self._max_attempts or rest_after_last:
                    wait = self._delay(exc, attempt)
                    self._warn("order %s: %s; sending again in %.1f s", cid, exc, wait)
                    self._sleep(wait)
            except VenueError as exc:
                if unknown is None or isinstance(exc, UserError):
                    raise
                return self._resend_refused(symbol, cid, exc, unknown)
        if unknown is not None:
            raise self._outcome_unknown(
                f"{venue} did not confirm order {cid} for {symbol} after "
                f"{self._max_attempts} attempt(s), last with "
                f"{unknown if name_unknown_cause else last}; it was absent at the last "
                "check, but may still appear: reconcile before trading this symbol again",
                cid,
                symbol,
            )
        raise self.unavailable(
            f"{venue} at {self.base_url} did not take order {cid} for {symbol} after "
            f"{self._max_attempts} attempt(s), last with {last}; the order was not placed"
        )

    def _resend_refused(self, symbol: str, cid: str, refusal: VenueError, unknown: str) -> Any:
        """The venue refused a resend, but an earlier send's outcome is unknown: the first may
        have executed (its cash spent, which a refusal for balance would say). Asked for
        again: the order if it exists now, else an unknown outcome, never a rejection."""
        existing = self._existing(symbol, cid)
        if existing is not None:
            self._info(
                "order %s exists on %s: the earlier send executed", cid, self.endpoints.exchange
            )
            return existing
        raise self._outcome_unknown(
            f"{self.endpoints.exchange} refused order {cid} for {symbol} when it was sent again ({refusal}) "
            f"after a send whose outcome is unknown ({unknown}): that one may have executed; "
            "reconcile before trading this symbol again",
            cid,
            symbol,
        )

    def _existing(self, symbol: str, cid: str) -> Any:
        """The status query after an unknown outcome; if it cannot answer, nobody may resend."""
        try:
            return self.order_status(symbol, cid)
        except self.query_errors as exc:
            raise self._outcome_unknown(
                f"order {cid} for {symbol}: the outcome of its placement is unknown and its "
                f"status could not be queried ({exc}); not resubmitted: reconcile before "
                "trading this symbol again",
                cid,
                symbol,
            ) from None

    def settled_status(self, symbol: str, client_order_id: str) -> Any:
        """The order's status with its fills, as a full placement reply would have had them."""
        status = self.order_status(symbol, client_order_id)
        if status is None or status.executed_qty == 0:
            return status
        return status.model_copy(update={"fills": self.order_fills(symbol, status.order_id)})

    @abstractmethod
    def order_fills(self, symbol: str, order_id: int | str) -> Any: ...

    # --- transport ----------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, params: Mapping[str, str], *, signed: bool = True
    ) -> Any:
        """An idempotent request (a query or a cancel), retried on transient failures."""
        return self._retried(
            lambda: self._send(method, path, params, signed=signed),
            venue=self.endpoints.exchange,
            what=f"{method} {path}",
            attempts=self._max_attempts,
            wait=self._wait,
            unavailable=self.unavailable,
            before_sleep=lambda state: self._log_retry(state, f"{method} {path}"),
            chain=False,
        )

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One HTTP exchange; a connection never made may be resent, a lost one may not. httpx
        errors are described, never chained: their request holds the key and signature."""
        try:
            return self._http.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise NotSent(self._describe(exc)) from None
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise MaybeSent(self._describe(exc)) from None

    def _delay(self, exc: Transient, attempt: int) -> float:
        """The venue's own wait when given, else exponential backoff, within the cap."""
        if exc.wait_s is not None:
            return min(exc.wait_s, self._max_retry_after_s)
        return min(self._backoff_s * 2 ** (attempt - 1), self._max_retry_after_s)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        assert isinstance(exc, Transient)  # only a Transient is retried
        return self._delay(exc, state.attempt_number)

    def _log_retry(self, state: RetryCallState, what: str) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self._warn(
            "%s %s: %s; retry %d/%d in %.1f s",
            self.endpoints.exchange,
            what,
            exc,
            state.attempt_number,
            self._max_attempts - 1,
            wait,
        )

    def _describe(self, exc: httpx.HTTPError) -> str:
        return f"{type(exc).__name__}: {self._redact(str(exc)) or 'no detail'}"

    def _warn(self, fmt: str, *args: object) -> None:
        log.warning("%s", self._redact(fmt % args))

    def _info(self, fmt: str, *args: object) -> None:
        log.info("%s", self._redact(fmt % args))
