"""The REST API against a real uvicorn on loopback: every route with what a client sees, bad
input named by field, the token on changing routes, a backtest job from submit to report, and
halt and resume of an account a replayed loop traded."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from conftest import BIN, stop
from loopback_api import free_port, replay_rest, serving
from loopback_openai import LoopbackOpenAI
from scripted_model import ScriptedModel, buy_an_uptrend

from config import load_settings
from server.app import create_app
from server.jobs import BacktestJobs, BacktestRequest
from store import Store, open_store

TOKEN = "t0ken-for-tests-only-0123"
FAST = ("--feed", "replay", "--speed", "20000")
Start = Callable[..., httpx.Client]


@pytest.fixture
def api(
    offline_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Start]:
    """Starts the API on the offline data directory the `cli` fixture's commands use."""
    for name in list(os.environ):
        if name.startswith(("AGENT_", "OPENAI_", "BINANCE_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    for name, value in offline_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    Path(offline_env["AGENT_DATA_DIR"]).mkdir(exist_ok=True)
    with ExitStack() as stack:

        def start(token: str | None = None, **env: str) -> httpx.Client:
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            settings = load_settings(None)
            store = open_store(settings.resolved_database_url)
            stack.callback(store.close)
            jobs = BacktestJobs([], dict(os.environ))
            url = stack.enter_context(serving(create_app(settings, store, jobs, token=token)))
            return stack.enter_context(httpx.Client(base_url=url, timeout=60))

        yield start


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def test_health_and_klines_offline_from_the_bundled_sample(api: Start) -> None:
    client = api()
    health = client.get("/health").json()
    assert health == {
        "status": "ok",
        "store": "reachable",
        "store_error": None,
        "accounts": [],
        "server_loop": None,  # no loop inside this server
    }

    got = client.get("/klines", params={"symbol": "btcusdt", "limit": 3}).json()
    assert got["symbol"] == "BTCUSDT" and len(got["bars"]) == 3
    assert any("bundled Binance sample" in n for n in got["notices"])
    times = [bar["open_time"] for bar in got["bars"]]
    assert [b - a for a, b in itertools.pairwise(times)] == [60_000, 60_000]

    ranged = client.get(
        "/klines",
        params={"symbol": "ETHUSDT", "interval": "5m", "start": "2025-10-30", "limit": 4},
    ).json()
    assert [bar["time"] for bar in ranged["bars"]] == [
        "2025-10-30 00:00",
        "2025-10-30 00:05",
        "2025-10-30 00:10",
        "2025-10-30 00:15",
    ]
    assert all(bar["low"] <= bar["close"] <= bar["high"] for bar in ranged["bars"])


@pytest.mark.parametrize(
    ("interval", "limit"), [("5m", 3), ("1h", 5), ("4h", 5), ("1h", 1), ("1d", 2)]
)
def test_the_latest_bars_of_a_coarser_interval_are_as_many_as_asked(
    api: Start, interval: str, limit: int
) -> None:
    """The README's `interval=5m&limit=3` gave 2 bars (the window was `limit` bars long, and
    its first and last buckets were partial); 1h with limit 1 was a 404."""
    got = api().get("/klines", params={"symbol": "BTCUSDT", "interval": interval, "limit": limit})
    assert got.status_code == 200, got.text
    times = [bar["open_time"] for bar in got.json()["bars"]]
    step = {"5m": 300_000, "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}[interval]
    assert len(times) == limit and all(b - a == step for a, b in itertools.pairwise(times))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"symbol": "BTC-USDT"}, "symbol"),
        ({"symbol": "BTCUSDT", "interval": "7m"}, "interval"),
        ({"symbol": "BTCUSDT", "limit": 0}, "limit"),
        ({"symbol": "BTCUSDT", "limit": "many"}, "limit"),
        ({"symbol": "BTCUSDT", "start": "yesterday"}, "start"),
        ({"symbol": "BTCUSDT", "start": "2025-10-30", "end": "2025-10-29"}, "end"),
        ({"symbol": "BTCUSDT", "start": "9999-12-31T23:59"}, "start"),
        ({"symbol": "BTCUSDT", "end": "0001-01-01"}, "end"),
        ({}, "symbol"),
    ],
)
def test_bad_kline_queries_name_the_field(api: Start, params: dict, field: str) -> None:
    body = problem(api().get("/klines", params=params), 422)
    assert body["field"] == field and body["detail"]


