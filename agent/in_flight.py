"""A run's model requests on the wire, at most `limit` at once. A run may start more decisions
than that: each builds its prompt and looks in the cache first, and only a request that must
go out waits here for a turn. When an answer comes back its turn passes straight to the next
request, already built, instead of waiting until that answer has been read into a decision and
the next prompt built (3-4 ms a round trip, each wave of a run).

Turns go to the earliest decision waiting (by `rank`, its place in the run), so a decision's
follow-up call (after a tool) goes before later decisions' first ones. Once closed (the run has
stopped), a decision that has sent nothing yet is not sent (`NotSent`), whether it waits for a
turn or, holding one, for budget room (`Turns.hold_back`); one already on the wire goes on to its
answer, so the calls spent on it are not wasted, unless every later call would fail the same way
(a spent budget, a refused key: `close(every=True)`). A failed request keeps its turn until the
run has recorded the failure (`Turns`), so a stop is as prompt as before."""

from __future__ import annotations

import heapq
import itertools
import threading
from dataclasses import dataclass, field


class NotSent(Exception):
    """The run stopped while this request waited for its turn or for budget room: it was
    neither sent nor counted, and its decision is dropped, as one never started is."""


@dataclass(order=True)
class _Waiting:
    rank: int
    arrival: int
    started: bool = field(compare=False)
    refused: bool = field(default=False, compare=False)
    ready: threading.Event = field(default_factory=threading.Event, compare=False)


class InFlight:
    def __init__(self, limit: int) -> None:
        self._free = limit
        self._closed = self._every = False
        self._lock = threading.Lock()
        self._waiting: list[_Waiting] = []  # a heap, empty whenever a turn is free
        self._arrivals = itertools.count()
        self._on_wire = 0
        self._held_back: set[threading.Condition] = set()  # what requests wait on for room

    def turns(self, rank: int) -> Turns:
        """One decision's turns, a request at a time."""
        return Turns(self, rank)

    @property
    def sending(self) -> int:
        """Requests on the wire now; not those holding a turn while they wait for budget room."""
        with self._lock:
            return self._on_wire

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
            held_back = list(self._held_back)
        for changed in held_back:  # not under the lock: a waiter holds `changed` to check it
            with changed:
                changed.notify_all()

    def _refuses(self, started: bool) -> bool:
        return self._closed and (self._every or not started)

    def _take(self, rank: int, started: bool) -> None:
        with self._lock:
            if self._refuses(started):
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
        self._started = False  # a request of the decision has been sent
        self._kept = False
        self._on_wire = False

    def __enter__(self) -> None:
        if self._kept:  # the decision asks again with the turn its failed request kept
            self._kept = False
            return
        self._flight._take(self._rank, self._started)

    def hold_back(self, changed: threading.Condition) -> None:
        """Called holding `changed` before each try for budget room, which waits on it: `NotSent`
        if the run has stopped for this request. `changed` is notified when the run stops, so
        that a wait on it hears of the stop."""
        flight = self._flight
        with flight._lock:
            flight._held_back.add(changed)
            if flight._refuses(self._started):
                raise NotSent

    def sent(self) -> None:
        """The request holds its budget and goes out: the decision has started."""
        with self._flight._lock:
            self._flight._on_wire += 1
        self._started = self._on_wire = True

    def __exit__(self, failed: type[BaseException] | None, *raised: object) -> None:
        if self._on_wire:
            self._on_wire = False
            with self._flight._lock:
                self._flight._on_wire -= 1
        if failed is None:
            self._flight._give_back()
        else:
            self._kept = True

    def finish(self) -> None:
        if self._kept:
            self._kept = False
            self._flight._give_back()
