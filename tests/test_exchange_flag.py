"""`--exchange` wherever the store or market data is read: agent-data import and verify,
agent-backtest on another venue's stored bars (never Binance's sample in their place), and the
tools reading a venue-qualified symbol (`bybit:BTCUSDT`) beside the run's own. The bars are
Bybit's real 2022-12-13 BTCUSDT minutes (tests/fixtures/bybit/cross_venue, PROVENANCE.md)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from agent.chat_market import other_venues
from market.sample import load_sample, sample_rules
from market.source import load_csv_candles
from store.candles import upsert_candles
from tools import MarketData, ToolEnv, chat_tools, flat_portfolio

LEAN = (
    Path(__file__).parent
    / "fixtures/bybit/cross_venue/bybit_spot_BTCUSDT_1m_trade_2022-12-13_lean.csv"
)
DAY_START_MS = 1_670_889_600_000  # 2022-12-13 00:00 UTC: the LEAN file's times count from it


def bybit_csv(folder: Path) -> Path:
    """The LEAN minutes as an OHLCV file with a timestamp column, as a user would export them."""
    path = folder / "bybit_btcusdt_2022-12-13.csv"
    with LEAN.open() as src, path.open("w") as out:
        out.write("timestamp,open,high,low,close,volume\n")
        for time, *ohlcv in csv.reader(src):
            out.write(",".join([str(DAY_START_MS + int(time)), *ohlcv]) + "\n")
    return path


@pytest.mark.slow
def test_bybit_bars_are_imported_verified_and_backtested_by_exchange(cli, tmp_path: Path) -> None:
    imported = cli("agent-data", "import", str(bybit_csv(tmp_path)), "--symbol", "BTCUSDT",
                   "--interval", "1m", "--exchange", "bybit")  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert "bybit BTCUSDT 1m: read 1,440 valid bars" in imported.stdout
    verified = cli("agent-data", "verify", "--exchange", "bybit")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip() == "bybit BTCUSDT 1m: 1,440 bars, ok"
    run = cli("agent-backtest", "--exchange", "bybit", "--strategy", "sma_cross", "--start",
              "2022-12-13", "--end", "2022-12-14", "--json", "r.json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "notice: bybit bars and exchange rules, from the store" in run.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    prices = [float(f["price"]) for f in report["fills"]]
    assert prices, report["fills"]
    # Bybit's BTC of 2022-12-13 (about 17,200-18,000), not the bundled Binance sample's of 2025
    assert all(17_000 < p < 18_100 for p in prices)


def test_a_backtest_on_bybit_without_its_bars_exits_2_instead_of_using_binances_sample(
    cli,
) -> None:
    run = cli("agent-backtest", "--exchange", "bybit", "--strategy", "sma_cross", "--days", "1")
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no bybit BTCUSDT 1m bars in the store")
    assert "agent-data download --exchange bybit" in last


IMPORT = ("agent-data", "import", "x.csv", "--interval", "1m", "--symbol")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("agent-data", "verify", "--exchange", "kraken"), "unknown exchange 'kraken'"),
        ((*IMPORT, "BTCUSDT", "--exchange", "kraken"), "unknown exchange 'kraken'"),
        ((*IMPORT, "AAPL", "--exchange", "bybit"), "AAPL is a US stock; the bybit venue trades"),
        ((*IMPORT, "BTCUSDT", "--exchange", "alpaca"), "BTCUSDT is a crypto pair; the alpaca"),
        (("agent-backtest", "--symbol", "GOOG", "--exchange", "bybit"), "GOOG is a US stock"),
        (("agent-backtest", "--exchange", "kraken"), "unknown exchange 'kraken'"),
        (("agent-backtest", "--exchange", "bybit", "--data", "x.csv"), "--data reads your own"),
        (("agent-data", "verify", "--exchange", "bybit"), "no stored candles for bybit"),
    ],
)
def test_an_exchange_that_cannot_apply_exits_2_in_one_line(cli, args, said: str) -> None:
    run = cli(*args)
    assert run.returncode == 2
    assert said in run.stderr.strip().splitlines()[-1]


def _env(frames: dict) -> ToolEnv:
    market = MarketData(frames, "1m")
    end = int(frames["BTCUSDT"]["close_time"].iloc[-1])
    return ToolEnv(market=market, now_ms=end, rules=sample_rules(), portfolio=flat_portfolio(1e4))


def _call(env: ToolEnv, tool: str, symbol: str, **more: str) -> tuple[bool, dict | str]:
    out = chat_tools().call(env, "c", tool, json.dumps({"symbol": symbol, **more}))
    return out.ok, json.loads(out.content) if out.ok else out.error


def test_tools_read_a_venue_qualified_symbol_beside_the_runs_own(store, tmp_path: Path) -> None:
    bybit = load_csv_candles(bybit_csv(tmp_path), "1m", lambda _: None)
    upsert_candles(store, "BTCUSDT", "1m", bybit, exchange="bybit")
    venues = other_venues(store, ["BTCUSDT"])
    assert list(venues) == ["bybit:BTCUSDT"]
    env = _env({"BTCUSDT": load_sample("BTCUSDT"), **venues})
    ok, theirs = _call(env, "get_candles", "bybit:BTCUSDT", interval="1m")
    assert ok, theirs
    assert theirs["rows"][-1][4] == float(bybit["close"].iloc[-1])  # Bybit's last 2022 close
    ok, ours = _call(env, "get_candles", "BTCUSDT", interval="1m")
    assert ok and ours["rows"][-1][4] == float(load_sample("BTCUSDT")["close"].iloc[-1])
    assert (
        _call(env, "get_candles", "binance:btcusdt", interval="1m")[1] == ours
    )  # the run's own venue
    ok, snap = _call(env, "get_market_snapshot", "bybit:BTCUSDT")
    assert ok and snap["symbol"] == "bybit:BTCUSDT"
    ok, error = _call(env, "get_candles", "kraken:BTCUSDT")
    assert not ok and "unknown symbol 'kraken:BTCUSDT'" in error
    ok, error = _call(env, "compute_indicators", "bybit:BTCUSDT")
    assert not ok and "is on bybit: this session trades BTCUSDT on binance" in error
