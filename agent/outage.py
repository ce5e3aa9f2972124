"""What an unattended run does when its model endpoint fails: a refusal (bad key, bad request)
stops the run at once, since every later call would be refused too; a persistent outage
(timeouts, 5xx, empty replies) trips a breaker after N failed decisions in a row, instead of
running on through hundreds of abstains."""

from __future__ import annotations

import threading
from typing import Any

from core.errors import UserError

# Causes that say the endpoint is down or broken, not that the model chose badly.
OUTAGE_CAUSES = frozenset({"timeout", "server_error", "connection", "rate_limited", "bad_response"})
OUTAGE = "outage"


class LLMRefused(UserError):
    """The endpoint refused the run's requests (401, 403, or a 400 before any answer)."""


def refusal(abstain: dict[str, Any] | None, answered: bool, base_url: str) -> LLMRefused | None:
    """The error that must stop the run, if this abstain is one. A 400 after the endpoint has
    answered is one bad request (a prompt too long, say), not a broken setup."""
    cause = (abstain or {}).get("cause")
    message = (abstain or {}).get("message", "")
    if cause == "auth":
        fix = "set OPENAI_API_KEY to a key this endpoint accepts for the model"
    elif cause == "bad_request" and not answered:
        fix = "check AGENT_LLM__MODEL and that OPENAI_BASE_URL is an OpenAI-compatible /v1 URL"
    else:
        return None
    return LLMRefused(f"the LLM endpoint {base_url} refused the run: {message}; fix: {fix}")


class OutageBreaker:
    """Counts failed decisions in a row (in completion order); thread-safe for concurrent
    decisions. `trip_after=None` never trips (the loop uses safe mode instead)."""

    def __init__(self, trip_after: int | None) -> None:
        self.trip_after = trip_after
        self.failures = 0
        self.answered = False  # any call of this run got an answer
        self._lock = threading.Lock()

    def observe(self, state: dict[str, Any]) -> bool:
        """One finished decision; True when this one trips the breaker."""
        abstain = state.get("abstain") or {}
        with self._lock:
            if state.get("llm_calls"):
                self.answered = True
            if abstain.get("cause") in OUTAGE_CAUSES:
                self.failures += 1
            else:
                self.failures = 0
            return self.trip_after is not None and self.failures == self.trip_after
