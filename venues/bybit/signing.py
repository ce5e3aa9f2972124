"""Bybit v5 private-request signing as pure functions, so the exact bytes signed can be pinned
against Bybit's documented rule: HMAC-SHA256 over timestamp + api key + recvWindow + payload,
where the payload is the query string of a GET or the JSON body of a POST."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from urllib.parse import urlencode

DEFAULT_RECV_WINDOW_MS = 5_000


def get_payload(params: Mapping[str, object]) -> str:
    """A GET's query string, in the order given: the signature covers these exact bytes."""
    return urlencode([(key, str(value)) for key, value in params.items()])


def post_payload(params: Mapping[str, object]) -> str:
    """A POST's JSON body, compact, in the order given: sent exactly as signed."""
    return json.dumps(dict(params), separators=(",", ":"))


def sign(payload: str, *, api_key: str, secret: str, timestamp_ms: int, recv_window_ms: int) -> str:
    """Lower-case hex HMAC-SHA256 of `timestamp + api_key + recv_window + payload`."""
    message = f"{timestamp_ms}{api_key}{recv_window_ms}{payload}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def signed_headers(
    payload: str, *, api_key: str, secret: str, timestamp_ms: int, recv_window_ms: int
) -> dict[str, str]:
    """The X-BAPI-* headers that authenticate one request carrying `payload`."""
    return {
        "X-BAPI-API-KEY": api_key,
        "X-BAPI-TIMESTAMP": str(timestamp_ms),
        "X-BAPI-RECV-WINDOW": str(recv_window_ms),
        "X-BAPI-SIGN": sign(
            payload,
            api_key=api_key,
            secret=secret,
            timestamp_ms=timestamp_ms,
            recv_window_ms=recv_window_ms,
        ),
    }