def test_orderbook_snapshot_through_the_exchange_rest_endpoint(api: Start) -> None:
    with replay_rest() as rest:
        client = api(AGENT_BINANCE__BASE_URL=rest)
        book = client.get("/orderbook", params={"symbol": "BTCUSDT", "limit": 5}).json()
        assert 0 < len(book["bids"]) <= 5 and 0 < len(book["asks"]) <= 5
        assert book["best_bid"] < book["best_ask"] and book["spread_bps"] > 0
        assert book["source"] == f"REST snapshot from {rest}" and book["kind"] == "snapshot"
        missing = problem(client.get("/orderbook", params={"symbol": "XRPUSDT"}), 404)
        assert missing["detail"].startswith("no book for XRPUSDT")
    offline = api().get("/orderbook", params={"symbol": "BTCUSDT"})
    assert problem(offline, 503)["detail"].startswith(
        "no book for BTCUSDT: the exchange is unreachable"
    )


@pytest.mark.slow
def test_a_replayed_account_halt_and_resume_over_http(api: Start, cli) -> None:
    traded = cli("agent-trade", *FAST, "--max-bars", "120", "--decide-every", "5")
    assert traded.returncode == 0, traded.stderr
    client = api()
    status = json.loads(cli("agent-trade", "status", "--json").stdout)

    account = client.get("/accounts/paper").json()
    assert account["equity"] == status["equity"] and account["cash"] == status["cash"]
    assert account["positions"] == status["positions"]
    assert account["trading_state"] == "ACTIVE" and account["bars"] == 120
    assert account["limits"]["in_force"]["max_drawdown_pct"] > 0

    fills = client.get("/accounts/paper/fills").json()
    assert fills == json.loads(cli("agent-trade", "fills", "--json").stdout) and fills
    orders = client.get("/accounts/paper/orders").json()
    assert {f["client_order_id"] for f in fills} <= {o["client_order_id"] for o in orders}

    decisions = client.get("/decisions", params={"account": "paper", "limit": 1000}).json()
    assert len(decisions) == status["decisions"]
    assert all(d["run_id"] == "trade-paper" for d in decisions)
    vetted = [d for d in decisions if d["verdict"]]
    assert vetted and all("kind" in d["verdict"] for d in vetted)
    middle = decisions[len(decisions) // 2]["decided_ms"]
    since = _iso(middle)
    later = client.get("/decisions", params={"account": "paper", "since": since}).json()
    assert 0 < len(later) < len(decisions)
    assert all(d["decided_ms"] >= middle - 60_000 for d in later)

    health = client.get("/health").json()
    (row,) = health["accounts"]
    assert row["account"] == "paper" and row["last_error"] is None and row["feed_lag_s"] > 0

    halted = client.post("/accounts/paper/halt", json={"reason": "from the API"}).json()
    assert halted["trading_state"] == "HALTED" and halted["kill_switch_file"]
    shown = json.loads(cli("agent-trade", "status", "--json").stdout)
    assert shown["trading_state"] == "HALTED"
    assert any("from the API" in lock for lock in shown["locks"])
    assert 'agent_account_halted{account="paper"} 1.0' in client.get("/metrics/").text
    again = cli("agent-trade", *FAST, "--max-bars", "20", "--decide-every", "5")
    assert again.returncode == 0, again.stderr
    assert client.get("/accounts/paper").json()["fills"] == status["fills"]  # halted: no trade

    resumed = client.post("/accounts/paper/resume", json={"reason": "feed checked"}).json()
    assert resumed["trading_state"] == "ACTIVE" and not resumed["kill_switch_file"]
    record = json.loads(cli("agent-trade", "status", "--json").stdout)["interventions"]
    assert record[-1].endswith("resumed by the REST API: feed checked"), record
    assert 'agent_account_halted{account="paper"} 0.0' in client.get("/metrics/").text


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M")


@pytest.mark.parametrize(
    "path",
    ["/accounts/nobody", "/accounts/nobody/orders", "/accounts/nobody/fills"],
)
def test_unknown_account_is_404_naming_it(api: Start, path: str) -> None:
    body = problem(api().get(path), 404)
    assert body == {"detail": "no trading account 'nobody' in this store", "field": "name"}


def test_decisions_for_an_unknown_account_name_the_account_parameter(api: Start) -> None:
    body = problem(api().get("/decisions", params={"account": "nobody"}), 404)
    assert body == {"detail": "no trading account 'nobody' in this store", "field": "account"}


@pytest.mark.parametrize(
    ("since", "until"), [("2025-10-30", "2025-10-29"), ("2025-10-30", "2025-10-30")]
)
def test_decisions_refuse_an_until_not_after_since_as_klines_do(
    api: Start, since: str, until: str
) -> None:
    """Was 200 [] — an empty answer that looked like no decisions were made."""
    body = problem(api().get("/decisions", params={"since": since, "until": until}), 422)
    assert body == {"detail": f"until {until} is not after since {since}", "field": "until"}


@pytest.mark.slow
def test_the_token_guards_every_changing_route(api: Start, cli) -> None:
    assert cli("agent-trade", *FAST, "--max-bars", "5").returncode == 0
    client = api(token=TOKEN)
    assert client.get("/accounts/paper").status_code == 200  # reading needs no token
    for path, body in (("/accounts/paper/halt", None), ("/backtests", {"strategy": "sma_cross"})):
        refused = problem(client.post(path, json=body), 401)
        assert "Authorization: Bearer" in refused["detail"]
    wrong = {"Authorization": "Bearer not-the-token-at-all"}
    assert client.post("/accounts/paper/resume", headers=wrong).status_code == 401
    assert client.get("/accounts/paper").json()["trading_state"] == "ACTIVE"
    right = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/accounts/paper/halt", headers=right).json()["trading_state"] == "HALTED"
    for _ in range(5):
        client.post("/accounts/paper/resume", headers=wrong)
    throttled = client.post("/accounts/paper/resume", headers=right)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert client.get("/accounts/paper").json()["trading_state"] == "HALTED"


def _finished(client: httpx.Client, job_id: str) -> dict:
    while True:
        job = client.get(f"/backtests/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        threading.Event().wait(0.2)


@pytest.mark.slow
def test_a_backtest_job_from_submit_to_report(api: Start, cli) -> None:
    client = api()
    submitted = client.post(
        "/backtests",
        json={"strategy": "sma_cross", "symbol": "BTCUSDT", "days": 1, "params": {"fast": 5}},
    )
    assert submitted.status_code == 202 and submitted.json()["state"] in ("queued", "running")
    job = _finished(client, submitted.json()["id"])
    assert job["state"] == "done", job
    report = job["report"]
    assert (
        report["config"]["params"] == {"fast": 5, "slow": 30}
        or report["config"]["params"]["fast"] == 5
    )
    assert "Return [%]" in report["metrics"]
    assert any("bundled Binance sample" in line for line in job["progress"])
    assert [j["id"] for j in client.get("/backtests").json()] == [job["id"]]

    failed = _finished(client, client.post("/backtests", json={"symbol": "XRPUSDT"}).json()["id"])
    assert failed["state"] == "failed" and failed["exit_code"] == 2
    assert failed["error"].startswith("error: no XRPUSDT 1m data")
    assert problem(client.get("/backtests/nope"), 404)["field"] == "job_id"


@pytest.mark.slow
def test_a_backtest_job_costs_what_the_servers_profile_says(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    """A job ran at 10,000 cash, 10 bps fees and no slippage whatever the server's profile
    set: the request's defaults overrode the profile the server hands agent-backtest."""
    profile = tmp_path / "bt.toml"
    profile.write_text("[backtest]\nfee_bps = 50\nslippage_bps = 5\ncash = 500\n")
    port = free_port()
    args = [str(BIN / "agent-server"), "--no-ui", "--port", str(port), "--profile", str(profile)]
    env = {**offline_env, "NO_PROXY": "127.0.0.1"}
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            _wait_until_up(client, proc)
            configured = {"strategy": "sma_cross", "days": 1}
            asked = {**configured, "cash": 800, "slippage_bps": 1}
            jobs = [
                client.post("/backtests", json=body).json()["id"] for body in (configured, asked)
            ]
            runs = [_finished(client, job) for job in jobs]
    finally:
        stop(proc, signal.SIGTERM)
    costs = [run["report"]["config"]["backtest"] for run in runs]
    assert [(c["cash"], c["fees"]["taker"], c["slippage"]["bps"]) for c in costs] == [
        (500.0, 0.005, 5.0),
        (800.0, 0.005, 1.0),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"strategy": "moon"}, "strategy"),
        ({"strategy": "sma_cross", "params": {"period": 3}}, "params"),
        ({"days": -1}, "days"),
        ({"days": 1, "start": "2025-10-30", "end": "2025-10-31"}, "start"),
        ({"start": "2025-10-30"}, "end"),
        ({"symbol": "BTC/USDT"}, "symbol"),
        # Each of these was queued (202) and could only fail in the job.
        ({"strategy": "sma_cross", "days": 1, "params": {"fast": "abc"}}, "params"),
        ({"strategy": "sma_cross", "days": 1, "params": {"fast": -5}}, "params"),
        ({"strategy": "sma_cross", "days": 1, "params": {"fast": 1e308}}, "params"),
        ({"strategy": "sma_cross", "days": 1, "params": {"fast": True}}, "params"),
        ({"strategy": "sma_cross", "days": 1, "params": {"fast": "--help"}}, "params"),
        ({"strategy": "sma_cross", "days": 1, "params": {"fast": 50, "slow": 10}}, "params"),
        ({"strategy": "sma_cross", "symbol": ""}, "symbol"),
        ({"strategy": "sma_cross", "symbol": ","}, "symbol"),
        ({"strategy": "sma_cross", "start": "garbage", "end": "garbage"}, "start"),
        ({"strategy": "sma_cross", "start": "2025-10-30", "end": "garbage"}, "end"),
        ({"strategy": "sma_cross", "start": "2025-10-30", "end": "2025-10-29"}, "end"),
        ({"strategy": "sma_cross", "start": "2025-10-30", "end": "2025-10-30"}, "end"),
        ({"strategy": "sma_cross", "days": 1e-9}, "days"),
        ({"strategy": "sma_cross", "interval": "1w", "days": 1}, "days"),
    ],
)
def test_bad_backtest_requests_name_the_field(api: Start, body: dict, field: str) -> None:
    client = api()
    refused = problem(client.post("/backtests", json=body), 422)
    assert refused["field"] == field and refused["detail"].startswith(f"{field}: ")
    assert client.get("/backtests").json() == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/backtests", {"strategy": "sma_cross", "days": 1, "bogus": 1}, "bogus"),
        ("/accounts/paper/halt", {"reasn": "typo"}, "reasn"),
        ("/accounts/paper/resume", {"reason": "checked", "force": True}, "force"),
    ],
)
def test_a_field_no_request_takes_is_refused_by_name(
    api: Start, path: str, body: dict, field: str
) -> None:
    """A misspelt field was dropped: a halt went on record without its reason."""
    client = api()
    refused = problem(client.post(path, json=body), 422)
    assert refused == {"detail": f"{field}: not a field this request takes", "field": field}
    assert client.get("/backtests").json() == []


