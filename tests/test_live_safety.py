"""`agent-trade --mode live` against the loopback exchange, as a user starts it: the API key's
permissions, the .env's mode and the paper record are checked before anything trades; and a
fresh data directory's files are private."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BIN, CliResult
from launcher import popen
from loopback_binance import LoopbackBinance
from loopback_exchange import API_KEY, API_SECRET, LoopbackExchange
from sqlalchemy import insert

from agent.live_readiness import record_paper_profile, trading_profile
from agent.offline import OfflineModel
from backtest.config import BacktestConfig
from risk.limits import RiskLimits
from store import open_store
from store.tables import EquityPointRow

LIVE = ("--mode", "live", "--feed", "binance", "--account", "lv")
STARTED = "orders: Binance live, reconciled"
DAY_MINUTES, MINUTE_MS = 1_440, 60_000


@pytest.fixture
def live_env() -> Iterator[dict[str, str]]:
    """Keys the loopback exchange knows, its URL for signed trading, the loopback REST server
    for public bars and a closed loopback port for the stream: nothing leaves the machine."""
    rest = LoopbackBinance().start()
    env = {
        "BINANCE_API_KEY": API_KEY,
        "BINANCE_API_SECRET": API_SECRET,
        "AGENT_BINANCE__BASE_URL": rest.base_url,
        "AGENT_BINANCE__STREAM_URL": "ws://127.0.0.1:9",
        "LIVE_TRADING_CONFIRM": "yes",
    }
    yield env
    rest.stop()


def exchange_with(**key: bool) -> LoopbackExchange:
    return LoopbackExchange(
        prices={"BTCUSDT": "110000", "ETHUSDT": "3900"}, key_permissions=key
    ).start()


def start_live(offline_env: dict[str, str], env: dict[str, str]) -> str:
    """Run live until it has passed every check and started, then stop it (SIGTERM, which
    records the account); what it said up to the start."""
    proc = subprocess.Popen(
        [str(BIN / "agent-trade"), *LIVE],
        env={**offline_env, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    assert proc.stderr is not None
    try:
        for line in proc.stderr:  # started: the loop is trying the (closed) stream port
            seen.append(line)
            if "kill switch:" in "".join(seen) and "reconnecting" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    return "".join(seen)


def paper_history(offline_env: dict[str, str], days: float, after_days: float = 0) -> None:
    """A paper account that traded the offline model every 15 min on both symbols on the live
    feed for `days` (from `after_days` on), as `agent-trade --feed binance` records it: its
    profile, then one equity point per bar."""
    store = open_store(f"sqlite:///{Path(offline_env['AGENT_DATA_DIR']) / 'agent.db'}")
    profile = trading_profile(
        ["BTCUSDT", "ETHUSDT"], "agent", OfflineModel(), 15, RiskLimits(), BacktestConfig()
    )
    first = 1_764_547_200_000 + int(after_days * DAY_MINUTES) * MINUTE_MS
    record_paper_profile(store, "rehearsal", profile, "binance", None, 0)
    rows = [
        {"account": "rehearsal", "time_ms": first + i * MINUTE_MS + MINUTE_MS - 1,
         "equity": 10_000.0, "cash": 10_000.0}
        for i in range(int(days * DAY_MINUTES))
    ]  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(insert(EquityPointRow), rows)
    store.close()


def live_with_key(cli, live_env: dict[str, str], **key: bool) -> tuple[CliResult, LoopbackExchange]:
    """`agent-trade --mode live` (paper record waived) with a key of these permissions."""
    exchange = exchange_with(**key)
    env = {**live_env, "AGENT_BINANCE__TRADE_URL": exchange.base_url}
    try:
        return cli(
            "agent-trade", *LIVE, env={**env, "AGENT_LIVE__REQUIRE_PAPER_DAYS": "0"}
        ), exchange
    finally:
        exchange.stop()


def test_a_key_that_can_withdraw_is_refused(cli, live_env) -> None:
    result, exchange = live_with_key(cli, live_env, enableWithdrawals=True)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: refusing live trading with this API key: enableWithdrawals")
    assert exchange.count("GET", "/sapi/v1/account/apiRestrictions") == 1
    assert exchange.count("POST", "/api/v3/order") == 0
    assert API_KEY not in result.stderr and API_SECRET not in result.stderr


def test_a_key_without_spot_trading_is_refused(cli, live_env) -> None:
    result, _ = live_with_key(cli, live_env, enableSpotAndMarginTrading=False)
    assert result.returncode == 2
    assert "enableSpotAndMarginTrading is off: this key cannot place spot orders" in result.stderr


@pytest.mark.slow
def test_a_trade_only_key_without_ip_restriction_starts_with_a_warning(
    cli, offline_env, live_env
) -> None:
    exchange = exchange_with(ipRestrict=False)
    env = {**live_env, "AGENT_BINANCE__TRADE_URL": exchange.base_url}
    try:
        said = start_live(offline_env, {**env, "AGENT_LIVE__REQUIRE_PAPER_DAYS": "0"})
    finally:
        exchange.stop()
    assert STARTED in said, said
    assert "warning: the API key has no IP restriction (ipRestrict false)" in said
    assert "notice: live.require_paper_days is 0: the paper record" in said
    shown = cli("agent-trade", "status", "--account", "lv", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    key = json.loads(shown.stdout)["key_permissions"]
    assert key["flags"]["ipRestrict"] is False and key["flags"]["enableWithdrawals"] is False
    text = cli("agent-trade", "status", "--account", "lv", env=env)
    assert "key       no IP restriction; enabled: enableReading, enableSpotAndMarginTrading" in (
        text.stdout
    )
    for output in (shown.stdout, text.stdout, said):
        assert API_KEY not in output and API_SECRET not in output


@pytest.mark.slow
def test_live_needs_seven_days_of_paper_then_starts(cli, offline_env, live_env) -> None:
    exchange = exchange_with()
    env = {**live_env, "AGENT_BINANCE__TRADE_URL": exchange.base_url}
    try:
        none = cli("agent-trade", *LIVE, env=env)
        assert none.returncode == 2
        assert "live trading needs 7 days of paper trading on the live feed" in none.stderr
        assert "no paper account has traded it" in none.stderr
        assert exchange.count("POST", "/api/v3/order") == 0  # refused before any order

        paper_history(offline_env, 6.5)
        short = cli("agent-trade", *LIVE, env=env)
        assert short.returncode == 2 and "'rehearsal' has 6.5 of them" in short.stderr
        other = cli("agent-trade", *LIVE, "--decide-every", "5", env=env)
        assert other.returncode == 2 and "'rehearsal' differs in strategy" in other.stderr

        paper_history(offline_env, 0.5, after_days=6.5)
        said = start_live(offline_env, env)
        assert "paper record: account 'rehearsal' traded this on paper for 7.0 days" in said
        assert STARTED in said and "warning" not in said  # a trade-only, IP-restricted key
    finally:
        exchange.stop()


@pytest.mark.slow
def test_a_dotenv_others_can_read_is_refused_for_live(cli, offline_env, live_env) -> None:
    dotenv = Path(offline_env["AGENT_DATA_DIR"]).parent / ".env"  # the commands' working dir
    dotenv.write_text("AGENT_LOG_LEVEL=INFO\n")
    dotenv.chmod(0o644)
    live = cli("agent-trade", *LIVE, env=live_env)
    assert live.returncode == 2
    assert "live trading refused: .env is readable by other users (mode 0644)" in live.stderr
    paper = cli("agent-data", "list")
    assert paper.returncode == 0
    assert "warning: .env is readable by other users (mode 0644)" in paper.stderr
    dotenv.chmod(0o600)
    assert "warning" not in cli("agent-data", "list").stderr


@pytest.mark.slow
def test_a_fresh_data_directory_is_private(offline_env, failing_llm) -> None:
    """While the loop runs with an LLM configured (its cache open) and the store in WAL mode:
    every directory is 0700 and every file 0600."""
    env = {**offline_env, **failing_llm.env}
    data = Path(env["AGENT_DATA_DIR"])
    args = ("--feed", "replay", "--speed", "600", "--budget-usd", "1", "--decide-every", "1")
    proc = popen([str(BIN / "agent-trade"), *args], env)
    try:
        wanted = [data / "agent.db-wal", data / "agent.db-shm", data / "llm-cache" / "cache.db"]
        deadline = time.monotonic() + 60
        while not all(p.exists() for p in wanted) or not failing_llm.server.requests:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        modes = {
            str(p.relative_to(data)): stat.S_IMODE(p.stat().st_mode)
            for p in [data, *data.rglob("*")]
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert {"agent.db", "agent.db-wal", "agent.db-shm", "llm-cache/cache.db"} <= set(modes)
    for name, found in modes.items():
        expected = 0o700 if (data / name).is_dir() else 0o600
        assert found == expected, f"{name}: {found:04o}"
