"""`agent-trade --feed alpaca` as real subprocesses against a loopback Alpaca market: polled
closed bars paper-trade exactly as a backtest of the same bars fills; `--mode testnet` sends
orders to Alpaca's paper account, filled only in sessions; a restart after a lost reply settles
the order by its client_order_id instead of sending it again."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from loopback_alpaca_market import EA, AlpacaMarket
from test_alpaca_download import KEYS, one_line

RSI = ("--strategy", "rsi_reversion", "--period", "2", "--oversold", "40", "--overbought", "60")
PAPER = (*RSI, "--slippage-bps", "2")  # the paper default, said for the backtest too


def market_env(market: AlpacaMarket) -> dict[str, str]:
    """Alpaca at the loopback market, polled at once (its clock moves a bar per question)."""
    return {
        **KEYS,
        "AGENT_ALPACA__DATA_URL": market.url,
        "AGENT_ALPACA__PAPER_URL": market.url,
        "AGENT_ALPACA__INTERVAL": "15m",
        "AGENT_ALPACA__SETTLE_S": "0",
        "AGENT_ALPACA__MAX_WAIT_S": "0.001",
        "AGENT_ALPACA__FILL_WAIT_S": "0",
    }


def in_regular_hours(times_ms: list[int]) -> bool:
    local = pd.to_datetime(times_ms, unit="ms", utc=True).tz_convert("America/New_York")
    minutes = local.hour * 60 + local.minute
    return bool(((minutes >= 570) & (minutes < 960) & (local.day_of_week < 5)).all())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--symbol", "BTCUSDT"), KEYS, "BTCUSDT is a crypto pair; the alpaca venue"),
        (("--symbol", "AAPL"), {}, "Alpaca needs APCA_API_KEY_ID and APCA_API_SECRET_KEY"),
        (("--symbol", "AAPL", "--fee-bps", "5"), KEYS, "--fee-bps is a crypto fee"),
        (("--symbol", "AAPL"), KEYS, "--feed alpaca cannot start: Alpaca unreachable"),
        (("--symbol", "AAPL", "--mode", "live"), KEYS, "live trading needs LIVE_TRADING_CONFIRM"),
        (
            ("--symbol", "AAPL", "--mode", "testnet", "--extended-hours"),
            KEYS,
            "extended hours at Alpaca take limit orders only",
        ),
    ],
)
def test_agent_trade_on_alpaca_refuses_in_one_line_what_cannot_run(cli, args, env, message) -> None:
    result = cli("agent-trade", "--feed", "alpaca", "--strategy", "sma_cross", *args, env=env)
    assert message in one_line(result)


@pytest.mark.slow
def test_paper_on_alpaca_bars_fills_exactly_where_the_backtest_of_those_bars_fills(
    cli, tmp_path
) -> None:
    """Every bar of the EA file, polled from Alpaca one close at a time, against agent-backtest
    on the same file: the same fills, all in regular hours; status counts in USD."""
    out = tmp_path / "bt.json"
    tested = cli("agent-backtest", *PAPER, "--symbol", "EA", "--data", str(EA), "--json", str(out))
    assert tested.returncode == 0, tested.stderr
    report = json.loads(out.read_text())
    with AlpacaMarket() as market:
        env = market_env(market)
        bars = len(market.bars)
        run = cli("agent-trade", "--feed", "alpaca", *PAPER, "--symbol", "EA", "--account", "ea",
                  "--max-bars", str(bars), env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "feed: Alpaca iex 15m bars of EA, polled over REST" in run.stderr
    assert f"{bars} bars processed" in run.stdout
    fills = json.loads(cli("agent-trade", "fills", "--account", "ea", "--json").stdout)
    key = [(f["time_ms"], f["side"], f["quantity"], round(f["price"], 6)) for f in fills]
    assert len(fills) > 10
    assert key == [
        (f["time_ms"], f["side"], f["quantity"], round(f["price"], 6)) for f in report["fills"]
    ]
    assert in_regular_hours([f["time_ms"] for f in fills])
    status = cli("agent-trade", "status", "--account", "ea").stdout
    assert "USD" in status and "USDT" not in status
    assert not [path for path, _ in market.requests if path == "/v2/orders"]  # paper: none sent


@pytest.mark.slow
def test_testnet_sends_orders_to_alpacas_paper_account_filled_only_in_sessions(cli) -> None:
    with AlpacaMarket() as market:
        args = (*RSI, "--symbol", "EA", "--account", "ap", "--mode", "testnet")
        run = cli(
            "agent-trade", "--feed", "alpaca", *args, "--max-bars", "60", env=market_env(market)
        )
        sent = list(market.posts)
        held = dict(market.positions)
    assert run.returncode == 0, run.stderr
    assert "orders: Alpaca testnet, reconciled" in run.stderr
    assert sent and len(sent) == len(set(sent))
    fills = json.loads(cli("agent-trade", "fills", "--account", "ap", "--json").stdout)
    assert fills and {f["client_order_id"] for f in fills} <= set(sent)
    assert in_regular_hours([f["time_ms"] for f in fills])
    assert sum(f["quantity"] * (1 if f["side"] == "buy" else -1) for f in fills) == held.get(
        "EA", 0.0
    )
    status = cli("agent-trade", "status", "--account", "ap").stdout
    assert "key       Alpaca testnet account in USD: cash" in status
    assert "trading allowed" in status and "USDT" not in status


@pytest.mark.slow
def test_a_restart_settles_an_order_whose_reply_was_lost_and_never_sends_it_twice(cli) -> None:
    """The first order's reply is lost and Alpaca's order status is down for the rest of the
    run: the order stays unknown. The restart asks for it by its client_order_id, books its
    fill, and sends it no second time."""
    with AlpacaMarket() as market:
        env = market_env(market)
        args = (*RSI, "--symbol", "EA", "--account", "rs", "--mode", "testnet")
        market.lose_replies, market.status_down = 1, True
        first = cli("agent-trade", "--feed", "alpaca", *args, "--max-bars", "30", env=env)
        assert first.returncode == 0, first.stderr
        assert len(market.posts) == 1
        (lost,) = market.posts
        assert not json.loads(cli("agent-trade", "fills", "--account", "rs", "--json").stdout)
        market.status_down = False
        second = cli("agent-trade", "--feed", "alpaca", *args, "--max-bars", "1", env=env)
        posts = list(market.posts)
    assert second.returncode == 0, second.stderr
    assert posts.count(lost) == 1
    fills = json.loads(cli("agent-trade", "fills", "--account", "rs", "--json").stdout)
    assert [f["client_order_id"] for f in fills][:1] == [lost]
    assert in_regular_hours([f["time_ms"] for f in fills])


def test_live_reads_the_live_account_then_refuses_without_a_paper_record(cli) -> None:
    """Confirmed live, Alpaca's live API is asked for the account, and the start stops on the
    same paper-record gate as Binance live: nothing is sent."""
    with AlpacaMarket() as market:
        env = {**market_env(market), "AGENT_ALPACA__PAPER_URL": "http://127.0.0.1:9",
               "AGENT_ALPACA__LIVE_URL": market.url, "LIVE_TRADING_CONFIRM": "yes"}  # fmt: skip
        run = cli("agent-trade", "--feed", "alpaca", *RSI, "--symbol", "EA", "--mode", "live",
                  "--account", "real", "--max-bars", "1", env=env)  # fmt: skip
    assert run.returncode == 2
    line = run.stderr.splitlines()[-1]
    assert "live trading needs 7 days of paper trading" in line
    assert "start one with `agent-trade --feed alpaca`" in line
    assert ("/v2/account", {}) in market.requests
    assert not market.posts
