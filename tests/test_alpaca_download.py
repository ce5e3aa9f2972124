"""`agent-data download --exchange alpaca` as a real subprocess against a loopback Alpaca
replaying captured bodies: every page of bars into the store under exchange `alpaca`; a coin on
Alpaca, a stock on Binance, or no keys, each one line and exit 2."""

from __future__ import annotations

import pytest
from loopback_alpaca import LoopbackAlpaca, body

KEYS = {"APCA_API_KEY_ID": "PKTEST", "APCA_API_SECRET_KEY": "not-a-secret"}


def one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.slow
def test_agent_data_downloads_alpaca_bars_page_by_page_into_the_store(cli) -> None:
    pages = [
        body("rest_v2_stocks_bars_AAPL_1Day_2022-02-01_limit2.json"),
        body("rest_v2_stocks_bars_AAPL_TSLA_1Day_2022-03-09.json"),
    ]
    with LoopbackAlpaca({"/v2/stocks/bars": pages}) as server:
        args = (
            "--symbol",
            "AAPL",
            "--interval",
            "1d",
            "--start",
            "2022-02-01",
            "--end",
            "2022-03-10",
        )
        env = {**KEYS, "AGENT_ALPACA__DATA_URL": server.url, "LOG_LEVEL": "DEBUG"}
        result = cli("agent-data", "download", "--exchange", "alpaca", *args, env=env)
    assert result.returncode == 0, result.stderr
    assert "alpaca AAPL 1d: 3 closed bars" in result.stdout
    assert "3 new in the store" in result.stdout
    assert KEYS["APCA_API_SECRET_KEY"] not in result.stdout + result.stderr
    asked = [q for path, q, _ in server.requests if path == "/v2/stocks/bars"]
    assert [q.get("page_token") for q in asked] == [None, pages[0]["next_page_token"]]
    assert all(q["feed"] == "iex" for q in asked)
    listed = cli("agent-data", "list").stdout.splitlines()
    assert any("alpaca" in row and "AAPL" in row and "2022-03-09" in row for row in listed)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ("--exchange", "alpaca", "--symbol", "BTCUSDT"),
            KEYS,
            "BTCUSDT is a crypto pair; the alpaca",
        ),
        (
            ("--exchange", "binance", "--symbol", "AAPL"),
            {},
            "AAPL is a US stock; the binance venue",
        ),
        (
            ("--exchange", "alpaca", "--symbol", "AAPL"),
            {},
            "APCA_API_KEY_ID and APCA_API_SECRET_KEY",
        ),
    ],
)
def test_agent_data_refuses_the_wrong_asset_class_and_missing_keys(cli, args, env, message) -> None:
    result = cli("agent-data", "download", *args, "--days", "1", env=env)
    assert message in one_line(result)
