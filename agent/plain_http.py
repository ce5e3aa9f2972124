"""The model endpoint's HTTP transport, without a TLS context until one is needed.

httpx makes a client's TLS context (the CA bundle read and parsed, ~20 ms) when the client is
made, before the first request can go. A model served over plain http (llama-server, vLLM, a
loopback) never uses it: its requests go out on a plain transport, and only a request to an
https URL (a redirect) gets httpx's own verifying transport, made then. An https endpoint
keeps httpx's defaults. Imported with httpx, when the first request is made (agent.llm)."""

from __future__ import annotations

import threading
from typing import Any

import httpx


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
            lambda: httpx.HTTPTransport(limits=limits),
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
            lambda: httpx.AsyncHTTPTransport(limits=limits),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._routes.pick(request).handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self._routes.made():
            await transport.aclose()


def transport_options(base_url: str, limits: httpx.Limits, *, asynchronous: bool) -> dict[str, Any]:
    """A client's transport options for `base_url`: httpx's defaults for https."""
    if httpx.URL(base_url).scheme != "http":
        return {"limits": limits}
    return {"transport": (AsyncPlainFirst if asynchronous else PlainFirst)(limits)}
