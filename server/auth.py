"""Who may change anything through the API: off loopback, only a caller with the bearer token
from the environment (no open door, DESIGN invariant 12); failed tokens are throttled per
client like failed UI logins."""

from __future__ import annotations

import hmac
import math
from collections.abc import Callable, Mapping

from fastapi import HTTPException, Request

from core.errors import UserError
from core.security import LoginThrottle, exposed_at

TOKEN_ENV = "AGENT_SERVER_TOKEN"  # nosec B105  # the variable's name, not a token
MIN_TOKEN_CHARS = 16


def server_token(host: str, env: Mapping[str, str], public: tuple[str, ...] = ()) -> str | None:
    """The token every changing route requires: the environment's, or None on loopback without
    one. Reachable by others (off loopback, or at a reverse proxy's `public` origins) a missing
    or short token refuses the start."""
    token = env.get(TOKEN_ENV, "").strip() or None
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise UserError(
            f"{TOKEN_ENV} is {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
            '(e.g. python3 -c "import secrets; print(secrets.token_urlsafe(24))")'
        )
    where = exposed_at(host, public)
    if token is None and where is not None:
        local = "" if public else ", or keep the default --host 127.0.0.1"
        raise UserError(
            f"refusing to serve the API on {where} without a token: anyone who can reach this "
            f"machine could halt or resume accounts and start backtests; set {TOKEN_ENV} "
            f"(callers send `Authorization: Bearer <token>`){local}"
        )
    return token


def bearer_guard(
    token: str | None, throttle: LoginThrottle | None = None
) -> Callable[[Request], None]:
    """A FastAPI dependency for changing routes: passes everyone when there is no token."""
    throttle = throttle or LoginThrottle()

    def guard(request: Request) -> None:
        if token is None:
            return
        client = request.client.host if request.client else "unknown"
        wait = throttle.retry_after(client)
        if wait is not None:
            raise HTTPException(
                429,
                f"too many failed tokens; try again in {math.ceil(wait)} s",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode()):
            throttle.succeeded(client)
            return
        throttle.failed(client)
        raise HTTPException(
            401,
            f"this route changes state: send `Authorization: Bearer <{TOKEN_ENV}>`",
            headers={"WWW-Authenticate": "Bearer"},
        )

    return guard