@pytest.mark.parametrize(
    ("path", "raw", "said"),
    [
        ("/accounts/paper/halt", b"{oops", "the body is not valid JSON (Expecting property"),
        ("/backtests", b'{"days": 1,}', "the body is not valid JSON (Expecting property"),
        ("/backtests", b"", "a body is required: a JSON object ({} takes every default)"),
        ("/backtests", b"[1]", "the body must be a JSON object"),
        ("/accounts/paper/halt", b'"stop"', "the body must be a JSON object"),
    ],
)
def test_a_body_that_is_no_json_object_is_named_as_the_body(
    api: Start, path: str, raw: bytes, said: str
) -> None:
    """Was {"detail": "1: JSON decode error", "field": "1"}, or "Field required" naming none."""
    answer = api().post(path, content=raw, headers={"content-type": "application/json"})
    refused = problem(answer, 422)
    assert refused["field"] == "body" and refused["detail"].startswith(said), refused


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"params": {"fast": 50, "slow": 10}}, "params: fast (50) must be less than slow (10)"),
        ({"params": {"fast": "abc"}}, "params: fast: Input should be a valid integer"),
        ({"symbol": " , "}, "symbol: ' , ' names no symbol"),
        ({"days": 1e-9}, "days: invalid days 1e-09: shorter than 2 1m bars"),
        ({"interval": "1w", "days": 1}, "days: invalid days 1: shorter than 2 1w bars (14 days)"),
        (
            {"start": "2025-10-30", "end": "2025-10-30"},
            "end: end 2025-10-30 is not after start 2025-10-30",
        ),
    ],
)
def test_a_refused_backtest_says_what_is_wrong(api: Start, body: dict, said: str) -> None:
    refused = problem(api().post("/backtests", json={"strategy": "sma_cross", **body}), 422)
    assert refused["detail"].startswith(said), refused


