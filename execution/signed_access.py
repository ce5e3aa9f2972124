"""The checks every signed executor makes before its first request, whichever the exchange:
live needs the user's confirmation, the key and secret must be set, and testnet mode refuses
the exchange's live host, so a test key can never meet real money by a wrong URL."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr

from core.errors import UserError

LIVE_CONFIRM_VAR = "LIVE_TRADING_CONFIRM"
MODES = ("paper", "testnet", "live")


def check_live_allowed(mode: str, env: Mapping[str, str]) -> None:
    """Refuse live trading unless the user confirmed it in the environment; other modes pass."""
    if mode not in MODES:
        raise UserError(f"unknown trading mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "live" and env.get(LIVE_CONFIRM_VAR, "").strip() != "yes":
        raise UserError(
            f"live trading needs {LIVE_CONFIRM_VAR}=yes: it spends real money "
            "(use --mode testnet to try it on Binance's testnet first)"
        )


@dataclass(frozen=True)
class Endpoints:
    """Where one exchange trades: its names, its two URLs and the hosts that are live."""

    exchange: str
    testnet_url: str
    live_url: str
    live_host: re.Pattern[str]
    key_vars: tuple[str, str]
    testnet_keys_from: str


@dataclass(frozen=True)
class SignedAccess:
    key: str
    secret: str
    base_url: str
    live: bool


def _plain(secret: str | SecretStr | None) -> str:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret or ""


def signed_access(
    endpoints: Endpoints,
    api_key: str | SecretStr | None,
    api_secret: str | SecretStr | None,
    *,
    live: bool,
    live_confirmed: bool,
    base_url: str | None,
) -> SignedAccess:
    """The credentials and URL a signed executor may use, or one line saying what is wrong."""
    if live and not live_confirmed:
        raise UserError(f"live trading needs {LIVE_CONFIRM_VAR}=yes: it spends real money")
    key, secret = _plain(api_key), _plain(api_secret)
    name = endpoints.exchange
    if not key or not secret:
        key_var, secret_var = endpoints.key_vars
        raise UserError(
            f"{name} trading needs an API key and secret: set {key_var} and {secret_var} "
            f"(testnet keys come from {endpoints.testnet_keys_from})"
        )
    url = (base_url or (endpoints.live_url if live else endpoints.testnet_url)).rstrip("/")
    if not live and endpoints.live_host.match(urlsplit(url).hostname or ""):
        raise UserError(
            f"testnet mode refuses {url}: that is {name}'s live API; use "
            f"{endpoints.testnet_url}, or live mode with {LIVE_CONFIRM_VAR}=yes"
        )
    return SignedAccess(key, secret, url, live)
