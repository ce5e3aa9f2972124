"""An OpenAI-compatible chat-completions server on 127.0.0.1 that plays scripted responses,
so LLM client tests exercise the real HTTP stack without leaving the machine."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from loopback_thread import serving_thread

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")


@dataclass(frozen=True)
class Scripted:
    """One response to play: a dict body is sent as JSON, str/bytes verbatim (to fake garbage)."""

    status: int = 200
    body: object = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict


class LoopbackOpenAI:
    """Plays `Scripted` items in arrival order, then asks `responder` (a scripted model reading the
    request); records requests and the peak of in-flight ones."""

    def __init__(self, port: int = 0, responder: Callable[[dict], Scripted] | None = None) -> None:
        self._queue: deque[Scripted] = deque()
        self._responder = responder
        self._lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a handler still in its delay must not stall teardown
        self._thread = serving_thread(self._httpd)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def script(self, *items: Scripted) -> None:
        with self._lock:
            self._queue.extend(items)

    def start(self) -> LoopbackOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next(self, recorded: Recorded) -> Scripted:
        with self._lock:
            self.requests.append(recorded)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self._queue:
                return self._queue.popleft()
            if self._responder is not None:
                return self._responder(recorded.body)
        message = "loopback server: no scripted response left"
        return Scripted(400, {"error": {"message": message, "type": "loopback"}})

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the real API
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path not in CHAT_PATHS:
                    self._send(Scripted(404, {"error": {"message": f"no route {self.path}"}}))
                    return
                recorded = Recorded(self.path, dict(self.headers.items()), json.loads(raw))
                item = server._next(recorded)
                time.sleep(item.delay_s)
                # Leave the in-flight count before replying, so a client that sends its next
                # request as soon as this reply lands never sees a stale count.
                server._done()
                self._send(item)

            def _send(self, item: Scripted) -> None:
                if isinstance(item.body, bytes | str):
                    payload = item.body.encode() if isinstance(item.body, str) else item.body
                else:
                    payload = json.dumps(item.body).encode()
                try:
                    self.send_response(item.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for name, value in item.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout test); nothing to deliver
                    self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: pytest output should show test failures, not access logs."""

        return Handler


@pytest.fixture
def openai_server() -> Iterator[LoopbackOpenAI]:
    server = LoopbackOpenAI().start()
    yield server
    server.stop()
