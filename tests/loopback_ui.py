"""A gradio_client for a UI served on loopback."""

from __future__ import annotations

from gradio_client import Client


def ui_client(url: str) -> Client:
    """Plain http on 127.0.0.1 has no TLS to verify: with the default ssl_verify=True, the
    client made for each of its requests loaded certifi's certificate store (about 2 s of CPU
    in a chat test's few dozen calls)."""
    return Client(url, verbose=False, ssl_verify=False)