@pytest.mark.slow
def test_an_agent_job_on_a_paid_model_runs_with_the_budget_its_request_sets(api: Start) -> None:
    """With a paid model every agent job failed asking for --yes, a flag no request could send:
    `budget_usd` is the consent, and the cap the run stops at."""
    model = LoopbackOpenAI(responder=ScriptedModel(buy_an_uptrend)).start()
    try:
        client = api(
            OPENAI_BASE_URL=model.base_url,
            OPENAI_API_KEY="sk-test-loopback",
            AGENT_LLM__PRICES_HOST="127.0.0.1",  # priced as the paid model it stands in for
        )
        unasked = _finished(client, client.post("/backtests", json={"days": 0.05}).json()["id"])
        assert unasked["state"] == "failed" and "may spend money" in unasked["error"]
        assert model.requests == []  # nothing spent without consent
        body = {"days": 0.05, "budget_usd": 5}
        job = _finished(client, client.post("/backtests", json=body).json()["id"])
    finally:
        model.stop()
    assert job["state"] == "done", job
    assert 0 < job["report"]["agent"]["llm"]["cost_usd"] <= 5
    assert model.requests
    classic = {"strategy": "sma_cross", "days": 1, "budget_usd": 5}
    refused = problem(client.post("/backtests", json=classic), 422)
    assert refused["field"] == "budget_usd" and "no budget" in refused["detail"]


