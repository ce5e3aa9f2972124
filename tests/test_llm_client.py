"""LLM client against real OpenAI wire captures, played by a loopback server through the real
HTTP stack: parsing, retries, cache, budgets, concurrency, and no key leaking anywhere."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import sqlite3
import ssl
import subprocess
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import diskcache.core
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback_openai import LoopbackOpenAI, Scripted, openai_server  # noqa: F401

from agent.in_flight import InFlight, NotSent, Turns
from agent.llm import Budget, Hold, LLMClient, LLMError, LLMResponse, Usage
from agent.model import open_model
from config.settings import LLMSettings, ModelPrice, load_settings
from core.errors import ConfigError
from core.plain_http import transport_options

CAPTURES = Path(__file__).parent / "fixtures" / "openai" / "extracted_json"
SINGLE = "openai_chat_tool_call_single__gpt-4o_2025-05.json"
SINGLE_GPT51 = "openai_chat_tool_call__vcrpy_raw__gpt-5.1.json"
PARALLEL = "openai_chat_parallel_tool_calls__gpt-4o_2025-10.json"
ERROR_400 = "openai_chat_error_400_unsupported_value.json"
ERROR_401 = "openai_chat_error_401_invalid_api_key.json"
OPENROUTER_429 = "openrouter_chat_error_429.json"

PLANTED_KEY = "sk-test-PLANTED-" + "Zq7" * 10
# The loopback server stands in for OpenAI: llm.prices applies at its host.
PRICED_HOST = "127.0.0.1"
PRICES = {
    "gpt-4o": ModelPrice(input_per_mtok=2.50, output_per_mtok=10.00),
    "gpt-4o-mini": ModelPrice(input_per_mtok=0.15, output_per_mtok=0.60),
    "gpt-5.1": ModelPrice(input_per_mtok=1.25, output_per_mtok=10.00),
}
USER = [{"role": "user", "content": "BTCUSDT closed at 97000; propose a signal."}]
VCR_PORT = 18431  # fixed: the port is part of the recorded request
VCR_BASE_URL = f"http://127.0.0.1:{VCR_PORT}/v1"


def capture(name: str, index: int = 0) -> dict[str, Any]:
    return json.loads((CAPTURES / name).read_text())["interactions"][index]


def replay(name: str, index: int = 0, **extra: Any) -> Scripted:
    """The captured response, byte-for-byte the provider's body and status."""
    found = capture(name, index)
    return Scripted(found["response_status"]["code"], found["response_body"], **extra)


def answer() -> Scripted:
    """A real plain-text completion (gpt-5.1 replying "Hello!")."""
    return replay(SINGLE_GPT51, 1)


def prompt(n: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"bar {n}: propose a signal"}]


def expected_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    price = PRICES[model]
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_llm(
    openai_server: LoopbackOpenAI,  # noqa: F811
    tmp_path: Path,
    sleeps: list[float],
) -> Iterator[Callable[..., LLMClient]]:
    """Clients pointed at the loopback server, with a recording sleep and a temp cache."""
    made: list[LLMClient] = []

    def make(
        *,
        api_key: str | None = PLANTED_KEY,
        base_url: str | None = None,
        cache_dir: Path | None = tmp_path / "llm-cache",
        **llm: Any,
    ) -> LLMClient:
        settings = LLMSettings(
            **{"model": "gpt-4o", "prices": PRICES, "prices_host": PRICED_HOST, **llm}
        )
        client = LLMClient(
            settings,
            api_key=api_key,
            base_url=base_url or openai_server.base_url,
            cache_dir=cache_dir,
            sleep=sleeps.append,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


# -- 1. the real wire format ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "index", "tool", "arguments", "tokens"),
    [
        (SINGLE, 0, "get_user_country", {}, (68, 12, 80)),
        (SINGLE, 1, "final_result", {"city": "Mexico City", "country": "Mexico"}, (89, 36, 125)),
        (SINGLE_GPT51, 0, "add_exclamation", {"message": "Hello"}, (161, 24, 185)),
    ],
)
def test_real_single_tool_call_is_parsed_and_priced(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    name: str,
    index: int,
    tool: str,
    arguments: dict[str, str],
    tokens: tuple[int, int, int],
) -> None:
    captured = capture(name, index)
    sent = captured["request_body"]
    openai_server.script(replay(name, index))
    llm = make_llm(model=sent["model"])

    response = llm.complete(sent["messages"], sent["tools"], prompt_version="p1")

    [call] = response.message.tool_calls
    assert (call.name, json.loads(call.arguments)) == (tool, arguments)
    assert call.id == captured["response_body"]["choices"][0]["message"]["tool_calls"][0]["id"]
    assert response.finish_reason == "tool_calls"
    assert response.message.content is None
    usage = response.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == tokens
    assert response.cost_usd == pytest.approx(expected_cost(sent["model"], *tokens[:2]))
    assert response.model == captured["response_body"]["model"]
    assert not response.cached
    assert LLMResponse.model_validate_json(response.model_dump_json()) == response
    [request] = openai_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {PLANTED_KEY}"
    assert request.body["messages"] == sent["messages"]
    assert request.body["tools"] == sent["tools"]
    assert (request.body["model"], request.body["temperature"]) == (sent["model"], 0.0)


