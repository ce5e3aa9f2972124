"""Commands load only what they use: a classic backtest, a classic strategy's trading loop and
`agent-trade status` never import the agent's stack (LangGraph, LangChain, LangSmith, the OpenAI SDK) or the UI's (Gradio,
Plotly), nor Ray, so they start in a fraction of the time; an agent backtest or loop with the offline
model or a fully cached LLM imports neither LangGraph nor the SDK, nor the tokenizer once past
decisions give the estimate; a classic backtest on an up-to-date SQLite store saves its run
through the driver, without SQLAlchemy, and an offline agent backtest on one reads its bars and
rules without it too, and `agent-config show` loads neither pandas nor SQLAlchemy;
every command's `--help` and flag errors load neither, nor the settings, and a testnet chat
refused for want of live bars loads no UI; `agent-trade status` and
`fills` load no pandas, and on a SQLite file read the account without SQLAlchemy; a paper loop no signed venue's client, and `agent-data` reads and writes the
store without the exchanges' HTTP clients. Read from Python's own import log."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from loopback_openai import LoopbackOpenAI
from scripted_model import ScriptedModel, buy_an_uptrend

AGENT_AND_UI = {"langgraph", "langchain_core", "langsmith", "openai", "gradio", "plotly", "ray"}
NETWORK = {"httpx", "tenacity", "diskcache", "websockets"}
# what a single run does not load
SWEEP_AND_CHECKS = {"rich.progress", "multiprocessing", "backtest.deflated", "backtest.lookahead"}
STORE_LIBRARIES = {"sqlmodel", "sqlalchemy", "store.tables"}  # an up-to-date store, a run saved
SETTINGS = {"config", "pydantic_settings"}
SIGNED_VENUES = {"execution.binance_executor", "venues.bybit.trading", "venues.alpaca.trading"}


def _modules(stderr: str) -> set[str]:
    """Modules named in the `-X importtime` log (PYTHONPROFILEIMPORTTIME=1)."""
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+([\w.]+)$", stderr, re.MULTILINE)
    assert names, "the import log is empty: is PYTHONPROFILEIMPORTTIME honoured?"
    return set(names)


def _imported(stderr: str) -> set[str]:
    """Top-level packages named in the import log."""
    return {name.split(".")[0] for name in _modules(stderr)}


@pytest.fixture
def bars_csv(tmp_path: Path) -> Path:
    path = tmp_path / "btc.csv"
    with gzip.open(
        Path(str(resources.files("market") / "data" / "BTCUSDT-1m-2025-10-29_3d.csv.gz")), "rb"
    ) as packed:
        path.write_bytes(packed.read())
    return path


@pytest.mark.slow
def test_a_classic_backtest_on_a_csv_loads_no_agent_ui_or_network_stack(cli, bars_csv) -> None:
    run = ("agent-backtest", "--strategy", "sma_cross", "--data", str(bars_csv), "--days", "1")
    assert cli(*run).returncode == 0  # the first run creates the store
    result = cli(*run, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Return [%]" in result.stdout
    imported = _imported(result.stderr)
    assert {"pandas", "sqlite3"} <= imported  # what it does use is in the log
    assert imported & (AGENT_AND_UI | NETWORK) == set()
    assert _modules(result.stderr) & (SWEEP_AND_CHECKS | STORE_LIBRARIES) == set()
    assert "saved as backtest run #2 in the store" in result.stderr  # by sqlite3 alone


@pytest.mark.slow
def test_a_classic_loop_and_its_status_load_no_agent_or_ui_stack(cli) -> None:
    loop = ("--feed", "replay", "--speed", "max", "--strategy", "sma_cross", "--max-bars", "2")
    ran = cli("agent-trade", *loop, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert _imported(ran.stderr) & AGENT_AND_UI == set()  # its feed is a loopback WebSocket
    result = cli("agent-trade", "status", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "processed 2 bars" in result.stdout
    assert _imported(result.stderr) & (AGENT_AND_UI | NETWORK | {"pandas"}) == set()
    assert _modules(result.stderr) & STORE_LIBRARIES == set()  # the account read by sqlite3
    fills = cli("agent-trade", "fills", "--json", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert fills.returncode == 0, fills.stderr[-2000:]
    assert fills.stdout.startswith("[")
    assert _imported(fills.stderr) & (AGENT_AND_UI | NETWORK | {"pandas"}) == set()
    assert _modules(fills.stderr) & STORE_LIBRARIES == set()


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        ("agent-trade", "--feed", "nowhere"),
        ("agent-backtest", "--strategy"),
        ("agent-data", "list", "--symbol", "BTCUSDT"),
        ("agent-arb", "scan", "--size"),
    ],
    ids=lambda command: command[0],
)
def test_help_and_flag_errors_load_only_the_parser(cli, command) -> None:
    """The parser alone answers --help and a mistyped flag: no settings, data or store stack."""
    for args in (("--help",), command[1:]):
        result = cli(command[0], *args, env={"PYTHONPROFILEIMPORTTIME": "1"})
        assert result.returncode == (0 if args == ("--help",) else 2), result.stderr[-2000:]
        assert "usage:" in result.stdout if args == ("--help",) else "error:" in result.stderr
        imported = _imported(result.stderr)
        assert "agent" in imported  # the command's own parser is in the log
        heavy = {"pandas", "sqlalchemy", "sqlmodel"} | SETTINGS | AGENT_AND_UI | NETWORK
        assert imported & heavy == set()


@pytest.mark.slow
def test_agent_trade_status_and_fills_read_the_store_without_sqlalchemy_or_pandas(cli) -> None:
    assert cli("agent-data", "status").returncode == 0  # makes the store (a refusal keeps none)
    for command in ("status", "fills"):
        result = cli(
            "agent-trade", command, "--account", "nobody", env={"PYTHONPROFILEIMPORTTIME": "1"}
        )
        assert result.returncode == 2, result.stderr[-2000:]
        assert "no trading account 'nobody'" in result.stderr
        imported = _imported(result.stderr)
        assert "sqlite3" in imported  # the store is read, by the driver alone
        assert imported & ({"pandas"} | AGENT_AND_UI | NETWORK) == set()
        assert _modules(result.stderr) & STORE_LIBRARIES == set()


@pytest.mark.slow
def test_agent_data_reads_and_writes_the_store_without_the_exchanges_clients(cli, bars_csv) -> None:
    """import, list and verify use pandas and the store; only download needs an HTTP client,
    and only status the database's inspection."""
    runs = (
        ("import", str(bars_csv), "--symbol", "BTCUSDT", "--interval", "1m"),
        ("list",),
        ("verify", "--symbol", "BTCUSDT"),
    )
    for args in runs:
        result = cli("agent-data", *args, env={"PYTHONPROFILEIMPORTTIME": "1"})
        assert result.returncode == 0, result.stderr[-2000:]
        assert "BTCUSDT" in result.stdout
        imported = _imported(result.stderr)
        assert {"pandas", "sqlalchemy", "pydantic_settings"} <= imported
        assert imported & (NETWORK | AGENT_AND_UI) == set()
        assert _modules(result.stderr) & {"store.status", "rich.progress"} == set()


