"""What a hostile web page open in the user's browser must not reach: a server on loopback
through DNS rebinding (its page then names another host), and any change sent cross-site (its
Origin, or Referer, names another site). Used in front of both the API and the chat UI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from core.security import is_loopback

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _netloc(url: str) -> str:
    """`host[:port]` of a URL, lower-cased ('' for `null` or anything unparsable)."""
    try:
        return urlsplit(url).netloc.lower()
    except ValueError:
        return ""


def _origin(url: str) -> str:
    """`scheme://host[:port]` of a URL, lower-cased, as a browser's Origin header spells it."""
    try:
        parts = urlsplit(url.lower())
    except ValueError:
        return ""
    return f"{parts.scheme}://{parts.netloc}"


def refusal(
    loopback: bool, method: str, headers: Mapping[str, str], public: tuple[str, ...] = ()
) -> str | None:
    """Why a request must be refused, or None. On loopback (no login or token needed) the Host
    must name this machine: a rebound name could read and act as the user's own browser. A
    changing request (or a websocket, which browsers open cross-site) whose Origin or else
    Referer is another site than the Host is refused wherever the server listens. The `public`
    origins a reverse proxy serves it at (whose start required a login, and the API a token)
    count as its own, as Host and as Origin, whatever Host the proxy passes."""
    host = headers.get("host", "").lower()
    name = urlsplit(f"//{host}").hostname if host else None
    proxied = host in {_netloc(origin) for origin in public}
    if loopback and not proxied and not (name and is_loopback(name)):
        return (
            f"refused: this server answers only as 127.0.0.1, localhost or ::1, not as "
            f"{host or 'a request without a Host'} (a page rebinding its name to this machine)"
        )
    if method in SAFE_METHODS:
        return None
    source = headers.get("origin") or headers.get("referer")
    if source is not None and _netloc(source) != host and _origin(source) not in public:
        return f"refused: a page from {source} may not change anything here (cross-site request)"
    return None


class SameOriginGuard:
    """ASGI middleware applying `refusal` to every HTTP request and websocket: 403 with the
    reason as JSON, before the app sees it."""

    def __init__(self, app: ASGIApp, loopback: bool, public: tuple[str, ...] = ()) -> None:
        self.app, self.loopback, self.public = app, loopback, public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["type"] == "http" else "WEBSOCKET"
        why = refusal(self.loopback, method, Headers(scope=scope), self.public)
        if why is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})
        else:
            await JSONResponse({"detail": why, "field": None}, 403)(scope, receive, send)
