"""A run's model requests on the wire, at most `limit` at once. A run may start more decisions
than that: each builds its prompt and looks in the cache first, and only a request that must
go out waits here for a turn. When an answer comes back its turn passes straight to the next
request, already built, instead of waiting until that answer has been read into a decision and
the next prompt built (3-4 ms a round trip, each wave of a run).

Turns go to the earliest decision waiting (by `rank`, its place in the run), so a decision's
follow-up call (after a tool) goes before later decisions' first ones. Once closed (the run has
stopped), a decision that has sent nothing yet is not sent (`NotSent`); one already on the wire
goes on to its answer, so the calls spent on it are not wasted, unless every later call would
fail the same way (a spent budget, a refused key: `close(every=True)`). A failed request keeps its
turn until the run has recorded the failure (`Turns`), so a stop is as prompt as before."""

from __future__ import annotations

import heapq
import itertools
import threading
from dataclasses import dataclass, field


class NotSent(Exception):
    """The run stopped while this request waited for its turn: it was neither sent nor counted,
    and its decision is dropped, as one never started is."""


@dataclass(order=True)
class _Waiting:
    rank: int
    arrival: int
    started: bool = field(compare=False)
    refused: bool = field(default=False, compare=False)
    ready: threading.Event = field(default_factory=threading.Event, compare=False)


class InFlight:
    def __init__(self, limit: int) -> None:
        self._limit = self._free = limit
        self._closed = self._every = False
        self._lock = threading.Lock()
        self._waiting: list[_Waiting] = []  # a heap, empty whenever a turn is free
        self._arrivals = itertools.count()

    def turns(self, rank: int) -> Turns:
        """One decision's turns, a request at a time."""
        return Turns(self, rank)

    @property
    def sending(self) -> int:
        """Requests on the wire now."""
        with self._lock:
            return self._limit - self._free

    def close(self, *, every: bool = False) -> None:
        """No decision sends again that has sent nothing yet, nor, with `every`, any other."""
        with self._lock:
            self._closed = True
            self._every = self._every or every
            for waiting in self._waiting:
                if self._every or not waiting.started:
                    waiting.refused = True
                    waiting.ready.set()
            self._waiting = [w for w in self._waiting if not w.refused]
            heapq.heapify(self._waiting)

    def _take(self, rank: int, started: bool) -> None:
        with self._lock:
            if self._closed and (self._every or not started):
                raise NotSent
            if self._free:
                self._free -= 1
                return
            waiting = _Waiting(rank, next(self._arrivals), started)
            heapq.heappush(self._waiting, waiting)
        waiting.ready.wait()
        if waiting.refused:
            raise NotSent

    def _give_back(self) -> None:
        with self._lock:
            if self._waiting:  # the turn passes on: a request arriving now cannot take it
                heapq.heappop(self._waiting).ready.set()
            else:
                self._free += 1


class Turns:
    """A decision's requests, each holding a turn while it is on the wire (its retries too);
    used by the one thread that makes the decision. A request that failed (an error, a spent
    budget) keeps its turn until `finish`, once the run has recorded the failure: a run that
    must stop (a tripped breaker, a budget) then sends nothing more, and an answer passes its
    turn on at once."""

    def __init__(self, flight: InFlight, rank: int) -> None:
        self._flight = flight
        self._rank = rank
        self._started = False
        self._kept = False

    def __enter__(self) -> None:
        if self._kept:  # the decision asks again with the turn its failed request kept
            self._kept = False
            return
        self._flight._take(self._rank, self._started)
        self._started = True

    def __exit__(self, failed: type[BaseException] | None, *raised: object) -> None:
        if failed is None:
            self._flight._give_back()
        else:
            self._kept = True

    def finish(self) -> None:
        if self._kept:
            self._kept = False
            self._flight._give_back()