@pytest.mark.slow
def test_an_agent_job_on_an_unpriced_model_runs_when_its_request_says_yes(api: Start) -> None:
    """A local server's cost is n/a, so no budget can cap it: every agent job failed asking for
    --yes, which no request could send. `yes` is that flag; a classic strategy refuses it."""
    model = LoopbackOpenAI(responder=ScriptedModel(buy_an_uptrend)).start()
    try:
        client = api(OPENAI_BASE_URL=model.base_url, OPENAI_API_KEY="sk-test-loopback")
        refused = [
            _finished(client, client.post("/backtests", json=body).json()["id"])
            for body in ({"days": 0.05}, {"days": 0.05, "budget_usd": 1})
        ]
        assert [job["state"] for job in refused] == ["failed", "failed"]
        assert "pass --yes" in refused[0]["error"] and "the cost is n/a" in refused[1]["error"]
        assert model.requests == []
        body = {"days": 0.05, "yes": True}
        job = _finished(client, client.post("/backtests", json=body).json()["id"])
    finally:
        model.stop()
    assert job["state"] == "done", job
    llm = job["report"]["agent"]["llm"]
    assert llm["model_calls"] == len(model.requests) > 0
    assert llm["cost_usd"] is None and "is not at api.openai.com" in llm["cost_na"]
    classic = {"strategy": "sma_cross", "days": 1, "yes": True}
    refused_yes = problem(client.post("/backtests", json=classic), 422)
    assert refused_yes == {
        "detail": "yes: sma_cross asks no model, so there is no cost to accept",
        "field": "yes",
    }


def test_a_job_the_command_refuses_carries_its_one_line(
    offline_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """agent-backtest's own usage error, not only its exit code: here a flag the server adds
    that this agent-backtest does not take."""
    for name, value in offline_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None)
    store = open_store(settings.resolved_database_url)
    jobs = BacktestJobs(["--no-such-flag"], dict(os.environ))
    try:
        with serving(create_app(settings, store, jobs, token=None)) as url:
            client = httpx.Client(base_url=url, timeout=60)
            body = {"strategy": "sma_cross", "days": 1}
            failed = _finished(client, client.post("/backtests", json=body).json()["id"])
    finally:
        store.close()
    assert failed["state"] == "failed" and failed["exit_code"] == 2
    assert failed["error"] == (
        "agent-backtest: error: unrecognized arguments: --no-such-flag (see --help)"
    )


