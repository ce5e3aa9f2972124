"""A Binance spot REST server on 127.0.0.1 that serves real captures and the bundled real 1m
sample, with scripted faults, so client tests exercise real HTTP without leaving the machine."""

from __future__ import annotations

import csv
import gzip
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from loopback_thread import serving_thread

import market

FIXTURES = Path(__file__).parent / "fixtures" / "binance"
EXCHANGE_INFO_2024 = FIXTURES / "rest_exchangeInfo_spot_2024-09-08_BTCUSDT_ETHUSDT_excerpt.json"
EXCHANGE_INFO_LEGACY = (
    FIXTURES / "rest_exchangeInfo_spot_2022-11-24_legacy_MIN_NOTIONAL_BTCUSDT_ETHUSDT_excerpt.json"
)
EXCHANGE_INFO_2021 = FIXTURES / "rest_exchangeInfo_spot_2021-10-22_BTCUSDT_nautilus.json"
DEPTH_CAPTURE = FIXTURES / "rest_spot_depth_BTCUSDT_limit10_2021-10.json"
SAMPLE_DIR = Path(market.__file__).parent / "data"
SAMPLE_SYMBOLS = ("BTCUSDT", "ETHUSDT")
# Half a minute into 2025-11-01 05:00 UTC: every bar of the bundled sample is closed by then.
AFTER_SAMPLE_S = 1_761_973_230.0

# Binance's own bodies for these answers (the fake exchange answers with them too).
INVALID_SYMBOL = {"code": -1121, "msg": "Invalid symbol."}
DEFAULT_BODIES: dict[int, dict[str, Any]] = {
    418: {
        "code": -1003,
        "msg": "Way too much request weight used; IP banned until 1761973530000. "
        "Please use WebSocket Streams for live updates to avoid bans.",
    },
    429: {
        "code": -1003,
        "msg": "Too much request weight used; current limit is 6000 request weight per "
        "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
    },
    500: {
        "code": -1001,
        "msg": "Internal error; unable to process your request. Please try again.",
    },
    503: {
        "code": -1001,
        "msg": "Internal error; unable to process your request. Please try again.",
    },
}
_WEIGHTS = {"/api/v3/klines": 2, "/api/v3/exchangeInfo": 20, "/api/v3/time": 1}


class BinanceJsonHandler(BaseHTTPRequestHandler):
    """What both loopback Binance servers answer with: keep-alive JSON, quiet logs."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    disable_nagle_algorithm = True

    def _send(self, status: int, body: object, headers: dict[str, str]) -> None:
        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (a timeout test); nothing to deliver
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest output should show test failures, not access logs."""


