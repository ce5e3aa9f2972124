"""Alpaca on 127.0.0.1: each route answers with a captured body from tests/fixtures/alpaca
(alpaca-py's test bodies), and every request is kept so tests can read what was asked."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loopback_bybit import LoopbackServer

FIXTURES = Path(__file__).parent / "fixtures" / "alpaca"


def body(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def send_json(handler: BaseHTTPRequestHandler, status: int, answer: object) -> None:
    data = json.dumps(answer).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class LoopbackAlpaca(LoopbackServer):
    """`routes` maps a path to its bodies; a path with several bodies pages through them by
    `page_token`, the n-th token naming the n-th next page."""

    def __init__(self, routes: dict[str, list[Any]]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                server.requests.append((url.path, query, dict(self.headers)))
                pages = server.routes.get(url.path)
                if pages is None:
                    status, answer = 404, {"message": f"loopback: no route {url.path}"}
                else:
                    status, answer = 200, pages[server._page(pages, query.get("page_token"))]
                send_json(self, status, answer)

            def log_message(self, *_args: object) -> None:
                return

        self._listen(Handler)

    @staticmethod
    def _page(pages: list[Any], token: str | None) -> int:
        if token is None:
            return 0
        tokens = [p.get("next_page_token") if isinstance(p, dict) else None for p in pages]
        return tokens.index(token) + 1
