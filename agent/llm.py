"""The one door to any OpenAI-compatible chat endpoint: explicit timeouts, our own retries,
a JSON disk cache for reproducible runs, per-run budgets, and a single typed error. Requests go
out through httpx, as the OpenAI SDK would send them: the SDK added nothing here (we send with
no SDK retries, read the raw body and map errors ourselves) but 0.4-0.7 s of import before the
first call of every run."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import sqlite3
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import urlsplit

import diskcache
from pydantic import BaseModel, Field, ValidationError, computed_field
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from agent.in_flight import Turns
from config.settings import DecisionFormat, LLMSettings, ModelPrice
from core.errors import ConfigError
from core.logging import Redactor, masked_url

if TYPE_CHECKING:  # httpx is imported on first use: the offline model never needs it
    import httpx

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
COMPLETIONS = "chat/completions"  # below the base URL
# Local servers (Ollama, vLLM, LM Studio) ignore the key; a keyless request still carries one.
KEYLESS_PLACEHOLDER = "not-needed"
USER_AGENT = "agent-trader"
# The SDK's pool: room for every request in flight, and their connections kept for the next.
POOL = {"max_connections": 1000, "max_keepalive_connections": 100}

Cause = Literal[
    "rate_limited",
    "timeout",
    "server_error",
    "connection",
    "bad_request",
    "auth",
    "bad_response",
    "budget",
    "cache_miss",
]
RETRYABLE: frozenset[str] = frozenset({"rate_limited", "timeout", "server_error", "connection"})
# A reply before any has been seen: one submit_signal call with a short rationale (the offline
# model's are 60 to 110 tokens). The pre-run estimate assumes it; an uncapped reply's hold
# against a budget starts from it.
ASSUMED_REPLY_TOKENS = 120
BUDGET_POLL_S = 0.02  # how often an async request waiting on the budget looks again


class LLMError(Exception):
    """Every way a call can fail, as one type; the graph records `cause` and abstains."""

    def __init__(
        self,
        cause: Cause,
        message: str,
        *,
        status: int | None = None,
        attempts: int = 0,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.cause: Cause = cause
        self.message = message
        self.status = status
        self.attempts = attempts
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.cause in RETRYABLE

    def __str__(self) -> str:
        return f"LLM {self.cause}: {self.message} (attempts: {self.attempts})"


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: str = Field(description="raw JSON text as the model produced it; may be invalid")


class LLMMessage(BaseModel):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        """The OpenAI message dict, so a tool loop can append this turn to the next request."""
        wire: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            wire["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.tool_calls
            ]
        return wire


_UNREADABLE_ENTRY = (sqlite3.Error, zlib.error, ValueError, TypeError, UnicodeDecodeError)
"""What reading one damaged cache entry raises: its blob not zlib or not JSON, JSON of the
wrong shape (pydantic's ValidationError is a ValueError), a damaged page."""


class Usage(BaseModel):
    prompt_tokens: int = Field(0, ge=0)  # a negative count would make spend and budgets lie
    completion_tokens: int = Field(0, ge=0)
    total_tokens: int = Field(0, ge=0)


class LLMResponse(BaseModel):
    """What decision records keep: plain JSON, identical whether served live or from cache."""

    message: LLMMessage
    finish_reason: str | None
    usage: Usage
    model: str
    cached: bool
    latency_ms: float
    cost_usd: float | None  # None: n/a, the endpoint's price is unknown (see `Pricing`)


class LLMStats(BaseModel):
    """Per-run accounting that reports print and budgets are checked against. `calls` are
    requests sent; the tokens and cost are of the replies they got, what the provider billed.
    The `answered` figures count every answer, from the wire or the cache: a run's spend as if
    uncached, which a cached rerun reproduces. `probes` are the answers to llm.decision_format's
    capability probe, counted apart: asked once per data dir, they are no run's decisions."""

    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0  # None: n/a, the endpoint's price (or a reply's usage) unknown
    unmetered: int = 0  # replies that reported no token usage: spend cannot be counted
    answered: int = 0
    answered_prompt_tokens: int = 0
    answered_completion_tokens: int = 0
    probes: int = 0
    errors: dict[str, int] = Field(default_factory=dict)
    latencies_ms: list[float] = Field(default_factory=list)

    def since(self, earlier: LLMStats) -> LLMStats:
        """What was done after `earlier`, a copy of these stats taken before: one run's part of
        a model that outlives it (a `--compare` variant's sharing the base's)."""
        counts = {
            name: getattr(self, name) - getattr(earlier, name)
            for name, field in LLMStats.model_fields.items()
            if field.annotation is int
        }
        cost = (
            None
            if self.cost_usd is None or earlier.cost_usd is None
            else self.cost_usd - earlier.cost_usd
        )
        errors = {k: n - earlier.errors.get(k, 0) for k, n in self.errors.items()}
        return LLMStats(
            **counts,
            cost_usd=cost,
            errors={k: n for k, n in errors.items() if n},
            latencies_ms=self.latencies_ms[len(earlier.latencies_ms) :],
        )

    def answer(self, usage: Usage, *, probe: bool = False) -> None:
        """One more answer, from the wire or the cache, with the tokens it reported."""
        if probe:
            self.probes += 1
            return
        self.answered += 1
        self.answered_prompt_tokens += usage.prompt_tokens
        self.answered_completion_tokens += usage.completion_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def p50_latency_ms(self) -> float | None:
        return _percentile(self.latencies_ms, 50)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def p95_latency_ms(self) -> float | None:
        return _percentile(self.latencies_ms, 95)


def _percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile: always an observed latency, never an interpolated one."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


# Lenient views of the wire format: compatible servers omit fields OpenAI always sends.
class _WireFunction(BaseModel):
    name: str
    arguments: str = "{}"


class _WireToolCall(BaseModel):
    id: str
    function: _WireFunction


class _WireMessage(BaseModel):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[_WireToolCall] | None = None


class _WireChoice(BaseModel):
    message: _WireMessage
    finish_reason: str | None = None


class _WireCompletion(BaseModel):
    model: str = ""
    choices: list[_WireChoice] = Field(min_length=1)
    usage: Usage | None = None


@dataclass(frozen=True)
class Pricing:
    """What the price table says this endpoint charges for this model, or why it says nothing:
    run stats, USD budgets, estimates, reports, comparisons and the scorecard all read this."""

    price: ModelPrice | None
    unknown: str | None = None  # why there is no price; set exactly when `price` is None

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float | None:
        """USD for these tokens, or None: n/a, never $0 standing in for an unknown bill."""
        if self.price is None:
            return None
        return (
            prompt_tokens * self.price.input_per_mtok
            + completion_tokens * self.price.output_per_mtok
        ) / 1_000_000


FREE = Pricing(ModelPrice(input_per_mtok=0, output_per_mtok=0))


def pricing(settings: LLMSettings, base_url: str) -> Pricing:
    """llm.prices is one provider's list (OpenAI's by default), so it prices a model only at
    that provider's host, llm.prices_host: the same model name served by a local server (free)
    or another provider (its own list) would otherwise be billed at made-up figures."""
    if urlsplit(base_url).hostname != settings.prices_host:
        return Pricing(
            None,
            f"{base_url} is not at {settings.prices_host}, whose prices llm.prices holds "
            "(llm.prices_host); a local server is free, a hosted one bills by its own price list",
        )
    price = settings.prices.get(settings.model)
    if price is None:
        return Pricing(
            None, f"no price for model {settings.model!r} in llm.prices (config/default.toml)"
        )
    return Pricing(price)


def unusable_budget(max_usd: float, base_url: str, why: str) -> str:
    """A USD cap with nothing to count against it is refused, never silently ignored."""
    host = urlsplit(base_url).hostname
    return (
        f"config error: a budget of {max_usd:g} USD (--budget-usd or llm.max_usd) cannot be "
        f"applied: the cost is n/a here: {why}. If this endpoint bills by llm.prices, set "
        f"llm.prices_host={host} (AGENT_LLM__PRICES_HOST) and the model's price in llm.prices; "
        "otherwise drop the USD budget and cap the run with llm.max_calls or llm.max_tokens "
        "(AGENT_LLM__MAX_CALLS, AGENT_LLM__MAX_TOKENS)"
    )


def sdk_base_url(url: str) -> str:
    """The base URL as the OpenAI SDK holds it (with a trailing slash): cache keys and records
    name the endpoint as they always have, and paths resolve below it."""
    return url if url.endswith("/") else url + "/"


def request_fingerprint(
    base_url: str,
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    temperature: float,
    prompt_version: str,
    options: dict[str, Any] | None = None,
) -> str:
    """SHA-256 of everything that changes an answer: the cache key and the records' input hash.
    `options` (tool_choice, response_format) count only when set, so plain calls keep their keys."""
    material = {
        "base_url": base_url,
        "model": model,
        "messages": messages,
        "tools": tools,
        "temperature": temperature,
        "prompt_version": prompt_version,
    }
    if options:
        material["options"] = options
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Hold:
    """A request's worst case, held against the budget from before it is sent until its reply:
    its prompt's tokens bounded by the request's bytes (a token is at least one byte), and its
    reply's by the request's max_tokens, else by the longest reply the model has given."""

    prompt_tokens: int
    reply_tokens: int
    usd: float  # both priced; 0 where the endpoint is unpriced (no USD budget can apply there)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.reply_tokens


NOTHING = Hold(0, 0, 0.0)


class Budget:
    """What a run has spent against llm.max_calls, llm.max_tokens and llm.max_usd: one per run,
    drawn on by every model the run asks, so a `--compare` variant spends what the base model
    left rather than a budget of its own. A request in flight holds its worst case, so that
    the replies still to come cannot take the spend past a cap."""

    def __init__(self) -> None:
        self.changed = threading.Condition()  # a hold taken or settled
        self.calls = 0
        self.tokens = 0
        self.cost_usd = 0.0  # of the priced replies; a USD cap needs every reply priced
        self.unmetered = 0  # replies that reported no token usage
        self.in_flight = 0
        self.held_tokens = 0
        self.held_usd = 0.0

    def reserve(
        self, limits: LLMSettings, need: Hold, where: str, turns: Turns | None = None
    ) -> str | None:
        """Take a call and hold `need`, waiting while the requests in flight hold the room it
        needs; why it cannot be sent at all, else None. A request of a decision's `turns` is
        not sent once the run has stopped for it (`NotSent`), however long it has waited."""
        with self.changed:
            while True:
                if turns is not None:
                    turns.hold_back(self.changed)
                verdict = self.admit(limits, need, where)
                if verdict is not False:
                    break
                self.changed.wait()
        if verdict is True and turns is not None:
            turns.sent()
        return None if verdict is True else verdict

    def admit(self, limits: LLMSettings, need: Hold, where: str) -> bool | str:
        """One try: True when the call is taken and `need` held, False when it fits only once
        requests in flight settle, else why it cannot be sent whatever they spend."""
        with self.changed:
            refused = self._refusal(limits, need, where)
            if refused is not None:
                return refused
            if not self._within(limits, self.held_tokens + need.tokens, self.held_usd + need.usd):
                return False
            self.calls += 1
            self.in_flight += 1
            self.held_tokens += need.tokens
            self.held_usd += need.usd
            return True

    def settle(self, held: Hold, usage: Usage | None, cost: float | None) -> None:
        """A reply came: its hold gives way to what it used and cost; `usage` None (the reply
        reported none) leaves the spend unknown, and no spend cap can be kept after it."""
        with self.changed:
            if usage is None:
                self.unmetered += 1
            else:
                self.tokens += usage.prompt_tokens + usage.completion_tokens
                self.cost_usd += cost or 0.0
            self.release(held)

    def release(self, held: Hold) -> None:
        """No reply came (the provider bills none for an error): the hold is given back."""
        with self.changed:
            self.in_flight -= 1
            self.held_tokens -= held.tokens
            self.held_usd -= held.usd
            if self.in_flight == 0:  # no float residue where nothing is held
                self.held_tokens, self.held_usd = 0, 0.0
            self.changed.notify_all()

    def _within(self, limits: LLMSettings, tokens: int, usd: float) -> bool:
        """Whether the spend and `tokens` and `usd` more stay within the token and USD caps."""
        return (limits.max_tokens is None or self.tokens + tokens <= limits.max_tokens) and (
            limits.max_usd is None or self.cost_usd + usd <= limits.max_usd
        )

    def _refusal(self, limits: LLMSettings, need: Hold, where: str) -> str | None:
        s = limits
        if s.max_calls is not None and self.calls >= s.max_calls:
            return f"call budget spent: {self.calls} of llm.max_calls={s.max_calls}"
        if self.unmetered and (s.max_tokens is not None or s.max_usd is not None):
            capped = "llm.max_tokens" if s.max_tokens is not None else "llm.max_usd"
            return (
                f"{where} reported no token usage for {self.unmetered} repl"
                f"{'y' if self.unmetered == 1 else 'ies'}, so {capped} cannot be kept"
            )
        worst = f"{need.prompt_tokens:,} prompt + {need.reply_tokens:,} completion tokens at most"
        if s.max_tokens is not None and self.tokens + need.tokens > s.max_tokens:
            return (
                f"token budget: this request may use {need.tokens:,} tokens ({worst}), "
                f"{s.max_tokens - self.tokens:,} of llm.max_tokens={s.max_tokens} left"
            )
        if s.max_usd is not None and self.cost_usd + need.usd > s.max_usd:
            return (
                f"cost budget: this request may cost ${need.usd:.4f} ({worst}), "
                f"${s.max_usd - self.cost_usd:.4f} of llm.max_usd={s.max_usd:g} left"
            )
        return None


if TYPE_CHECKING:
    _AsyncResources = tuple[asyncio.AbstractEventLoop, httpx.AsyncClient, asyncio.Semaphore]


@dataclass(frozen=True)
class _Call:
    key: str
    body: dict[str, Any]  # the request's JSON
    started: float
    held: Hold  # against the budget until the reply


class LLMClient:
    """Chat completions with tools against one endpoint, spending from `budget`: its own unless
    another model of the same run shares one with it."""

    def __init__(
        self,
        settings: LLMSettings,
        *,
        api_key: str | None,
        base_url: str | None,
        cache_dir: Path | None,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        secrets: Sequence[str] = (),
        capabilities_file: Path | None = None,
        organization: str | None = None,
        project: str | None = None,
        budget: Budget | None = None,
    ) -> None:
        if settings.mode == "replay" and cache_dir is None:
            raise ConfigError(
                "config error: llm.mode=replay needs a cache directory to replay from"
            )
        self._settings = settings
        self._sleep = sleep
        self._asleep = asleep
        self._clock = clock
        # Every known secret, and anything shaped like one, is scrubbed from what the endpoint
        # says before it reaches a record, a report or the cache: a model can echo a key.
        self._redact = Redactor([*secrets, *([api_key] if api_key else [])])
        # Without a key only a self-hosted endpoint makes sense; api.openai.com would just 401.
        self._missing_key = not api_key and base_url is None
        # The endpoint as shown, recorded and keyed has its password masked; only the HTTP
        # client is given the URL itself (a proxy's login in it is a credential).
        self._url = sdk_base_url(base_url or OPENAI_BASE_URL)
        self.base_url = masked_url(self._url)
        self.pricing = pricing(settings, self.base_url)
        if settings.max_usd is not None and self.pricing.unknown is not None:
            raise ConfigError(
                unusable_budget(settings.max_usd, self.base_url, self.pricing.unknown)
            )
        self._headers = {
            "authorization": f"Bearer {api_key or KEYLESS_PLACEHOLDER}",
            "accept": "application/json",
            "user-agent": USER_AGENT,
        }
        # OpenAI bills and rate-limits a request to the organization and project these name;
        # without them a key that belongs to several is billed to its default.
        if organization:
            self._headers["openai-organization"] = organization
        if project:
            self._headers["openai-project"] = project
        self._http_client: httpx.Client | None = None  # made on the first request
        self._async: _AsyncResources | None = None
        self._opening = None if cache_dir is None else _open_cache(cache_dir)
        self._lock = threading.Lock()
        self._stats = LLMStats(cost_usd=None if self.pricing.price is None else 0.0)
        self.budget = budget or Budget()
        self._longest_reply = ASSUMED_REPLY_TOKENS  # completion tokens, for an uncapped reply
        self._failing = 0  # requests failed in a row, retryably, across the whole run
        self._backoff = wait_exponential_jitter(multiplier=0.5, max=settings.max_retry_after_s)
        self._decision_format: DecisionFormat | None = (
            None if settings.decision_format == "probe" else settings.decision_format
        )
        self._capabilities_file = capabilities_file
        self._format_lock = threading.Lock()
        self._opened_with: dict[str, Any] = {  # for another client of one run (`for_run`)
            "api_key": api_key,
            "base_url": base_url,
            "cache_dir": cache_dir,
            "sleep": sleep,
            "asleep": asleep,
            "clock": clock,
            "secrets": secrets,
            "capabilities_file": capabilities_file,
            "organization": organization,
            "project": project,
        }

    @property
    def _cache(self) -> diskcache.Cache | None:
        return None if self._opening is None else self._opening.result()

    # -- public API ---------------------------------------------------------------------------

    @property
    def model(self) -> str:
        return self._settings.model

    @property
    def stats(self) -> LLMStats:
        with self._lock:
            return self._stats.model_copy(deep=True)

    def cache_key(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        prompt_version: str,
        options: dict[str, Any] | None = None,
    ) -> str:
        """Everything that changes the answer, so decision records can cite the exact input."""
        return request_fingerprint(
            self.base_url,
            self._settings.model,
            messages,
            tools,
            self._settings.temperature,
            prompt_version,
            options,
        )

    def cached(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        prompt_version: str,
        options: dict[str, Any] | None = None,
    ) -> bool:
        """Whether `complete` would answer this from the cache, sending nothing."""
        if self._cache is None or self._settings.mode == "live":
            return False
        return self._key(messages, tools, prompt_version, options)[0] in self._cache

    def for_run(self) -> LLMClient:
        """A client of this endpoint, key, cache and budget whose stats are one run's alone:
        agent-ui's model answers the chat while a backtest runs beside it."""
        run = LLMClient(self._settings, budget=self.budget, **self._opened_with)
        with self._format_lock:
            run._decision_format = self._decision_format  # a format probed once serves both
        return run

    def send_nothing(self) -> None:
        """From now on a request the cache cannot answer fails as a cache miss: a run let off
        consent because its answers are cached must not spend after all."""
        self._settings = self._settings.model_copy(update={"mode": "replay"})

    @property
    def decision_format(self) -> DecisionFormat:
        """How an unattended decision asks for its signal: llm.decision_format, or with `probe`
        what the endpoint showed it can do, learnt on the first decision (not for a chat)."""
        with self._format_lock:
            if self._decision_format is None:
                from agent.capabilities import resolve_format

                self._decision_format = resolve_format(self, self._capabilities_file)
            return self._decision_format

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        prompt_version: str,
        options: dict[str, Any] | None = None,
        turns: Turns | None = None,
        probe: bool = False,
    ) -> LLMResponse:
        """One chat completion, from cache when allowed; any failure is a single `LLMError`.
        `options` are extra request fields: tool_choice, response_format. A request that must
        be sent waits for one of its decision's `turns`, holding it until the answer is in (retries
        included), and raises `NotSent` if the run stops first. A capability `probe`'s answer
        is counted apart from the run's (`LLMStats.probes`)."""
        key, options = self._key(messages, tools, prompt_version, options)
        cached = self._from_cache(key, probe)
        if cached is not None:
            return cached
        with turns or contextlib.nullcontext():
            body = self._request(key, messages, tools, options)
            call = self._call(key, body, self._reserve_call(body, turns))
            retrying = Retrying(**self._retry_policy(), sleep=self._sleep)
            try:
                with self._holding(call):
                    completion = retrying(self._send, call)
            except LLMError as exc:
                raise self._failed(exc, retrying.statistics["attempt_number"]) from None
        return self._finish(call, completion, probe)

    async def acomplete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        prompt_version: str,
        options: dict[str, Any] | None = None,
    ) -> LLMResponse:
        """`complete` for asyncio; at most `settings.concurrency` requests are in flight."""
        key, options = self._key(messages, tools, prompt_version, options)
        cached = self._from_cache(key)
        if cached is not None:
            return cached
        body = self._request(key, messages, tools, options)
        call = self._call(key, body, await self._areserve_call(body))
        retrying = AsyncRetrying(**self._retry_policy(), sleep=self._asleep)
        try:
            with self._holding(call):
                completion = await retrying(self._asend, call)
        except LLMError as exc:
            raise self._failed(exc, retrying.statistics["attempt_number"]) from None
        return self._finish(call, completion)

    @property
    def _http(self) -> httpx.Client:
        """The HTTP client, created when the first request goes out: a fully cached run never
        imports httpx."""
        with self._lock:
            if self._http_client is None:
                import httpx

                self._http_client = httpx.Client(**self._client_options(asynchronous=False))
            return self._http_client

    def _client_options(self, *, asynchronous: bool) -> dict[str, Any]:
        """One timeout for each phase (connect, write, read, pool) and redirects followed,
        as the SDK had them; no TLS context for a plain-http endpoint (core.plain_http)."""
        import httpx

        from core.plain_http import transport_options

        return {
            "base_url": self._url,
            "headers": self._headers,
            "timeout": self._settings.timeout_s,
            "follow_redirects": True,
            **transport_options(self._url, httpx.Limits(**POOL), asynchronous=asynchronous),
        }

    def open(self) -> None:
        """Make the HTTP client now (httpx's import, the TLS context): a run about to send a
        wave of requests opens it first, so that its prompts are not built beside the import
        while the first request waits for it."""
        self._http  # noqa: B018 - made on first use

    def close(self) -> None:
        if self._http_client is not None:
            self._http_client.close()
        if self._cache is not None:
            self._cache.close()

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async[1].aclose()
            self._async = None
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- shared by sync and async -------------------------------------------------------------

    def _key(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        prompt_version: str,
        options: dict[str, Any] | None,
    ) -> tuple[str, dict[str, Any] | None]:
        """The request's cache key and its options with the output cap."""
        options = self._with_cap(options)
        return self.cache_key(messages, tools, prompt_version, options), options

    def _from_cache(self, key: str, probe: bool = False) -> LLMResponse | None:
        if self._cache is None or self._settings.mode == "live":
            return None
        try:
            stored = self._cache.get(key)
            if stored is None:
                return None
            cached = LLMResponse.model_validate(
                {**stored, "cached": True, "latency_ms": 0.0, "cost_usd": 0.0}
            )
        except _UNREADABLE_ENTRY as exc:  # a damaged entry: asked again, and stored anew
            log.warning("an unreadable entry in the LLM cache (%s): a miss", type(exc).__name__)
            return None
        with self._lock:
            self._stats.cache_hits += 1
            self._stats.answer(cached.usage, probe=probe)
        log.debug("LLM cache hit %s", key[:12])
        return cached

    def _request(
        self,
        key: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        options: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """The checks that must pass before anything leaves the machine, then the request's
        JSON."""
        mode = self._settings.mode
        if mode == "replay":
            raise self._failed(
                LLMError(
                    "cache_miss",
                    f"llm.mode=replay and no cached answer for key {key[:12]}; nothing was sent. "
                    "Run once with llm.mode=cache (AGENT_LLM__MODE=cache) and an API key to fill "
                    "the cache, or use the offline model",
                )
            )
        if self._missing_key:
            raise self._failed(
                LLMError(
                    "auth",
                    "no API key: set OPENAI_API_KEY, or OPENAI_BASE_URL for a local "
                    "OpenAI-compatible server",
                )
            )
        body: dict[str, Any] = {
            "model": self._settings.model,
            "messages": messages,
            "temperature": self._settings.temperature,
        }
        if tools:
            body["tools"] = tools
        body.update(options or {})
        return body

    def _call(self, key: str, body: dict[str, Any], held: Hold) -> _Call:
        tools = len(body.get("tools") or [])
        log.debug("LLM call %s: %d messages, %d tools", key[:12], len(body["messages"]), tools)
        return _Call(key, body, self._clock(), held)

    def _with_cap(self, options: dict[str, Any] | None) -> dict[str, Any] | None:
        cap = self._settings.max_output_tokens
        return options if cap is None else {"max_tokens": cap, **(options or {})}

    def _reserve_call(self, body: dict[str, Any], turns: Turns | None) -> Hold:
        """Budgets are checked before sending, against the run's `Budget`: the request holds
        its worst case there, waiting while requests in flight hold the room it needs, and is
        not sent when that does not fit what is left, nor once its run has stopped."""
        held = self._worst_case(body)
        return self._taken(self.budget.reserve(self._settings, held, self.base_url, turns), held)

    async def _areserve_call(self, body: dict[str, Any]) -> Hold:
        """`_reserve_call` for asyncio: the requests it waits for settle on this event loop."""
        held = self._worst_case(body)
        while (verdict := self.budget.admit(self._settings, held, self.base_url)) is False:
            await asyncio.sleep(BUDGET_POLL_S)
        return self._taken(None if verdict is True else verdict, held)

    def _taken(self, refused: str | None, held: Hold) -> Hold:
        if refused is not None:
            raise self._failed(LLMError("budget", f"{refused}; nothing was sent"))
        with self._lock:
            self._stats.calls += 1
        return held

    def _worst_case(self, body: dict[str, Any]) -> Hold:
        """At most a token per byte of the request (any tokenizer's token is a byte or more;
        tiktoken's count is no bound: it gave 84 for a gpt-5.1 prompt billed at 161), and the
        reply's max_tokens, else the longest reply this model has given. Nothing without a
        token or USD cap."""
        if self._settings.max_tokens is None and self._settings.max_usd is None:
            return NOTHING
        wire = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        cap = body.get("max_tokens")
        with self._lock:
            reply = self._longest_reply if cap is None else cap
        usd = self.pricing.cost(len(wire), reply)
        return Hold(len(wire), reply, usd or 0.0)

    @contextlib.contextmanager
    def _holding(self, call: _Call) -> Iterator[None]:
        """A request that gets no reply (an error, an interrupt) gives its hold back; a reply
        settles it in `_finish`."""
        try:
            yield
        except BaseException:
            self.budget.release(call.held)
            raise

    def _retry_policy(self) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self._settings.max_retries + 1),
            "wait": self._wait,
            "retry": retry_if_exception(self._worth_retrying),
            "before_sleep": self._before_sleep,
            "reraise": True,
        }

    def _worth_retrying(self, exc: BaseException) -> bool:
        """A retryable failure is retried, unless the endpoint has failed
        `llm.breaker_failures` requests in a row: a dead endpoint is not waited on five times
        per decision, and the run's breaker trips within one timeout instead of minutes."""
        if not (isinstance(exc, LLMError) and exc.retryable):
            return False
        with self._lock:
            self._failing += 1
            return self._failing < self._settings.breaker_failures

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, LLMError) and exc.retry_after is not None:
            return min(exc.retry_after, self._settings.max_retry_after_s)
        return self._backoff(state)

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        with self._lock:
            self._stats.retries += 1
        log.warning(
            "LLM %s (HTTP %s) on attempt %d of %d; retrying in %.2fs",
            getattr(exc, "cause", "error"),
            getattr(exc, "status", None),
            state.attempt_number,
            self._settings.max_retries + 1,
            state.upcoming_sleep,
        )

    def _send(self, call: _Call) -> _WireCompletion:
        import httpx

        try:
            response = self._http.post(COMPLETIONS, json=call.body)
        except httpx.HTTPError as exc:
            raise self._unreached(exc) from None
        return self._read(response)

    async def _asend(self, call: _Call) -> _WireCompletion:
        import httpx

        client, in_flight = self._async_resources()
        async with in_flight:
            try:
                response = await client.post(COMPLETIONS, json=call.body)
            except httpx.HTTPError as exc:
                raise self._unreached(exc) from None
        return self._read(response)

    def _async_resources(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """Created per event loop: both the HTTP pool and the semaphore belong to one loop."""
        import httpx

        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            client = httpx.AsyncClient(**self._client_options(asynchronous=True))
            self._async = (loop, client, asyncio.Semaphore(self._settings.concurrency))
        return self._async[1], self._async[2]

    def _read(self, response: httpx.Response) -> _WireCompletion:
        """A 4xx or 5xx is an error with the provider's reason (the SDK raised on the same
        statuses); anything else is a completion to parse."""
        if response.is_error:
            raise self._status_error(response.status_code, response.text, response.headers)
        return self._parse(response.text)

    def _parse(self, text: str) -> _WireCompletion:
        try:
            return _WireCompletion.model_validate_json(text)
        except ValidationError as exc:
            detail = exc.errors()[0]
            where = ".".join(str(p) for p in detail["loc"]) or "body"
            raise LLMError(
                "bad_response",
                f"unusable chat completion from {self.base_url}: {where}: {detail['msg']}",
                status=200,
            ) from None

    def _unreached(self, exc: httpx.HTTPError) -> LLMError:
        """No response: a timeout in any phase, or anything else that stopped the exchange."""
        import httpx

        if isinstance(exc, httpx.TimeoutException):
            text = f"no response from {self.base_url} within {self._settings.timeout_s}s"
            return LLMError("timeout", self._redact(text))
        return LLMError("connection", self._redact(f"cannot reach {self.base_url}: {exc}"))

    def _status_error(self, status: int, body: str, headers: Any) -> LLMError:
        """An HTTP error status onto our causes; the provider's own words go in the message."""
        cause: Cause
        if status == 429:
            cause = "rate_limited"
        elif status == 408:
            cause = "timeout"
        elif status >= 500:
            cause = "server_error"
        elif status in (401, 403):
            cause = "auth"
        else:
            cause = "bad_request"
        text = f"HTTP {status} from {self.base_url}: {_provider_message(status, body)}"
        if cause == "auth":
            text += " (check OPENAI_API_KEY and that the key may use this model)"
        text = self._redact(text)
        return LLMError(cause, text, status=status, retry_after=_retry_after(headers))

    def _finish(self, call: _Call, completion: _WireCompletion, probe: bool = False) -> LLMResponse:
        choice = completion.choices[0]
        usage = completion.usage or Usage()
        cost = (
            None  # no usage reported: this reply's cost is unknown, never $0
            if completion.usage is None
            else self.pricing.cost(usage.prompt_tokens, usage.completion_tokens)
        )
        self.budget.settle(call.held, completion.usage, cost)
        latency_ms = (self._clock() - call.started) * 1000
        redact = self._redact  # every text the endpoint sent back: a key it echoes goes nowhere
        response = LLMResponse(
            message=LLMMessage(
                role=choice.message.role,
                content=None if choice.message.content is None else redact(choice.message.content),
                tool_calls=[
                    ToolCall(
                        id=redact(c.id),
                        name=redact(c.function.name),
                        arguments=redact(c.function.arguments),
                    )
                    for c in choice.message.tool_calls or []
                ],
            ),
            finish_reason=None if choice.finish_reason is None else redact(choice.finish_reason),
            usage=usage,
            model=redact(completion.model or self._settings.model),
            cached=False,
            latency_ms=latency_ms,
            cost_usd=cost,
        )
        with self._lock:
            self._failing = 0
            self._longest_reply = max(self._longest_reply, usage.completion_tokens)
            st = self._stats
            st.answer(usage, probe=probe)
            st.prompt_tokens += usage.prompt_tokens
            st.completion_tokens += usage.completion_tokens
            if completion.usage is None:  # what this reply cost is unknown: so is the run's
                st.unmetered += 1
                st.cost_usd = None
            elif st.cost_usd is not None and cost is not None:
                st.cost_usd += cost
            st.latencies_ms.append(latency_ms)
        if self._cache is not None:
            self._cache.set(
                call.key,
                response.model_dump(
                    mode="json", include={"message", "finish_reason", "usage", "model"}
                ),
            )
        log.debug(
            "LLM call %s done: %d+%d tokens, %.0f ms, cost %s",
            call.key[:12],
            usage.prompt_tokens,
            usage.completion_tokens,
            latency_ms,
            "n/a" if cost is None else f"${cost:.6f}",
        )
        return response

    def _failed(self, exc: LLMError, attempts: int = 0) -> LLMError:
        exc.attempts = attempts
        with self._lock:
            self._stats.errors[exc.cause] = self._stats.errors.get(exc.cause, 0) + 1
        log.warning("%s", exc)
        return exc


def _open_cache(cache_dir: Path) -> Future[diskcache.Cache]:
    """The cache opened on a thread of its own: SQLite creates and syncs its files (0.02-0.1 s,
    nearly all of it waiting on the disk) while the run builds its strategy and first prompt.
    A failure to open is raised where the cache is first used."""
    opened: Future[diskcache.Cache] = Future()

    def open_() -> None:
        try:
            try:
                cache = diskcache.Cache(str(cache_dir), disk=diskcache.JSONDisk)
            except sqlite3.DatabaseError as exc:
                if type(exc) is not sqlite3.DatabaseError:  # locked, full, read-only: not damage
                    raise
                kept = _set_aside(cache_dir, exc)  # not a database, or a damaged one
                log.warning("the LLM cache %s could not be read (%s): kept as %s, starting a "
                            "new one (replies are asked again)", cache_dir, exc, kept.name)  # fmt: skip
                cache = diskcache.Cache(str(cache_dir), disk=diskcache.JSONDisk)
            opened.set_result(cache)
        except BaseException as exc:  # handed to whoever uses the cache
            opened.set_exception(exc)

    threading.Thread(target=open_, name="llm-cache", daemon=True).start()
    return opened


def _set_aside(cache_dir: Path, exc: Exception) -> Path:
    """Move an unreadable cache.db (and its journal files) aside, never deleting what a person
    may want to look at; returns where it went."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    database = cache_dir / "cache.db"
    kept = database.with_name(f"cache.db.unreadable-{stamp}")
    database.rename(kept)
    for suffix in ("-wal", "-shm"):
        cache_dir.joinpath(f"cache.db{suffix}").unlink(missing_ok=True)
    return kept


def _provider_message(status: int, raw: str) -> str:
    """OpenAI puts the reason in error.message; OpenRouter adds the upstream's in metadata.raw.
    A body that is not JSON is quoted as it came; an empty one gives the status alone."""
    body: Any = raw.strip()
    with contextlib.suppress(ValueError):
        body = json.loads(body)
    if isinstance(body, dict):
        body = body.get("error", body)
    if not isinstance(body, dict):
        return str(body)[:500] if body else f"Error code: {status}"
    text = str(body.get("message") or f"Error code: {status}")
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("raw"), str):
        text = f"{text}: {metadata['raw']}"
    return text


def _retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait: retry-after-ms, else Retry-After (seconds or date)."""
    if millis := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
