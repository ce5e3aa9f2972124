"""Who may use `agent-ui`: the access rule from core.security turned into Gradio's login wall,
with failed logins throttled per client by a middleware in front of Gradio's /login route."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from starlette.middleware import Middleware
from starlette.responses import JSONResponse

from config import Settings
from core.logging import setup_logging
from core.security import Access, LoginThrottle, insecure_warning, is_loopback
from core.web_guard import ASGIApp, Message, Receive, SameOriginGuard, Scope, Send

WHAT = "the chat, which can approve orders,"
LOGIN_PATHS = ("/login", "/login/")


class LoginThrottleMiddleware:
    """Refuses a client's login with 429 and Retry-After once it has failed too often, before
    Gradio sees the password; Gradio's 400 (wrong credentials) and 200 are counted."""

    def __init__(self, app: ASGIApp, throttle: LoginThrottle) -> None:
        self.app, self.throttle = app, throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "").removeprefix(scope.get("root_path", ""))  # under a mount
        if scope["type"] != "http" or scope["method"] != "POST" or path not in LOGIN_PATHS:
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.throttle.retry_after(client)
        if wait is not None:
            refused = JSONResponse(
                {"detail": f"Too many failed logins; try again in {math.ceil(wait)} s."},
                status_code=429,
                headers={"Retry-After": str(math.ceil(wait))},
            )
            await refused(scope, receive, send)
            return
        status: list[int] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] == 200:
            self.throttle.succeeded(client)
        elif status and 400 <= status[0] < 500:
            self.throttle.failed(client)


def launch_options(
    access: Access,
    host: str,
    settings: Settings,
    notify: Callable[[str], None],
    throttle: LoginThrottle | None = None,
    public: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Gradio launch() arguments for this access rule, behind the same-origin guard (a page in
    the user's browser must not drive the chat); says once how to get in (a generated token
    goes to stdout this one time, and the log redactor learns it)."""
    if access.kind == "insecure":
        notify(insecure_warning(host, WHAT))
    guard = Middleware(SameOriginGuard, loopback=is_loopback(host), public=public)
    if not access.needs_login:
        return {"auth": None, "app_kwargs": {"middleware": [guard]}}
    setup_logging(
        settings.log_level,
        json_lines=settings.log_json,
        secrets=[*settings.secret_values(), access.password or ""],
    )
    if access.kind == "token":
        print(
            f"login: user {access.user}, token {access.password} (printed only now; "
            "--auth user:password picks your own)",
            flush=True,
        )
    return {
        "auth": access.check,
        "auth_message": "agent-trader: this chat can approve orders; sign in.",
        "app_kwargs": {
            "middleware": [
                guard,
                Middleware(LoginThrottleMiddleware, throttle=throttle or LoginThrottle()),
            ]
        },
    }