def test_real_parallel_tool_calls_round_trip_into_the_next_request(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
) -> None:
    sent = capture(PARALLEL, 0)["request_body"]
    openai_server.script(replay(PARALLEL, 0))
    llm = make_llm()

    response = llm.complete(sent["messages"], sent["tools"], prompt_version="p1")

    calls = [(c.name, json.loads(c.arguments)) for c in response.message.tool_calls]
    assert calls == [("delete_file", {"path": ".env"}), ("create_file", {"path": "test.txt"})]
    assert response.cost_usd == pytest.approx(expected_cost("gpt-4o", 71, 46))
    assert llm.stats.prompt_tokens == 71
    assert llm.stats.completion_tokens == 46
    # The assistant turn, sent back, is exactly what the real client sent on its next request.
    assert response.message.to_wire() == capture(PARALLEL, 1)["request_body"]["messages"][2]


def test_real_400_is_not_retried_and_keeps_the_provider_message(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    sleeps: list[float],
) -> None:
    sent = capture(ERROR_400)["request_body"]
    openai_server.script(replay(ERROR_400), answer())
    llm = make_llm(model="gpt-4o-mini")

    with pytest.raises(LLMError) as caught:
        llm.complete(sent["messages"], None, prompt_version="p1")

    error = caught.value
    assert (error.cause, error.status, error.attempts) == ("bad_request", 400, 1)
    assert "'messages[0].role' does not support 'system' with this model" in error.message
    assert len(openai_server.requests) == 1
    assert sleeps == []
    assert llm.stats.errors == {"bad_request": 1}


def test_real_401_is_not_retried_and_never_shows_the_key(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    sleeps: list[float],
) -> None:
    openai_server.script(replay(ERROR_401), answer())
    llm = make_llm()

    with pytest.raises(LLMError) as caught:
        llm.complete(USER, None, prompt_version="p1")

    error = caught.value
    assert (error.cause, error.status, error.attempts) == ("auth", 401, 1)
    assert "Incorrect API key provided" in error.message
    assert PLANTED_KEY not in str(error)
    assert len(openai_server.requests) == 1
    assert sleeps == []


def test_real_429s_are_retried_honouring_retry_after_up_to_the_cap(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    sleeps: list[float],
) -> None:
    # OpenRouter's captured 429s carry no Retry-After; we add the headers OpenAI sends.
    openai_server.script(
        replay(OPENROUTER_429, 0, headers={"retry-after": "2"}),
        replay(OPENROUTER_429, 1, headers={"retry-after": "120"}),
        replay(OPENROUTER_429, 2, headers={"retry-after-ms": "1500", "retry-after": "9"}),
        answer(),
    )
    llm = make_llm(max_retries=4, max_retry_after_s=10)

    response = llm.complete(USER, None, prompt_version="p1")

    assert response.message.content == "Hello!"
    assert sleeps == [2.0, 10.0, 1.5]
    assert len(openai_server.requests) == 4
    assert llm.stats.retries == 3


def test_persistent_429_raises_rate_limited_with_the_upstream_reason(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    sleeps: list[float],
) -> None:
    openai_server.script(*(replay(OPENROUTER_429, i) for i in range(3)))
    llm = make_llm(max_retries=1, max_retry_after_s=5)

    with pytest.raises(LLMError) as caught:
        llm.complete(USER, None, prompt_version="p1")

    error = caught.value
    assert (error.cause, error.status, error.attempts) == ("rate_limited", 429, 2)
    assert "temporarily rate-limited upstream" in error.message
    assert len(openai_server.requests) == 2
    assert len(sleeps) == 1
    assert 0 < sleeps[0] <= 5  # no header: exponential backoff, capped


# -- 2. vcrpy cassettes work with this client -------------------------------------------------


@pytest.fixture
def vcr_config() -> dict[str, Any]:
    return {
        "filter_headers": ["authorization", "openai-organization", "openai-project", "api-key"],
        "match_on": ["method", "scheme", "host", "port", "path", "body"],
    }


