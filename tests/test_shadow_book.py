"""The shadow book: `agent-trade --shadow sma_cross` runs the rule strategy through the same gate
on the same bars into `<account>-shadow` beside the agent's account, which it leaves alone; a
restart resumes both, and `status` shows both and the difference. Real subprocesses, a
loopback WebSocket replay of real bars, the offline model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from market.sample import load_sample

FILL_FIELDS = ("time_ms", "symbol", "side", "quantity", "price", "fee")
COMMON = ("--symbol", "BTCUSDT", "--speed", "max", "--decide-every", "5")


@pytest.fixture
def bars_csv(tmp_path: Path) -> Path:
    """Ten hours of the bundled real BTCUSDT bars, as a user's own file (no order book)."""
    path = tmp_path / "btcusdt-1m.csv"
    load_sample("BTCUSDT").iloc[:600].to_csv(path, index=False)
    return path


def _fills(cli, account: str) -> list[tuple[Any, ...]]:
    result = cli("agent-trade", "fills", "--account", account, "--json")
    assert result.returncode == 0, result.stderr
    return [tuple(row[f] for f in FILL_FIELDS) for row in json.loads(result.stdout)]


@pytest.mark.slow
def test_the_shadow_fills_like_a_backtest_and_the_agent_trades_as_without_it(
    cli, tmp_path: Path, bars_csv: Path
) -> None:
    run = ("agent-trade", *COMMON, "--data", str(bars_csv), "--account", "main")
    first = cli(*run, "--shadow", "sma_cross", "--max-bars", "250")
    assert first.returncode == 0, first.stderr
    assert "shadow: sma_cross fast=20 slow=60" in first.stderr
    second = cli(*run, "--shadow", "sma_cross")  # a restart resumes both accounts
    assert second.returncode == 0, second.stderr
    assert "(resuming after the bar of" in second.stderr.split("shadow:")[1]

    out = tmp_path / "backtest.json"
    backtest = cli(
        "agent-backtest", "--strategy", "sma_cross", "--symbol", "BTCUSDT",
        "--data", str(bars_csv), "--fee-bps", "10", "--slippage-bps", "2", "--json", str(out),
    )  # fmt: skip
    assert backtest.returncode == 0, backtest.stderr
    report = json.loads(out.read_text())
    shadow = _fills(cli, "main-shadow")
    assert len(shadow) >= 4
    assert shadow == [tuple(row[f] for f in FILL_FIELDS) for row in report["fills"]]

    alone = cli("agent-trade", *COMMON, "--data", str(bars_csv), "--account", "alone")
    assert alone.returncode == 0, alone.stderr
    assert _fills(cli, "main") == _fills(cli, "alone") != []

    status = json.loads(cli("agent-trade", "status", "--account", "main", "--json").stdout)
    side = status["shadow"]
    assert side["account"] == "main-shadow" and side["mode"] == "paper"
    assert side["strategy"] == "sma_cross fast=20 slow=60"
    assert round(side["equity"], 2) == round(report["metrics"]["Equity Final [$]"], 2)
    adds = status["model_adds"]
    assert adds["equity"] == round(status["equity"] - side["equity"], 2)
    assert adds["fills"] == status["fills"] - side["fills"] and adds["same_last_bar"]
    assert (
        json.loads(cli("agent-trade", "status", "--account", "alone", "--json").stdout)["shadow"]
        is None
    )

    text = cli("agent-trade", "status", "--account", "main").stdout
    assert "what the model adds" in text
    columns = [line.split() for line in text.splitlines()]
    assert ["main", "main-shadow", "difference"] in columns
    equity = [f"{status['equity']:,.2f}", f"{side['equity']:,.2f}", f"{adds['equity']:+,.2f}"]
    assert ["equity", *equity] in columns


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("--shadow", "buy_the_dip"),
            "invalid --shadow 'buy_the_dip': a rule strategy, one of sma_cross",
        ),
        (("status", "--shadow", "sma_cross"), "--shadow is for running the loop"),
    ],
)
def test_a_bad_shadow_exits_2_in_one_line(cli, args: tuple[str, ...], says: str) -> None:
    result = cli("agent-trade", *args, "--max-bars", "1")
    assert result.returncode == 2
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
