"""Binance SIGNED-endpoint signing and server-clock alignment, as pure functions, so the exact
bytes that are signed can be pinned against Binance's documented example."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import urlencode

DEFAULT_RECV_WINDOW_MS = 5_000
MAX_RECV_WINDOW_MS = 60_000  # Binance refuses a larger recvWindow


def query_string(params: Mapping[str, object]) -> str:
    """Parameters in the order given, percent-encoded: the signature covers these exact bytes."""
    return urlencode([(key, str(value)) for key, value in params.items()])


def sign(total_params: str, secret: str) -> str:
    """HMAC-SHA256 of the total parameters (query string, then body) as lower-case hex."""
    return hmac.new(secret.encode(), total_params.encode(), hashlib.sha256).hexdigest()


def signed_query(
    params: Mapping[str, object],
    secret: str,
    *,
    timestamp_ms: int,
    recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
) -> str:
    """`params` plus recvWindow and timestamp, then the signature appended last."""
    if not 0 < recv_window_ms <= MAX_RECV_WINDOW_MS:
        raise ValueError(f"recvWindow {recv_window_ms} ms must be in (0, {MAX_RECV_WINDOW_MS}]")
    total = query_string({**params, "recvWindow": recv_window_ms, "timestamp": timestamp_ms})
    return f"{total}&signature={sign(total, secret)}"


def clock_offset_ms(server_time_ms: int, sent_ms: int, received_ms: int) -> int:
    """How far Binance's clock is ahead of ours, taking the server's reading at the midpoint of
    the round trip (half the latency either way)."""
    return server_time_ms - (sent_ms + received_ms) // 2


def server_timestamp(local_ms: int, offset_ms: int) -> int:
    """Our clock moved onto Binance's, for the `timestamp` of a signed request."""
    return local_ms + offset_ms
