"""The rules that keep a machine running real money closed: who may listen where without a
login, how failed logins are slowed, and which files must stay private to the user."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import stat
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, model_validator

from core.errors import UserError

LOGIN_USER = "agent"
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
_OTHERS_READ = stat.S_IRGRP | stat.S_IROTH
_OTHERS_ANY = stat.S_IRWXG | stat.S_IRWXO
_LOCAL_NAMES = {"localhost", "ip6-localhost"}


class Access(BaseModel):
    """How a server admits people: the accepted user and password, or no login at all."""

    kind: Literal["loopback", "password", "token", "insecure"]
    user: str | None = None
    password: str | None = None

    def check(self, user: str, password: str) -> bool:
        """Constant-time comparison of both fields (a login form's callback)."""
        if self.user is None or self.password is None:
            return False
        same_user = hmac.compare_digest(user.strip().encode(), self.user.encode())
        same_password = hmac.compare_digest(password.encode(), self.password.encode())
        return same_user and same_password

    @model_validator(mode="after")
    def _login_is_complete(self) -> Access:
        if self.needs_login and not (self.user and self.password):
            raise ValueError(f"{self.kind} access needs a user and a password")
        return self

    @property
    def needs_login(self) -> bool:
        return self.kind in ("password", "token")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost reach only this machine; anything else (0.0.0.0 too)
    may be reached from the network."""
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_DEFAULT_PORTS = {"http": 80, "https": 443}


def public_origin(url: str) -> str:
    """--public-origin as the browser's Origin header spells it (`https://host[:port]`, the
    default port left out): an address a reverse proxy publishes a loopback server at."""
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise UserError(
            f"invalid --public-origin {url!r}: expected the address a browser opens, "
            "e.g. https://trader.example.com (no path)"
        )
    netloc = parts.netloc
    if port == _DEFAULT_PORTS[parts.scheme]:
        netloc = netloc.rsplit(":", 1)[0]
    return f"{parts.scheme}://{netloc}"


def exposed_at(host: str, public: tuple[str, ...]) -> str | None:
    """Where others can reach a server: the public origins a reverse proxy serves it at, else
    its host off loopback; None when only this machine can."""
    if public:
        return ", ".join(public)
    return None if is_loopback(host) else host


def resolve_access(
    host: str,
    auth: str | None,
    *,
    insecure_no_auth: bool,
    live_accounts: list[str],
    what: str,
    public: tuple[str, ...] = (),
) -> Access:
    """The access rule for a server on `host`, published at the `public` origins by a reverse
    proxy, if any. `auth` is `user:password`, or `token` for a generated one (Jupyter's way).
    Reachable by others, no login is refused unless the user said --insecure-no-auth, and
    that is refused while a live account exists."""
    if auth and insecure_no_auth:
        raise UserError("--auth and --insecure-no-auth contradict each other: pick one")
    if auth == "token":
        return Access(kind="token", user=LOGIN_USER, password=secrets.token_urlsafe(24))
    if auth:
        user, sep, password = auth.partition(":")
        if not sep or not user.strip() or not password:
            raise UserError("invalid --auth / AGENT_UI_AUTH: expected user:password or token")
        return Access(kind="password", user=user.strip(), password=password)
    if insecure_no_auth:
        if live_accounts:
            raise UserError(
                f"--insecure-no-auth refused: live account(s) {', '.join(live_accounts)} are in "
                f"this store, and {what} without a login could act on them; use --auth"
            )
        return Access(kind="insecure")
    where = exposed_at(host, public)
    if where is not None:
        local = "" if public else ", or keep the default --host 127.0.0.1"
        raise UserError(
            f"refusing to serve {what} on {where} without a login: anyone who can reach this "
            "machine could use it; pass --auth user:password (or AGENT_UI_AUTH), --auth token "
            f"for a generated one{local}"
        )
    return Access(kind="loopback")


def insecure_warning(host: str, what: str) -> str:
    return (
        f"warning: --insecure-no-auth: {what} on {host} has no login; anyone who can reach "
        "this port can use it"
    )


class LoginThrottle:
    """Per-client failed-login limit: after `max_failures` within `window_s`, that client's
    logins are refused (the password is not even tried) until the oldest failure ages out.
    A success clears the client's record."""

    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.window_s, self._clock = max_failures, window_s, clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        now = self._clock()
        failures = self._failures.get(client, deque())
        while failures and now - failures[0] >= self.window_s:
            failures.popleft()
        return failures

    def retry_after(self, client: str) -> float | None:
        """Seconds until this client may try again, or None if it may try now."""
        failures = self._recent(client)
        if len(failures) < self.max_failures:
            return None
        return max(failures[-self.max_failures] + self.window_s - self._clock(), 1.0)

    def failed(self, client: str) -> None:
        failures = self._recent(client)
        failures.append(self._clock())
        self._failures = {c: f for c, f in self._failures.items() if f and c != client}
        self._failures[client] = failures

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def private_dir(path: Path) -> str | None:
    """Create the directory 0700; for an existing one that others can enter, a warning line
    (it may be a directory the user shares on purpose, so it is not changed behind them)."""
    if not path.exists():
        path.mkdir(mode=PRIVATE_DIR, parents=True)
        path.chmod(PRIVATE_DIR)  # mkdir's mode is masked by the umask
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    if path.is_dir() and mode & _OTHERS_ANY:
        return (
            f"warning: data directory {path} is open to other users (mode {mode:04o}); "
            f"its store holds your orders and positions: chmod 700 {path}"
        )
    return None


def private_file(path: Path) -> None:
    """Create the file 0600 if it is missing, and tighten it if it is not."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE)
    os.close(fd)
    if stat.S_IMODE(path.stat().st_mode) != PRIVATE_FILE:
        path.chmod(PRIVATE_FILE)


def loose_env_file(path: Path = Path(".env")) -> str | None:
    """The problem with a `.env` that group or others can read (it holds API keys), or None."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if mode & _OTHERS_READ:
        return (
            f"{path} is readable by other users (mode {mode:04o}) and holds your keys: "
            f"chmod 600 {path}"
        )
    return None