@pytest.mark.vcr
def test_vcr_cassette_replays_the_call_without_the_key(vcr: Any) -> None:
    """Re-record with `pytest tests/test_llm_client.py -k test_vcr_cassette --record-mode=once` after
    deleting the cassette; only then is the loopback server started on the fixed port."""
    recording = not vcr.write_protected
    server = LoopbackOpenAI(port=VCR_PORT).start() if recording else None
    if server:
        server.script(replay(SINGLE, 0))
    sent = capture(SINGLE)["request_body"]
    settings = LLMSettings(model="gpt-4o", prices=PRICES, prices_host=PRICED_HOST, max_retries=0)
    try:
        with LLMClient(settings, api_key=PLANTED_KEY, base_url=VCR_BASE_URL, cache_dir=None) as llm:
            response = llm.complete(sent["messages"], sent["tools"], prompt_version="p1")
    finally:
        if server:
            server.stop()

    assert response.message.tool_calls[0].name == "get_user_country"
    assert vcr.play_count == (0 if recording else 1)
    assert all("authorization" not in r.headers for r in vcr.requests)
    cassette = Path(vcr._path)
    if cassette.exists():  # written when the recording test ends; always there in CI
        text = cassette.read_text()
        assert PLANTED_KEY not in text
        assert "authorization" not in text.lower()


# -- 3. transient failures --------------------------------------------------------------------


def test_5xx_then_success(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    sleeps: list[float],
) -> None:
    overloaded = {"error": {"message": "The server is overloaded", "type": "server_error"}}
    openai_server.script(Scripted(503, overloaded), answer())
    llm = make_llm(max_retry_after_s=3)

    assert llm.complete(USER, None, prompt_version="p1").message.content == "Hello!"
    assert len(openai_server.requests) == 2
    assert len(sleeps) == 1
    assert 0 < sleeps[0] <= 3


def test_persistent_500_gives_server_error_after_max_retries_plus_one(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    sleeps: list[float],
) -> None:
    broken = Scripted(500, {"error": {"message": "internal failure", "type": "server_error"}})
    openai_server.script(broken, broken, broken, answer())
    llm = make_llm(max_retries=2)

    with pytest.raises(LLMError) as caught:
        llm.complete(USER, None, prompt_version="p1")

    error = caught.value
    assert (error.cause, error.status, error.attempts) == ("server_error", 500, 3)
    assert "internal failure" in error.message
    assert len(openai_server.requests) == 3
    assert len(sleeps) == 2


def test_timeout_then_success(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    sleeps: list[float],
) -> None:
    openai_server.script(replace_delay(answer(), 1.0), answer())
    llm = make_llm(timeout_s=0.3)

    assert llm.complete(USER, None, prompt_version="p1").message.content == "Hello!"
    assert len(openai_server.requests) == 2
    assert len(sleeps) == 1


def replace_delay(item: Scripted, delay_s: float) -> Scripted:
    return Scripted(item.status, item.body, item.headers, delay_s)


def test_connection_refused_gives_connection_error(
    make_llm: Callable[..., LLMClient], sleeps: list[float]
) -> None:
    with socket.socket() as probe:  # a port that was just free and now has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    llm = make_llm(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1)

    with pytest.raises(LLMError) as caught:
        llm.complete(USER, None, prompt_version="p1")

    error = caught.value
    assert (error.cause, error.status, error.attempts) == ("connection", None, 2)
    assert f"127.0.0.1:{port}" in error.message
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"id": "chatcmpl-x", "object": "chat.completion", "model": "gpt-4o", "choices": []},
        "<html><body>502 Bad Gateway</body></html>",
    ],
    ids=["no-choices", "not-json"],
)
def test_malformed_200_is_bad_response_and_not_retried(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    body: object,
) -> None:
    openai_server.script(Scripted(200, body), answer())
    llm = make_llm()

    with pytest.raises(LLMError) as caught:
        llm.complete(USER, None, prompt_version="p1")

    assert (caught.value.cause, caught.value.attempts) == ("bad_response", 1)
    assert len(openai_server.requests) == 1


def test_no_key_and_no_base_url_fails_before_sending() -> None:
    settings = LLMSettings(max_retries=0)
    with (
        LLMClient(settings, api_key=None, base_url=None, cache_dir=None) as llm,
        pytest.raises(LLMError) as caught,
    ):
        llm.complete(USER, None, prompt_version="p1")
    assert caught.value.cause == "auth"
    assert "OPENAI_API_KEY" in caught.value.message


def test_keyless_local_server_gets_a_placeholder_key(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
) -> None:
    openai_server.script(answer())
    llm = make_llm(api_key=None, model="llama3.1:8b")

    assert llm.complete(USER, None, prompt_version="p1").message.content == "Hello!"
    assert openai_server.requests[0].headers["authorization"] == "Bearer not-needed"


# -- 4. cache ---------------------------------------------------------------------------------


