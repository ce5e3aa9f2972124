"""`agent-trade` on a stock with no --data replays the store's bars: the EA file imported with
`agent-data import` paper-trades exactly as a replay of the file does (the same fills, the
dividend stored beside the bars credited the same), and what cannot apply exits 2 in one line."""

from __future__ import annotations

import json

import pytest
from test_stock_paper_parity import EA, RSI, _fills

REPLAY = ("--feed", "replay", "--speed", "max", *RSI, "--symbol", "EA", "--slippage-bps", "2")


@pytest.mark.slow
def test_the_stores_imported_bars_trade_as_the_file_does(cli) -> None:
    imported = cli("agent-data", "import", str(EA), "--symbol", "EA", "--interval", "15m")
    assert imported.returncode == 0, imported.stderr
    stored = cli("agent-trade", *REPLAY, "--account", "st")
    assert stored.returncode == 0, stored.stderr
    assert "feed: the store's alpaca 15m bars of EA replayed" in stored.stderr
    from_file = cli("agent-trade", *REPLAY, "--data", str(EA), "--account", "file")
    assert from_file.returncode == 0, from_file.stderr

    def account(name: str) -> tuple[list[tuple], dict]:
        fills = json.loads(cli("agent-trade", "fills", "--account", name, "--json").stdout)
        shown = json.loads(cli("agent-trade", "status", "--account", name, "--json").stdout)
        return _fills(fills), {k: shown[k] for k in ("cash", "equity", "bars", "currency")}

    fills, books = account("st")
    assert len(fills) > 10 and books["currency"] == "USD"
    assert (fills, books) == account("file")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--symbol", "EA", "--exchange", "alpaca"), "no EA bars stored under alpaca"),
        (("--symbol", "BTCUSDT", "--exchange", "alpaca"), "--exchange replays a stock's stored"),
        (("--symbol", "EA", "--feed", "alpaca", "--exchange", "alpaca"), "--feed alpaca is live"),
        (("--symbol", "EA", "--data", str(EA), "--exchange", "alpaca"), "--data reads your own"),
    ],
)
def test_a_stored_stock_replay_refuses_in_one_line_what_cannot_apply(cli, args, message) -> None:
    result = cli("agent-trade", "--strategy", "sma_cross", *args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
