"""A real diff-depth capture replayed on the bar replay's market timeline, with the snapshot a
client needs to sync to it, so the documented snapshot + diffs procedure runs offline.

How the capture becomes a replay (deterministic; written down in market/data/PROVENANCE.md):
- Messages keep their real update ids, sizes, levels per message and sequence gaps. The capture
  came without a snapshot, so each session (a run of messages with no gap) starts from an empty
  book: the replayed book holds only the levels the capture touched, a lower bound of the real
  depth, and a session's first seconds can show one side only or a wide spread.
- Prices keep their relative structure and are re-anchored multiplicatively, once per session:
  × (close of the last bar closed when the session starts) / (mid of the session's book after
  its last message). Prices are sent with 8 decimals, so two levels never merge into one.
- The capture is replayed in passes, one message every DEPTH_STEP_MS of market time. Each pass
  shifts the update ids past the previous pass and skips one id, so a pass boundary is a gap
  the client resyncs on, like the 3 real gaps inside the capture.
- A snapshot is the server's book as of the last message sent (ids included), top `limit`
  levels per side, so snapshot + the following diffs rebuild exactly what the server holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

DEPTH_STEP_MS = 10_000  # a pass of the 71-message capture spans about 12 one-minute bars

Message = dict[str, Any]
PriceAt = Callable[[int], float]


def _num(value: float) -> str:
    return f"{value:.8f}"


def _fold(book: tuple[dict[float, str], dict[float, str]], message: Message) -> None:
    """Absolute quantities per price; a zero quantity removes the level."""
    for side, levels in zip(book, (message["b"], message["a"]), strict=True):
        for price, qty in levels:
            if float(qty) == 0:
                side.pop(float(price), None)
            else:
                side[float(price)] = qty


def sessions(messages: list[Message]) -> list[list[Message]]:
    """Runs of messages in which each U is the previous u + 1."""
    runs: list[list[Message]] = []
    for message in messages:
        if not runs or message["U"] != runs[-1][-1]["u"] + 1:
            runs.append([])
        runs[-1].append(message)
    return runs


def _final_mid(run: list[Message]) -> float:
    book: tuple[dict[float, str], dict[float, str]] = ({}, {})
    for message in run:
        _fold(book, message)
    bids, asks = book
    if not bids or not asks:
        raise ValueError("a depth session must end with both sides of the book")
    return (max(bids) + min(asks)) / 2


class DepthReplay:
    """One symbol's capture as an endless, gapped diff-depth stream anchored on `price_at`
    (the price of the replayed bars at a market time); see the module docstring."""

    def __init__(self, symbol: str, messages: list[Message], price_at: PriceAt) -> None:
        if not messages:
            raise ValueError(f"no depth messages for {symbol}")
        self.symbol = symbol
        self._price_at = price_at
        self._sessions = [(run, _final_mid(run)) for run in sessions(messages)]
        first, last = messages[0]["U"], messages[-1]["u"]
        self._pass_span = last - first + 2  # one id skipped between passes: a gap
        self._pass = self._session = self._index = 0
        self._factor = 1.0
        self._book: tuple[dict[float, str], dict[float, str]] = ({}, {})
        self.last_update_id = first - 1
        self.sent = 0

    def next(self, time_ms: int) -> Message:
        """The next `depthUpdate` payload, stamped `time_ms`; the server's book follows it."""
        run, reference = self._sessions[self._session]
        if self._index == 0:
            self._factor = self._price_at(time_ms) / reference
            self._book = ({}, {})
        raw = run[self._index]
        shift = self._pass * self._pass_span
        factor = self._factor
        payload: Message = {
            "e": "depthUpdate",
            "E": time_ms,
            "s": self.symbol,
            "U": raw["U"] + shift,
            "u": raw["u"] + shift,
            "b": [[_num(float(p) * factor), q] for p, q in raw["b"]],
            "a": [[_num(float(p) * factor), q] for p, q in raw["a"]],
        }
        _fold(self._book, payload)
        self.last_update_id = payload["u"]
        self.sent += 1
        self._index += 1
        if self._index == len(run):
            self._index = 0
            self._session += 1
            if self._session == len(self._sessions):
                self._session = 0
                self._pass += 1
        return payload

    def snapshot(self, limit: int) -> Message:
        """`GET /api/v3/depth` as Binance answers it: the top `limit` levels per side."""
        bids, asks = self._book
        return {
            "lastUpdateId": self.last_update_id,
            "bids": [[_num(p), bids[p]] for p in sorted(bids, reverse=True)[:limit]],
            "asks": [[_num(p), asks[p]] for p in sorted(asks)[:limit]],
        }