def test_identical_call_is_served_from_cache_without_http(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
) -> None:
    openai_server.script(replay(SINGLE, 0))
    llm = make_llm()

    first = llm.complete(USER, None, prompt_version="p1")
    second = llm.complete(USER, None, prompt_version="p1")

    assert len(openai_server.requests) == 1
    assert second.cached and not first.cached
    assert (second.latency_ms, second.cost_usd) == (0.0, 0.0)
    assert second.message == first.message
    assert second.usage == first.usage
    assert (llm.stats.calls, llm.stats.cache_hits) == (1, 1)


def test_prompt_version_and_temperature_are_part_of_the_key(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
) -> None:
    openai_server.script(answer(), answer(), answer())
    llm = make_llm()
    llm.complete(USER, None, prompt_version="p1")

    assert not llm.complete(USER, None, prompt_version="p2").cached
    assert not make_llm(temperature=0.7).complete(USER, None, prompt_version="p1").cached
    assert len(openai_server.requests) == 3


def test_live_mode_always_calls_but_still_fills_the_cache(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
) -> None:
    openai_server.script(answer(), answer())
    live = make_llm(mode="live")
    live.complete(USER, None, prompt_version="p1")
    live.complete(USER, None, prompt_version="p1")
    assert len(openai_server.requests) == 2

    assert make_llm(mode="replay").complete(USER, None, prompt_version="p1").cached


def test_replay_with_a_cold_cache_sends_nothing(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
) -> None:
    openai_server.script(answer())
    llm = make_llm(mode="replay")

    with pytest.raises(LLMError) as caught:
        llm.complete(USER, None, prompt_version="p1")

    assert caught.value.cause == "cache_miss"
    assert "llm.mode=replay" in caught.value.message
    assert "AGENT_LLM__MODE=cache" in caught.value.message
    assert openai_server.requests == []


def test_replay_without_a_cache_dir_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="replay"):
        LLMClient(LLMSettings(mode="replay"), api_key=None, base_url=None, cache_dir=None)


def test_cache_is_stored_as_json_never_pickle(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    tmp_path: Path,
) -> None:
    openai_server.script(replay(PARALLEL, 0))
    cache_dir = tmp_path / "json-cache"
    with make_llm(cache_dir=cache_dir) as llm:
        llm.complete(USER, None, prompt_version="p1")

    with sqlite3.connect(cache_dir / "cache.db") as db:
        rows = db.execute("SELECT mode, filename, value FROM Cache").fetchall()
    assert len(rows) == 1
    mode, filename, value = rows[0]
    assert mode != diskcache.core.MODE_PICKLE
    raw = (cache_dir / filename).read_bytes() if filename else value
    stored = json.loads(zlib.decompress(raw))
    assert set(stored) == {"message", "finish_reason", "usage", "model"}
    assert stored["message"]["tool_calls"][0]["name"] == "delete_file"


