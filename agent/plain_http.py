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


class _Verifying:
    """httpx's verifying transport of one kind (sync or async), made on first use."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self._transport: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._transport is None:
                self._transport = self._make()
            return self._transport

    def made(self) -> Any:
        """The transport if a request has made it, else None."""
        return self._transport


class PlainFirst(httpx.BaseTransport):
    def __init__(self, limits: httpx.Limits) -> None:
        self._plain = httpx.HTTPTransport(verify=False, limits=limits)  # http:// only
        self._tls = _Verifying(lambda: httpx.HTTPTransport(limits=limits))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        plain = request.url.scheme == "http"
        return (self._plain if plain else self._tls.get()).handle_request(request)

    def close(self) -> None:
        self._plain.close()
        if self._tls.made() is not None:
            self._tls.made().close()


class AsyncPlainFirst(httpx.AsyncBaseTransport):
    def __init__(self, limits: httpx.Limits) -> None:
        self._plain = httpx.AsyncHTTPTransport(verify=False, limits=limits)  # http:// only
        self._tls = _Verifying(lambda: httpx.AsyncHTTPTransport(limits=limits))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        plain = request.url.scheme == "http"
        return await (self._plain if plain else self._tls.get()).handle_async_request(request)

    async def aclose(self) -> None:
        await self._plain.aclose()
        if self._tls.made() is not None:
            await self._tls.made().aclose()


def transport_options(base_url: str, limits: httpx.Limits, *, asynchronous: bool) -> dict[str, Any]:
    """A client's transport options for `base_url`: httpx's defaults for https."""
    if httpx.URL(base_url).scheme != "http":
        return {"limits": limits}
    return {"transport": (AsyncPlainFirst if asynchronous else PlainFirst)(limits)}
