"""An HTTP client's transport, without a TLS context until one is needed.

httpx makes a client's TLS context (the CA bundle read and parsed, ~20 ms) when the client is
made, before the first request can go. A model or venue served over plain http (llama-server,
vLLM, a loopback replay) never uses it: its requests go out on a plain transport, and only a
request to an https URL (a redirect) gets httpx's own verifying transport, made then. An https
endpoint gets httpx's verifying defaults, with one TLS context for the whole process (each
client made its own). Imported with httpx, when a client is made."""

from __future__ import annotations

import functools
import ssl
import threading
from typing import Any

import httpx


@functools.cache
def verifying_context() -> ssl.SSLContext:
    """httpx's default context (its CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR), made once:
    a context verifies any number of connections, on any thread."""
    return httpx.create_ssl_context()


class _Routes:
    """http requests to the plain transport; any other to httpx's verifying transport of the
    same kind (sync or async), made by the first request that needs it."""

    def __init__(self, plain: Any, make_verifying: Any) -> None:
        self._plain = plain
        self._make_verifying = make_verifying
        self._verifying: Any = None
        self._lock = threading.Lock()

    def pick(self, request: httpx.Request) -> Any:
        if request.url.scheme == "http":
            return self._plain
        with self._lock:
            if self._verifying is None:
                self._verifying = self._make_verifying()
            return self._verifying

    def made(self) -> list[Any]:
        """The transports to close."""
        return [self._plain] + ([] if self._verifying is None else [self._verifying])


class PlainFirst(httpx.BaseTransport):
    def __init__(self, limits: httpx.Limits) -> None:
        self._routes = _Routes(
            httpx.HTTPTransport(verify=False, limits=limits),  # for http:// only
            lambda: httpx.HTTPTransport(verify=verifying_context(), limits=limits),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._routes.pick(request).handle_request(request)

    def close(self) -> None:
        for transport in self._routes.made():
            transport.close()


class AsyncPlainFirst(httpx.AsyncBaseTransport):
    def __init__(self, limits: httpx.Limits) -> None:
        self._routes = _Routes(
            httpx.AsyncHTTPTransport(verify=False, limits=limits),  # for http:// only
            lambda: httpx.AsyncHTTPTransport(verify=verifying_context(), limits=limits),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._routes.pick(request).handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self._routes.made():
            await transport.aclose()


HTTPX_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""httpx's own default pool, for a client that sets none."""


def transport_options(
    base_url: str, limits: httpx.Limits = HTTPX_LIMITS, *, asynchronous: bool
) -> dict[str, Any]:
    """A client's transport options for `base_url`: httpx's defaults for https."""
    if httpx.URL(base_url).scheme != "http":
        return {"verify": verifying_context(), "limits": limits}
    return {"transport": (AsyncPlainFirst if asynchronous else PlainFirst)(limits)}


def sync_transport_options(base_url: str, injected: httpx.BaseTransport | None) -> dict[str, Any]:
    """A venue client's: the transport a caller injected (a recording's, a test's) as given."""
    if injected is not None:
        return {"transport": injected}
    return transport_options(base_url, asynchronous=False)