def test_a_cache_file_that_is_no_database_is_moved_aside_and_the_run_goes_on(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Random bytes over cache.db made every call raise (and an unattended loop log a longer
    traceback at each decision); the run now keeps the broken file aside and starts afresh."""
    folder = tmp_path / "broken-cache"
    folder.mkdir()
    (folder / "cache.db").write_bytes(os.urandom(5000))
    openai_server.script(answer())
    llm = make_llm(cache_dir=folder)
    assert llm.complete(prompt(1), None, prompt_version="p1").message.content
    assert llm.complete(prompt(1), None, prompt_version="p1").cached  # the new cache works
    assert [p.name for p in folder.glob("cache.db.unreadable-*")]
    assert any("could not be read" in r.getMessage() for r in caplog.records)


def test_an_unreadable_cache_entry_is_a_miss_not_a_crash(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    tmp_path: Path,
) -> None:
    openai_server.script(answer(), answer())
    llm = make_llm(cache_dir=tmp_path / "llm-cache")
    llm.complete(prompt(1), None, prompt_version="p1")
    llm.close()
    with sqlite3.connect(tmp_path / "llm-cache" / "cache.db") as db:
        db.execute("UPDATE Cache SET value = ?", (b"\x00not zlib",))  # zlib.error on read
    again = make_llm(cache_dir=tmp_path / "llm-cache")
    answered = again.complete(prompt(1), None, prompt_version="p1")
    assert not answered.cached and len(openai_server.requests) == 2


# -- 5. budgets -------------------------------------------------------------------------------


def test_call_budget_stops_the_third_uncached_call(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
) -> None:
    openai_server.script(answer(), answer(), answer())
    llm = make_llm(max_calls=2)
    llm.complete(prompt(1), None, prompt_version="p1")
    llm.complete(prompt(2), None, prompt_version="p1")

    with pytest.raises(LLMError) as caught:
        llm.complete(prompt(3), None, prompt_version="p1")

    assert caught.value.cause == "budget"
    assert "llm.max_calls=2" in caught.value.message
    assert len(openai_server.requests) == 2
    assert llm.complete(prompt(1), None, prompt_version="p1").cached  # hits stay free
    assert llm.stats.errors == {"budget": 1}


# Each prompt(n) request is 101 bytes of JSON (117 with max_tokens=48 in it): at most 101 prompt
# tokens; its reply is held at the longest seen (at least 120), or at its cap.
@pytest.mark.parametrize(
    ("limit", "said"),
    [
        (
            {"max_usd": 0.0017},
            "cost budget: this request may cost $0.0015 (101 prompt + 120 completion tokens at "
            "most), $0.0014 of llm.max_usd=0.0017 left",
        ),
        (
            {"max_tokens": 300},
            "token budget: this request may use 221 tokens (101 prompt + 120 completion tokens "
            "at most), 220 of llm.max_tokens=300 left",
        ),
        (
            {"max_tokens": 200, "max_output_tokens": 48},
            "token budget: this request may use 165 tokens (117 prompt + 48 completion tokens "
            "at most), 120 of llm.max_tokens=200 left",
        ),
    ],
)
def test_a_request_whose_worst_case_does_not_fit_what_is_left_is_not_sent(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    limit: dict[str, float],
    said: str,
) -> None:
    """A budget is a ceiling: the first request's worst case fits, and once its reply has
    spent part of the budget (80 tokens, $0.00029) the second one's does not."""
    openai_server.script(replay(SINGLE, 0), answer())
    llm = make_llm(**limit)
    llm.complete(prompt(1), None, prompt_version="p1")

    with pytest.raises(LLMError) as caught:
        llm.complete(prompt(2), None, prompt_version="p1")

    assert caught.value.cause == "budget"
    assert caught.value.message == f"{said}; nothing was sent"
    assert len(openai_server.requests) == 1


@pytest.mark.parametrize("way", ["threads", "asyncio"])
def test_requests_in_flight_cannot_take_the_spend_past_a_usd_budget(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    way: str,
) -> None:
    """Eight requests at once, each answered after 0.1 s: every one was sent while the spend
    was under the cap, and together they overshot it. Each now holds its worst case ($0.00145)
    until its reply ($0.00029) settles it, so only what fits beside the others goes out."""
    openai_server.script(*(replace_delay(replay(SINGLE, 0), 0.1) for _ in range(16)))
    budget = 0.003
    llm = make_llm(max_usd=budget, cache_dir=None, concurrency=8)

    def ask(n: int) -> LLMResponse | LLMError:
        try:
            return llm.complete(prompt(n), None, prompt_version="p1")
        except LLMError as exc:
            return exc

    async def gather() -> list[LLMResponse | BaseException]:
        try:
            calls = (llm.acomplete(prompt(n), None, prompt_version="p1") for n in range(16))
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await llm.aclose()

    if way == "threads":
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(ask, range(16)))
    else:
        outcomes = asyncio.run(gather())

    answered = [o for o in outcomes if isinstance(o, LLMResponse)]
    refused = [o for o in outcomes if isinstance(o, LLMError)]
    billed = sum(r.cost_usd or 0.0 for r in answered)
    assert len(openai_server.requests) == len(answered) == llm.stats.calls
    assert billed == pytest.approx(llm.stats.cost_usd) and 0 < billed <= budget
    assert refused and {e.cause for e in refused} == {"budget"}
    assert all(e.message.startswith("cost budget: this request may cost $0.0015") for e in refused)


def test_a_request_that_fails_gives_its_hold_back(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
) -> None:
    """A 400 is not billed: the budget, room for one request's worst case, is whole again."""
    openai_server.script(replay(ERROR_400), replay(SINGLE, 0))
    llm = make_llm(max_usd=0.002)
    with pytest.raises(LLMError) as caught:
        llm.complete(prompt(1), None, prompt_version="p1")
    assert caught.value.cause == "bad_request"

    answered: list[LLMResponse] = []
    asking = threading.Thread(
        target=lambda: answered.append(llm.complete(prompt(2), None, prompt_version="p1")),
        daemon=True,  # a hold never given back would keep it waiting for room
    )
    asking.start()
    asking.join(timeout=60)
    assert [r.usage.total_tokens for r in answered] == [80]
    assert len(openai_server.requests) == 2