@dataclass(frozen=True)
class Fault:
    """One scripted answer; status None means "serve normally, after delay_s" (a slow reply)."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: object | None = None
    delay_s: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    params: dict[str, str]


class FakeTime:
    """A wall clock that moves only when the client sleeps (or a test says so), so waits of
    minutes are observed in microseconds."""

    def __init__(self, now: float = AFTER_SAMPLE_S) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@cache
def sample_klines(symbol: str) -> tuple[list[Any], ...]:
    """The bundled sample's rows in /api/v3/klines JSON form: decimals as 8-place strings."""
    path = SAMPLE_DIR / f"{symbol}-1m-2025-10-29_3d.csv.gz"
    with gzip.open(path, "rt", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        return tuple(_kline_row(row) for row in reader)


def _kline_row(row: list[str]) -> list[Any]:
    def dec(text: str) -> str:
        return f"{Decimal(text):.8f}"

    open_t, o, h, lo, c, v, close_t, qv, count, tbv, tbqv, ignore = row
    return [
        int(open_t),
        dec(o),
        dec(h),
        dec(lo),
        dec(c),
        dec(v),
        int(close_t),
        dec(qv),
        int(count),
        dec(tbv),
        dec(tbqv),
        ignore,
    ]


def depth_weight(limit: int) -> int:
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


class LoopbackBinance:
    """Answers like Binance spot REST; plays scripted faults first, counts requests per path and
    reports the request weight used in X-MBX-USED-WEIGHT-1M."""

    def __init__(self, exchange_info: Path = EXCHANGE_INFO_2024) -> None:
        self.exchange_info = exchange_info
        self.weight = 0  # set it high to play a busy IP
        self.delay_s = 0.0  # every reply waits this long (a persistently slow server)
        self.received: list[Received] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a handler still in its delay must not stall teardown
        self._thread = serving_thread(self._httpd)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def script(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def count(self, path: str | None = None) -> int:
        with self._lock:
            counts = Counter(r.path for r in self.received)
        return sum(counts.values()) if path is None else counts[path]

    def start(self) -> LoopbackBinance:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _arrive(self, received: Received, weight: int) -> tuple[Fault | None, int]:
        with self._lock:
            self.received.append(received)
            self.weight += weight
            return (self._faults.popleft() if self._faults else None), self.weight

    def _route(self, path: str, params: dict[str, str]) -> tuple[int, object]:
        if path == "/api/v3/time":
            return 200, {"serverTime": time.time_ns() // 1_000_000}
        if path == "/api/v3/klines":
            return self._klines(params)
        if path == "/api/v3/depth":
            return self._depth(params)
        if path == "/api/v3/exchangeInfo":
            return self._exchange_info(params)
        return 404, {"code": -1, "msg": f"loopback: no route {path}"}

    def _klines(self, params: dict[str, str]) -> tuple[int, object]:
        if params.get("symbol") not in SAMPLE_SYMBOLS:
            return 400, INVALID_SYMBOL
        if params.get("interval") != "1m":
            return 400, {"code": -1120, "msg": "Invalid interval."}
        limit = int(params.get("limit", 500))
        if not 1 <= limit <= 1000:
            return 400, {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}
        start = int(params.get("startTime", 0))
        end = int(params.get("endTime", 2**62))
        rows = [r for r in sample_klines(params["symbol"]) if start <= r[0] <= end]
        return 200, rows[:limit] if "startTime" in params else rows[-limit:]

    def _depth(self, params: dict[str, str]) -> tuple[int, object]:
        if params.get("symbol") != "BTCUSDT":
            return 400, INVALID_SYMBOL
        book = json.loads(DEPTH_CAPTURE.read_text())
        limit = int(params.get("limit", 100))
        return 200, {**book, "bids": book["bids"][:limit], "asks": book["asks"][:limit]}

    def _exchange_info(self, params: dict[str, str]) -> tuple[int, object]:
        info = json.loads(self.exchange_info.read_text())
        if "symbols" in params:
            try:
                wanted = json.loads(params["symbols"])
            except ValueError:
                return 400, {
                    "code": -1100,
                    "msg": "Illegal characters found in parameter 'symbols'",
                }
        elif "symbol" in params:
            wanted = [params["symbol"]]
        else:
            return 200, info
        listed = {s["symbol"]: s for s in info["symbols"]}
        if any(symbol not in listed for symbol in wanted):
            return 400, INVALID_SYMBOL
        return 200, {**info, "symbols": [listed[s] for s in wanted]}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BinanceJsonHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                weight = (
                    depth_weight(int(params.get("limit", 100)))
                    if url.path == "/api/v3/depth"
                    else _WEIGHTS.get(url.path, 1)
                )
                fault, used = server._arrive(Received(url.path, params), weight)
                time.sleep(server.delay_s + (fault.delay_s if fault else 0.0))
                headers = {"X-MBX-USED-WEIGHT-1M": str(used), "X-MBX-USED-WEIGHT": str(used)}
                if fault is not None and fault.status is not None:
                    body = (
                        fault.body if fault.body is not None else DEFAULT_BODIES.get(fault.status)
                    )
                    self._send(fault.status, body or {}, {**headers, **fault.headers})
                    return
                status, body = server._route(url.path, params)
                self._send(status, body, headers)

        return Handler


@pytest.fixture
def binance_server() -> Iterator[LoopbackBinance]:
    server = LoopbackBinance().start()
    yield server
    server.stop()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()
