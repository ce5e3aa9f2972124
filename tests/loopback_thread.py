"""The thread each loopback HTTP server serves on, made one way so each stops as promptly."""

from __future__ import annotations

import socketserver
import threading

POLL_S = 0.005
"""How often an idle server looks for its stop. A teardown waits up to this long for it (at
0.05 s that wait was most of a short test's teardown); idling costs 200 wake-ups a second."""


def serving_thread(server: socketserver.BaseServer) -> threading.Thread:
    return threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_S}, daemon=True
    )