@pytest.mark.parametrize(
    ("started", "every", "sent"),
    [(False, False, False), (True, True, False), (True, False, True)],
    ids=["ctrl-c-new-decision", "budget-stop", "ctrl-c-started-decision"],
)
def test_a_run_that_stops_sends_no_request_waiting_for_budget_room(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    started: bool,
    every: bool,
    sent: bool,
) -> None:
    """Room for one request's worst case (221 tokens) beside another's: a decision's request
    waits for the one on the wire (answered after 0.5 s). The run stops meanwhile: Ctrl-C
    (`close()`) drops a decision that has sent nothing, a budget stop (`close(every=True)`) any,
    and the room the answer frees sends neither; a started decision goes on to its answer."""
    answers = [replace_delay(replay(SINGLE, 0), 0.5), replay(SINGLE, 0)]
    openai_server.script(*[replay(SINGLE, 0)] * started, *answers)
    llm = make_llm(max_tokens=400 + 80 * started, cache_dir=None)
    flight = InFlight(2)
    first, waiting = flight.turns(rank=0), flight.turns(rank=1)
    if started:  # its first request answered (80 tokens): the next one is a follow-up
        llm.complete(prompt(1), None, prompt_version="p1", turns=waiting)
    outcomes: dict[str, LLMResponse | BaseException] = {}

    def ask(name: str, turns: Turns, n: int) -> None:
        try:
            outcomes[name] = llm.complete(prompt(n), None, prompt_version="p1", turns=turns)
        except (LLMError, NotSent) as exc:
            outcomes[name] = exc
        turns.finish()

    on_the_wire = threading.Thread(target=ask, args=("first", first, 2))
    on_the_wire.start()
    while len(openai_server.requests) < 1 + started:
        on_the_wire.join(timeout=0.01)
    held_back = threading.Thread(target=ask, args=("waiting", waiting, 3))
    held_back.start()
    held_back.join(timeout=0.2)  # it waits for room: the request on the wire holds it
    flight.close(every=every)
    on_the_wire.join(timeout=60)
    held_back.join(timeout=60)

    assert isinstance(outcomes["first"], LLMResponse)
    assert isinstance(outcomes["waiting"], LLMResponse if sent else NotSent)
    assert len(openai_server.requests) == llm.stats.calls == 1 + started + sent
    assert (llm.budget.in_flight, llm.budget.held_tokens) == (0, 0)


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 400), st.integers(0, 400)),
        # what of its worst case a reply used: all of it most often, where overshoot shows
        st.tuples(st.just("reply"), st.integers(0, 99), st.just(1.0) | st.floats(0, 1)),
        st.tuples(st.just("fail"), st.integers(0, 99), st.just(0.0)),
    ),
    max_size=60,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    max_tokens=st.none() | st.integers(1, 1_500),
    max_usd=st.none() | st.floats(1e-4, 0.015),
    ops=_OPS,
)
def test_a_budget_s_spend_never_passes_its_caps(
    max_tokens: int | None, max_usd: float | None, ops: list[tuple[str, int, float]]
) -> None:
    """Requests sent, answered (using at most their worst case) and failed in any order: the
    spend stays within the caps, a request waits only while others hold room, and is refused
    only when its worst case does not fit what is spent, whatever the others come to."""
    limits = LLMSettings(max_tokens=max_tokens, max_usd=max_usd)
    budget = Budget()
    in_flight: list[Hold] = []
    for op, a, b in ops:
        if op == "send":
            need = Hold(a, int(b), (a + b) * 1e-5)
            spent = (budget.tokens, budget.cost_usd)
            verdict = budget.admit(limits, need, "http://model/v1/")
            if verdict is True:
                in_flight.append(need)
            elif verdict is False:
                assert in_flight  # nothing to wait for: never told to wait
            else:
                assert (max_tokens is not None and spent[0] + need.tokens > max_tokens) or (
                    max_usd is not None and spent[1] + need.usd > max_usd
                ), verdict
        elif in_flight:
            held = in_flight.pop(a % len(in_flight))
            if op == "fail":
                budget.release(held)
            else:  # a reply within its hold: its cap and its prompt's bytes
                used = Usage(
                    prompt_tokens=int(held.prompt_tokens * b),
                    completion_tokens=int(held.reply_tokens * b),
                )
                budget.settle(held, used, held.usd * b)
        assert max_tokens is None or budget.tokens <= max_tokens
        assert max_usd is None or budget.cost_usd <= max_usd * (1 + 1e-9)
    for held in in_flight:
        budget.release(held)
    assert (budget.in_flight, budget.held_tokens, budget.held_usd) == (0, 0, 0.0)


def _without_usage(usage: Any) -> Scripted:
    """The captured completion with its usage left out (None) or replaced."""
    found = capture(SINGLE, 0)
    body = {k: v for k, v in found["response_body"].items() if k != "usage"}
    if usage is not None:
        body["usage"] = usage
    return Scripted(200, body)