@pytest.mark.slow
def test_an_offline_or_fully_cached_agent_backtest_loads_no_graph_framework_or_sdk(cli) -> None:
    day = ("agent-backtest", "--symbol", "BTCUSDT", "--days", "1")
    server = LoopbackOpenAI(responder=ScriptedModel(buy_an_uptrend)).start()
    llm = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test-loopback"}
    try:
        cold = cli(*day, "--yes", env={**llm, "PYTHONPROFILEIMPORTTIME": "1"})
        assert cold.returncode == 0, cold.stderr[-2000:]
        sent = len(server.requests)
        warm = cli(*day, "--yes", env={**llm, "PYTHONPROFILEIMPORTTIME": "1"})
        assert warm.returncode == 0, warm.stderr[-2000:]
    finally:
        server.stop()
    assert len(server.requests) == sent > 0  # every answer came from the cache
    assert "httpx" in _imported(cold.stderr)  # it sent them, without httpx's own command line
    assert _imported(cold.stderr) & {"click", "pygments"} == set()
    imported = _imported(warm.stderr)
    assert "diskcache" in imported and imported & (AGENT_AND_UI | {"tiktoken"}) == set()
    # past decisions give the estimate, read in plain SQL as the bars' cache state and rules are
    assert _modules(warm.stderr) & STORE_LIBRARIES == set()

    offline = cli(*day, env={"PYTHONPROFILEIMPORTTIME": "1"})  # the store is up to date now
    assert offline.returncode == 0, offline.stderr[-2000:]
    assert "offline model" in offline.stderr
    assert "saved as backtest run #3" in offline.stderr  # by sqlite3 alone
    imported = _imported(offline.stderr)
    assert "agent" in imported and imported & (AGENT_AND_UI | {"tiktoken"}) == set()
    # its bars from the columnar cache, their cache state and the venue's rules in plain SQL
    assert _modules(offline.stderr) & STORE_LIBRARIES == set()


@pytest.mark.slow
def test_the_agent_loop_on_the_offline_model_loads_no_graph_framework_or_sdk(cli) -> None:
    loop = ("--feed", "replay", "--speed", "max", "--max-bars", "2")
    ran = cli("agent-trade", *loop, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "offline model" in ran.stderr
    imported = _imported(ran.stderr)
    assert "agent" in imported and imported & (AGENT_AND_UI | {"tiktoken"}) == set()
    # a paper account: no signed venue's client, nor agent-backtest's run
    assert _modules(ran.stderr) & (SIGNED_VENUES | {"agent.cli.backtest_run"}) == set()


def test_showing_the_settings_loads_no_data_or_store_stack(cli) -> None:
    result = cli("agent-config", "show", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "backtest" in result.stdout
    imported = _imported(result.stderr)
    assert "pydantic_settings" in imported
    assert imported & ({"pandas", "sqlalchemy", "sqlmodel"} | AGENT_AND_UI | NETWORK) == set()


@pytest.mark.slow
def test_a_testnet_chat_without_live_bars_is_refused_before_the_ui_stack(cli) -> None:
    """Offline, `agent-ui --mode testnet` has only the frozen sample: it says so without
    importing Gradio, Plotly or the graph it would serve."""
    result = cli("agent-ui", "--mode", "testnet", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].endswith("nothing was sent")
    assert _imported(result.stderr) & AGENT_AND_UI == set()


STUB_READS = """
import os, sys
read = []
def audit(event, args):
    if event == "open" and args[1] == "r":  # text reads; the import system reads bytes
        read.append(str(args[0]))
sys.addaudithook(audit)
import agent.ui, gradio
root = os.path.dirname(gradio.__file__)
print([p for p in read if p.startswith(root) and p.endswith((".py", ".pyi"))])
print(os.environ["GRADIO_ANALYTICS_ENABLED"])
"""


@pytest.mark.slow
def test_the_chat_loads_gradio_without_rewriting_its_type_stubs() -> None:
    """Gradio's import reads every component's source and rewrites the `.pyi` stub beside it (an
    editor's aid): about 2 s of CPU at every start of agent-ui or agent-server's /ui. The chat
    loads Gradio without that step, and still tells it to send no usage reports."""
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_ANALYTICS_ENABLED"}
    done = subprocess.run(
        [sys.executable, "-c", STUB_READS], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "False"]