@pytest.mark.slow
def test_backtests_beyond_the_queue_are_refused_with_429_not_a_thread_each(
    offline_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """300 submissions used to start 300 threads; past the queue's bound a client is told to
    come back (429, Retry-After), and what was taken still runs, one at a time."""
    for name, value in offline_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None)
    store = open_store(settings.resolved_database_url)
    jobs = BacktestJobs(["--no-such-flag"], dict(os.environ), max_waiting=1)
    try:
        with serving(create_app(settings, store, jobs, token=None)) as url:
            client = httpx.Client(base_url=url, timeout=60)
            body = {"strategy": "sma_cross", "days": 1}
            answers = [client.post("/backtests", json=body) for _ in range(4)]
            taken = [a.json()["id"] for a in answers if a.status_code == 202]
            full = [a for a in answers if a.status_code == 429]
            assert 1 <= len(taken) <= 2 and len(full) == 4 - len(taken)
            assert "backtests are waiting already" in full[0].json()["detail"]
            assert full[0].headers["Retry-After"] == "30"
            assert all(_finished(client, job)["state"] == "failed" for job in taken)
            assert len(client.get("/backtests").json()) == len(taken)
    finally:
        store.close()


@pytest.mark.parametrize("number", ["Infinity", "NaN", "1e308"])
def test_a_backtest_request_with_a_number_json_cannot_hold_is_refused(
    api: Start, number: str
) -> None:
    """Python's JSON reader takes Infinity and NaN, which no JSON writer sends: a request
    with infinite cash is refused by name, not run."""
    client = api()
    raw = f'{{"strategy": "sma_cross", "days": 1, "cash": {number}}}'.encode()
    answer = client.post("/backtests", content=raw, headers={"content-type": "application/json"})
    assert problem(answer, 422)["field"] == "cash"
    assert client.get("/backtests").json() == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (
            ["--host", "0.0.0.0", "--no-ui"],
            {},
            "refusing to serve the API on 0.0.0.0 without a token",
        ),
        (["--host", "0.0.0.0"], {"AGENT_SERVER_TOKEN": TOKEN}, "without a login"),
        ([], {"AGENT_SERVER_TOKEN": TOKEN}, "the UI at /ui without a login while"),
        (["--auth", ""], {"AGENT_SERVER_TOKEN": TOKEN}, "the UI at /ui without a login while"),
        ([], {"AGENT_SERVER_TOKEN": TOKEN, "AGENT_UI_AUTH": ""}, "the UI at /ui without a login"),
        (["--auth", " "], {"AGENT_SERVER_TOKEN": TOKEN}, "the UI at /ui without a login while"),
        (["--no-ui", "--auth", "a:b"], {}, "--no-ui serves no UI"),
        (["--no-ui"], {"AGENT_SERVER_TOKEN": "short"}, "use at least 16"),
        (["--port", "70000"], {}, "invalid --port 70000"),
        (
            ["--no-ui", "--public-origin", "https://trader.example.com"],
            {},
            "refusing to serve the API on https://trader.example.com without a token",
        ),
        (
            ["--public-origin", "https://trader.example.com"],
            {"AGENT_SERVER_TOKEN": TOKEN},
            "the UI at /ui without a login while",
        ),
        (["--public-origin", "https://trader.example.com/app"], {}, "invalid --public-origin"),
    ],
)
def test_agent_server_refuses_an_open_door_in_one_line(cli, args, env, said) -> None:
    result = cli("agent-server", *args, env=env)
    assert result.returncode == 2 and said in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_one_command_serves_the_api_the_ui_behind_its_login_and_metrics(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.fail(f"{chromium} is missing: install Debian's chromium (.ci/run does this)")
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    env = {**offline_env, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1"}
    args = [str(BIN / "agent-server"), "--port", str(port), "--auth", "alice:secret-pass-1"]
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            _wait_until_up(client, proc)
            assert "swagger" in client.get("/docs").text.lower()
            paths = client.get("/openapi.json").json()["paths"]
            assert {"/health", "/klines", "/orderbook", "/decisions", "/backtests"} <= set(paths)
            assert "/accounts/{name}/halt" in paths

            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=str(chromium), headless=True, args=["--no-sandbox"]
                )
                try:
                    page = browser.new_page()
                    page.set_default_timeout(30_000)
                    page.goto(f"{url}/ui/")
                    fields = page.locator("input")
                    fields.nth(0).fill("alice")
                    fields.nth(1).fill("secret-pass-1")
                    fields.nth(1).press("Enter")
                    expect(page.locator("#banner")).to_contain_text("nothing is sent")
                finally:
                    browser.close()

            wrong = {"username": "alice", "password": "guess"}
            codes = [client.post("/ui/login", data=wrong).status_code for _ in range(6)]
            assert codes == [400] * 5 + [429]
            scrape = client.get("/metrics/").text
            assert (
                'agent_server_requests_total{method="GET",route="/openapi.json",status="200"}'
                in scrape
            )
            assert '{method="POST",route="/ui",status="429"} 1.0' in scrape
        # A service manager's stop: exit 0, the store closed (its write-ahead log folded back).
        assert stop(proc, signal.SIGTERM) == 0, proc.stderr.read()
        assert not (Path(offline_env["AGENT_DATA_DIR"]) / "agent.db-wal").exists()
    finally:
        stop(proc, signal.SIGTERM)


@pytest.mark.slow
def test_a_web_page_in_the_users_browser_cannot_halt_or_resume(
    cli, offline_env: dict[str, str], tmp_path: Path
) -> None:
    """Was 200 each time: any page could clear a kill switch on loopback, by a form post to
    127.0.0.1 or by rebinding its own name to 127.0.0.1."""
    assert cli("agent-trade", *FAST, "--max-bars", "5").returncode == 0
    port = free_port()
    args = [str(BIN / "agent-server"), "--port", str(port), "--no-ui"]
    proc = subprocess.Popen(args, env=offline_env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    here, rebound = f"127.0.0.1:{port}", f"rebind.evil.example:{port}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    try:
        with httpx.Client(base_url=f"http://{here}", timeout=30) as client:
            _wait_until_up(client, proc)
            evil = client.post(
                "/accounts/paper/halt", headers={"Origin": "https://evil.example", **form}
            )
            assert problem(evil, 403)["detail"].startswith("refused: a page from https://evil.")
            linked = client.post("/accounts/paper/halt", headers={"Referer": "http://a.example/"})
            assert problem(linked, 403)["detail"].startswith("refused: a page from http://a.")
            text = client.post("/accounts/paper/halt", headers={"Content-Type": "text/plain"})
            assert problem(text, 415)["detail"].startswith("send Content-Type: application/json")
            rebinding = {"Host": rebound, "Origin": f"http://{rebound}"}
            for method in ("GET", "POST"):
                answer = client.request(method, "/accounts/paper/halt", headers=rebinding, json={})
                assert "not as rebind.evil.example" in problem(answer, 403)["detail"]
            assert client.get("/accounts/paper").json()["trading_state"] == "ACTIVE"

            own_page = {"Origin": f"http://{here}"}
            halted = client.post("/accounts/paper/halt", json={"reason": "mine"}, headers=own_page)
            assert halted.json()["trading_state"] == "HALTED"
            by_name = client.post("/accounts/paper/resume", headers={"Host": f"localhost:{port}"})
            assert by_name.json()["trading_state"] == "ACTIVE"
    finally:
        stop(proc, signal.SIGTERM)


@pytest.mark.slow
def test_behind_a_reverse_proxy_its_public_pages_act_with_the_login_and_token(
    cli, offline_env: dict[str, str], tmp_path: Path
) -> None:
    """Was 403 on every change from the public page (its Origin is not the Host the proxy
    passes), and on loopback the server started with no login or token for the proxy to
    publish. --public-origin takes that page as the server's own, and asks for both."""
    public = "https://trader.example.com"
    assert cli("agent-trade", *FAST, "--max-bars", "5").returncode == 0
    port = free_port()
    args = [str(BIN / "agent-server"), "--port", str(port), "--public-origin", public]
    env = {**offline_env, "AGENT_SERVER_TOKEN": TOKEN, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen(
        [*args, "--auth", "alice:secret-pass-1"], env=env, cwd=tmp_path, stderr=subprocess.PIPE
    )
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            _wait_until_up(client, proc)
            # The proxy passes its own Host (nginx's default) or the browser's.
            page = {"Origin": public}
            halted = client.post("/accounts/paper/halt", json={}, headers={**page, **bearer})
            assert problem(halted, 200)["trading_state"] == "HALTED"
            as_public = {**page, "Host": "trader.example.com", **bearer}
            resumed = client.post("/accounts/paper/resume", json={}, headers=as_public)
            assert problem(resumed, 200)["trading_state"] == "ACTIVE"
            assert problem(client.post("/accounts/paper/halt", headers=page), 401)
            evil = {"Origin": "https://evil.example", **bearer}
            assert problem(client.post("/accounts/paper/halt", headers=evil), 403)

            login = {"username": "alice", "password": "secret-pass-1"}
            assert client.post("/ui/login", data=login, headers=page).status_code == 200
            asked = client.post(
                "/ui/gradio_api/call/kill_switch", json={"data": ["chat"]}, headers=page
            )
            answer = client.get(f"/ui/gradio_api/call/kill_switch/{asked.json()['event_id']}")
            assert "event: complete" in answer.text, answer.text
            assert (Path(offline_env["AGENT_DATA_DIR"]) / "KILL-chat").exists()
    finally:
        stop(proc, signal.SIGTERM)


def _wait_until_up(client: httpx.Client, proc: subprocess.Popen) -> None:
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"agent-server exited {proc.returncode}: {proc.stderr.read()}")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            threading.Event().wait(0.2)


@pytest.fixture
def serve_store(
    offline_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[[Path], httpx.Client]]:
    """The API over a store on an SQLite path as given, not checked by open_store first: the
    store the server holds when its database goes out of reach after it started."""
    for name, value in offline_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None)
    with ExitStack() as stack:

        def start(path: Path) -> httpx.Client:
            store = Store(f"sqlite:///{path}", str(path))
            jobs = BacktestJobs([], dict(os.environ))
            url = stack.enter_context(serving(create_app(settings, store, jobs, token=None)))
            return stack.enter_context(httpx.Client(base_url=url, timeout=60))

        yield start


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/accounts/paper"),
        ("GET", "/klines?symbol=BTCUSDT&limit=2"),
        ("GET", "/decisions"),
        ("GET", "/metrics/"),
        ("POST", "/accounts/paper/halt"),
    ],
)
def test_a_store_out_of_reach_is_a_503_saying_so(
    serve_store: Callable[[Path], httpx.Client], tmp_path: Path, method: str, path: str
) -> None:
    """Was a plain-text 500: a client could not tell an outage to retry from a bug."""
    gone = tmp_path / "agent.db"
    gone.mkdir()  # a folder where the database file should be: SQLite cannot open it
    answer = serve_store(gone).request(method, path)
    assert problem(answer, 503) == {
        "detail": "the store (database) is unavailable: unable to open database file",
        "field": None,
    }