@pytest.mark.parametrize(
    ("limit", "named"), [({"max_usd": 0.01}, "llm.max_usd"), ({"max_tokens": 500}, "max_tokens")]
)
def test_an_endpoint_that_reports_no_usage_cannot_run_past_a_spend_budget(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    limit: dict[str, float],
    named: str,
) -> None:
    """A reply without usage was counted as 0 tokens and $0: a budgeted run sent every call.
    Its cost is n/a, never $0, and no further call is sent against a budget it cannot keep."""
    openai_server.script(_without_usage(None), answer())
    llm = make_llm(**limit)
    llm.complete(prompt(1), None, prompt_version="p1")
    assert llm.stats.cost_usd is None

    with pytest.raises(LLMError) as caught:
        llm.complete(prompt(2), None, prompt_version="p1")

    assert caught.value.cause == "budget" and "reported no token usage" in caught.value.message
    assert named in caught.value.message
    assert len(openai_server.requests) == 1


def test_negative_token_counts_are_a_reply_of_the_wrong_shape(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
) -> None:
    """-23 billion prompt tokens made the run's cost negative and every budget unreachable."""
    negative = {"prompt_tokens": -23_000_000_000, "completion_tokens": 5, "total_tokens": 1}
    openai_server.script(_without_usage(negative))
    with pytest.raises(LLMError) as caught:
        make_llm(max_retries=0).complete(prompt(1), None, prompt_version="p1")
    assert caught.value.cause == "bad_response"


def test_an_unpriced_model_or_host_costs_na_never_zero(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
) -> None:
    """No price in llm.prices, or an endpoint away from llm.prices_host (the same model name
    on a local server): every cost is n/a with the reason, and a USD budget is refused."""
    openai_server.script(answer(), answer())
    unlisted = make_llm(model="llama3.1:8b")
    elsewhere = make_llm(model="gpt-4o", prices_host="api.openai.com")

    costs = [
        llm.complete(prompt(1), None, prompt_version="p1").cost_usd for llm in (unlisted, elsewhere)
    ]

    assert costs == [None, None]
    assert unlisted.stats.cost_usd is None and elsewhere.stats.cost_usd is None
    assert (
        unlisted.pricing.unknown
        == "no price for model 'llama3.1:8b' in llm.prices (config/default.toml)"
    )
    assert elsewhere.pricing.unknown.startswith(
        f"{openai_server.base_url}/ is not at api.openai.com, whose prices llm.prices holds"
    )
    with pytest.raises(ConfigError) as refused:
        make_llm(model="gpt-4o", prices_host="api.openai.com", max_usd=1)
    assert "a budget of 1 USD (--budget-usd or llm.max_usd) cannot be applied" in str(refused.value)
    assert "set llm.prices_host=127.0.0.1" in str(refused.value)


def test_estimate_cost_and_stats_for_reports(
    openai_server: LoopbackOpenAI,  # noqa: F811
    tmp_path: Path,
) -> None:
    ticks = iter([0.0, 0.1, 1.0, 1.3, 2.0, 2.2])  # start and end of three calls
    settings = LLMSettings(model="gpt-4o-mini", prices=PRICES, prices_host=PRICED_HOST)
    openai_server.script(answer(), answer(), answer())
    with LLMClient(
        settings,
        api_key=PLANTED_KEY,
        base_url=openai_server.base_url,
        cache_dir=None,
        clock=lambda: next(ticks),
    ) as llm:
        assert llm.pricing.cost(100 * 1000, 100 * 200) == pytest.approx(100 * (150 + 120) / 1e6)
        for n in (1, 2, 3):
            llm.complete(prompt(n), None, prompt_version="p1")
        stats = llm.stats.model_dump()

    assert stats["latencies_ms"] == pytest.approx([100.0, 300.0, 200.0])
    assert stats["p50_latency_ms"] == pytest.approx(200.0)
    assert stats["p95_latency_ms"] == pytest.approx(300.0)
    assert (stats["calls"], stats["prompt_tokens"], stats["completion_tokens"]) == (3, 588, 15)
    assert stats["cost_usd"] == pytest.approx(expected_cost("gpt-4o-mini", 588, 15))
    json.dumps(stats)


# -- 6. async ---------------------------------------------------------------------------------


def test_async_calls_are_bounded_by_concurrency(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
) -> None:
    openai_server.script(*(replace_delay(answer(), 0.1) for _ in range(20)))
    llm = make_llm(concurrency=3, cache_dir=None)

    async def run() -> list[LLMResponse]:
        try:
            calls = (llm.acomplete(prompt(n), None, prompt_version="p1") for n in range(20))
            return await asyncio.gather(*calls)
        finally:
            await llm.aclose()

    responses = asyncio.run(run())

    assert [r.message.content for r in responses] == ["Hello!"] * 20
    assert len(openai_server.requests) == 20
    assert openai_server.max_in_flight == 3
    assert llm.stats.calls == 20


