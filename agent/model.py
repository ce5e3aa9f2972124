"""Which model answers: an OpenAI-compatible endpoint when one is configured, else the offline
model, said in one line so nobody mistakes rules for an LLM."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from agent.in_flight import Turns
from agent.llm import Budget, LLMClient, LLMResponse, LLMStats, Pricing
from agent.offline import OfflineModel
from config import Settings
from config.settings import DecisionFormat
from core.errors import ConfigError
from core.logging import masked_url


class ChatModel(Protocol):
    """What the graph needs of a model; LLMClient and OfflineModel both provide it."""

    @property
    def model(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    @property
    def stats(self) -> LLMStats: ...

    @property
    def pricing(self) -> Pricing: ...

    @property
    def decision_format(self) -> DecisionFormat: ...

    def cache_key(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        prompt_version: str,
        options: dict[str, Any] | None = None,
    ) -> str: ...

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        prompt_version: str,
        options: dict[str, Any] | None = None,
        turns: Turns | None = None,
    ) -> LLMResponse: ...

    def for_run(self) -> ChatModel: ...

    def open(self) -> None: ...

    def close(self) -> None: ...


OFFLINE_NOTICE = (
    "notice: no LLM configured (OPENAI_API_KEY / OPENAI_BASE_URL unset): using the built-in "
    "offline model, deterministic rules, not an LLM"
)


def uses_offline(settings: Settings) -> bool:
    provider = settings.llm.provider
    if provider == "auto":
        return settings.openai_api_key is None and settings.openai_base_url is None
    return provider == "offline"


def open_model(
    settings: Settings, notify: Callable[[str], None], budget: Budget | None = None
) -> ChatModel:
    """The configured model; replay mode with the offline model is allowed (it never calls out).
    A model opened beside another in one run is given that one's `budget` to spend from."""
    if uses_offline(settings):
        notify(OFFLINE_NOTICE)
        return OfflineModel()
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    keyless = not key and not settings.openai_base_url
    if settings.llm.provider == "openai" and keyless and settings.llm.mode != "replay":
        raise ConfigError(
            "config error: llm.provider=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL "
            "for a local server such as Ollama)"
        )
    url = settings.openai_base_url
    if url is not None and not _is_http_url(url):
        raise ConfigError(
            f"config error: OPENAI_BASE_URL {masked_url(url)!r} is not an http(s) URL; set it to the "
            "endpoint's /v1 address (e.g. http://localhost:11434/v1 for Ollama) or unset it"
        )
    return LLMClient(
        settings.llm,
        api_key=key,
        base_url=settings.openai_base_url,
        cache_dir=settings.data_dir / "llm-cache",
        capabilities_file=settings.data_dir / "llm-capabilities.json",
        secrets=settings.secret_values(),
        organization=settings.openai_org_id,
        project=settings.openai_project_id,
        budget=budget,
    )


def _is_http_url(url: str) -> bool:
    """What the client can send to: an http(s) scheme and a host, or every call fails."""
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket, or a port that is not a number
        return False