def test_a_database_error_of_our_own_is_not_called_an_outage(
    serve_store: Callable[[Path], httpx.Client], tmp_path: Path
) -> None:
    """A store without its tables (never migrated) is a bug to see, not a 503 to retry; the
    500 is a Problem in JSON like every other error, its traceback in the server's log."""
    empty = tmp_path / "agent.db"
    empty.touch()
    answer = serve_store(empty).get("/decisions")
    assert answer.status_code == 500
    assert answer.json() == {
        "detail": "internal error (OperationalError): the server's log has its traceback",
        "field": None,
    }


def test_a_job_that_cannot_start_fails_alone_and_the_queue_goes_on() -> None:
    """An environment too large to start a process (E2BIG) made the one worker thread die:
    that job stayed 'running' and every later one 'queued' for ever."""
    jobs = BacktestJobs([], {"TOO_BIG": "x" * 4_000_000}, max_waiting=4)
    taken = [jobs.submit(BacktestRequest(strategy="sma_cross", days=1)) for _ in range(2)]
    deadline = time.monotonic() + 30
    while any(jobs.get(j.id).state in ("queued", "running") for j in taken):
        assert time.monotonic() < deadline, [jobs.get(j.id) for j in taken]
        time.sleep(0.05)
    for job in taken:
        done = jobs.get(job.id)
        assert done.state == "failed" and done.error.startswith("the job could not run: ")