def test_async_path_shares_retry_cache_and_errors(
    openai_server: LoopbackOpenAI,  # noqa: F811
    tmp_path: Path,
) -> None:
    openai_server.script(
        replay(OPENROUTER_429, 0, headers={"retry-after": "4"}), answer(), replay(ERROR_400)
    )
    waited: list[float] = []

    async def asleep(seconds: float) -> None:
        waited.append(seconds)

    llm = LLMClient(
        LLMSettings(model="gpt-4o", prices=PRICES, prices_host=PRICED_HOST),
        api_key=PLANTED_KEY,
        base_url=openai_server.base_url,
        cache_dir=tmp_path / "cache",
        asleep=asleep,
    )

    async def run() -> tuple[LLMResponse, LLMResponse, LLMError]:
        try:
            first = await llm.acomplete(USER, None, prompt_version="p1")
            again = await llm.acomplete(USER, None, prompt_version="p1")
            with pytest.raises(LLMError) as caught:
                await llm.acomplete(prompt(2), None, prompt_version="p1")
            return first, again, caught.value
        finally:
            await llm.aclose()

    first, again, error = asyncio.run(run())

    assert waited == [4.0]
    assert (first.cached, again.cached) == (False, True)
    assert (error.cause, error.attempts) == ("bad_request", 1)
    assert len(openai_server.requests) == 3


# -- 7. secrets -------------------------------------------------------------------------------


def test_planted_key_never_reaches_logs_or_errors(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    echoing_401 = {
        "error": {
            "message": f"Incorrect API key provided: {PLANTED_KEY}.",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    openai_server.script(
        answer(),
        replay(OPENROUTER_429, 0, headers={"retry-after": "0"}),
        Scripted(401, echoing_401),
    )
    llm = make_llm()

    with caplog.at_level(logging.DEBUG):
        llm.complete(prompt(1), None, prompt_version="p1")
        with pytest.raises(LLMError) as caught:
            llm.complete(prompt(2), None, prompt_version="p1")

    assert openai_server.requests[0].headers["authorization"] == f"Bearer {PLANTED_KEY}"
    assert caught.value.cause == "auth"
    assert PLANTED_KEY not in str(caught.value)
    assert PLANTED_KEY not in repr(caught.value.args)
    assert caplog.records, "DEBUG logging was captured"
    assert PLANTED_KEY not in caplog.text
    for record in caplog.records:
        assert PLANTED_KEY not in record.getMessage()
        assert PLANTED_KEY not in json.dumps(vars(record), default=str)


def test_organization_and_project_from_the_environment_reach_the_endpoint(
    openai_server: LoopbackOpenAI,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key shared by several organizations bills the one OPENAI_ORG_ID names, as the SDK did."""
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)
    monkeypatch.setenv("OPENAI_ORG_ID", "org-desk42")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_backtests")
    openai_server.script(answer())
    with open_model(load_settings(data_dir=tmp_path), print) as llm:
        llm.complete(USER, None, prompt_version="p1")
    sent = openai_server.requests[0].headers
    assert (sent["openai-organization"], sent["openai-project"]) == ("org-desk42", "proj_backtests")


def test_no_organization_header_unless_one_is_set(
    openai_server: LoopbackOpenAI,  # noqa: F811
    make_llm: Callable[..., LLMClient],
) -> None:
    openai_server.script(answer())
    make_llm().complete(USER, None, prompt_version="p1")
    assert not {"openai-organization", "openai-project"} & set(openai_server.requests[0].headers)


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no CA signed (openssl, as the machine has it)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is missing: install it (apt-get install -y openssl)")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize("endpoint", ["plain http", "https"])
def test_an_endpoint_verifies_every_https_request(
    tmp_path: Path, asynchronous: bool, endpoint: str
) -> None:
    """A model or venue on plain http gets no TLS context up front, and an https one shares
    the process's one context (core.plain_http); a request that ends up at https, as a
    redirect would, or to an https endpoint, is verified all the same: a certificate no CA
    signed is refused, by every client made."""
    cert, key = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{server.server_port}/v1/chat/completions"
    base = "http://127.0.0.1:9/v1" if endpoint == "plain http" else url

    async def post(options: dict[str, Any]) -> None:
        async with httpx.AsyncClient(**options) as client:
            await client.post(url)

    try:
        for _ in range(2):
            options = transport_options(base, httpx.Limits(), asynchronous=asynchronous)
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                if asynchronous:
                    asyncio.run(post(options))
                else:
                    with httpx.Client(**options) as client:
                        client.post(url)
    finally:
        server.shutdown()
        server.server_close()
