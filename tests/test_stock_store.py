"""A stock file imported into the store keeps its splits and dividends beside the raw bars, so a
backtest on the store trades and pays exactly as the same backtest on the file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_corporate_actions import _yahoo

from market.models import CANDLE_COLUMNS

N, SPLIT, DIVIDEND = 80, 40, 60


def _file(path: Path) -> None:
    """rsi_reversion's kind of swings, a 2:1 split at bar 40 and a $0.25 dividend at bar 60."""
    continuous = 100 + 8 * np.sin(np.arange(N) / 2.5)
    raw = np.where(np.arange(N) >= SPLIT, continuous / 2, continuous)
    splits = np.zeros(N)
    splits[SPLIT] = 2.0
    _yahoo(path, raw, splits)
    frame = pd.read_csv(path)
    frame.loc[DIVIDEND, "Dividends"] = 0.25
    frame.to_csv(path, index=False)


def _backtest(cli, tmp_path: Path, name: str, *source: str) -> tuple[dict, str]:
    out = tmp_path / f"{name}.json"
    result = cli("agent-backtest", "--strategy", "rsi_reversion", "--period", "3",
                 "--symbol", "XYZ", *source, "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text()), result.stderr


@pytest.mark.slow
def test_a_store_backed_backtest_adjusts_exactly_as_the_file_backed_one(cli, tmp_path) -> None:
    data = tmp_path / "xyz.csv"
    _file(data)
    imported = cli("agent-data", "import", str(data), "--symbol", "XYZ", "--interval", "1d")
    assert imported.returncode == 0, imported.stderr
    assert "kept 1 split(s) and 1 dividend(s) beside the raw bars" in imported.stderr
    stored, said = _backtest(cli, tmp_path, "stored")
    from_file, _ = _backtest(cli, tmp_path, "file", "--data", str(data))
    assert "1 split(s) and 1 dividend(s) from the store applied" in said
    assert len(stored["trades"]) >= 2
    assert stored["fills"] == from_file["fills"]
    assert stored["trades"] == from_file["trades"]
    assert stored["config"]["corporate_actions"] == from_file["config"]["corporate_actions"]
    assert stored["metrics"]["Equity Final [$]"] == from_file["metrics"]["Equity Final [$]"]


def test_a_stock_with_no_file_and_nothing_imported_exits_2_saying_how(cli) -> None:
    result = cli("agent-backtest", "--strategy", "sma_cross", "--symbol", "XYZ", "--interval", "1d")
    assert result.returncode == 2
    assert "agent-data import FILE --symbol XYZ --interval 1d" in result.stderr


@pytest.mark.slow
def test_imported_and_downloaded_bars_are_one_alpaca_series_read_with_or_without_the_flag(
    cli, tmp_path
) -> None:
    """`agent-data import` keeps a stock's bars where `agent-data download --exchange alpaca`
    does, so `agent-backtest` reads the same bars whether --exchange alpaca is named or not."""
    data = tmp_path / "xyz.csv"
    _file(data)
    imported = cli("agent-data", "import", str(data), "--symbol", "XYZ", "--interval", "1d")
    assert imported.returncode == 0, imported.stderr
    named = cli("agent-data", "import", str(data), "--symbol", "XYZ", "--interval", "1d",
                "--exchange", "alpaca")  # fmt: skip
    assert "0 new in the store" in named.stdout, "the same series: nothing to add"
    on_alpaca, said = _backtest(cli, tmp_path, "alpaca", "--exchange", "alpaca")
    unnamed, _ = _backtest(cli, tmp_path, "unnamed")
    from_file, _ = _backtest(cli, tmp_path, "file", "--data", str(data))
    assert len(on_alpaca["trades"]) >= 2 and on_alpaca["trades"] == from_file["trades"]
    assert unnamed["trades"] == on_alpaca["trades"] and unnamed["fills"] == on_alpaca["fills"]
    assert "notice: alpaca bars" not in said, "a stock's own venue needs no notice"


@pytest.mark.slow
def test_one_session_from_a_dated_and_a_tz_aware_file_is_one_bar_and_one_split(
    cli, tmp_path
) -> None:
    """A yfinance export stamps a daily bar at New York's midnight (00:00-05:00), a dated file
    at the date: both are the same session, stored once, its split applied once."""
    dated = tmp_path / "xyz.csv"
    _file(dated)
    zoned = tmp_path / "xyz-tz.csv"
    frame = pd.read_csv(dated)
    local = pd.to_datetime(frame["Date"]).dt.tz_localize("America/New_York")
    frame.assign(Date=local.map(lambda t: t.isoformat(sep=" "))).to_csv(zoned, index=False)
    assert "2024-01-02 00:00:00-05:00" in zoned.read_text()
    for path in (dated, zoned):
        imported = cli("agent-data", "import", str(path), "--symbol", "XYZ", "--interval", "1d")
        assert imported.returncode == 0, imported.stderr
    assert "0 new in the store" in imported.stdout
    listed = cli("agent-data", "list")
    assert re.search(rf"XYZ\s*│\s*1d\s*│\s*2024-01-02[^│]*│[^│]*│\s*{N}\s*│", listed.stdout)
    stored, said = _backtest(cli, tmp_path, "stored")
    from_file, _ = _backtest(cli, tmp_path, "file", "--data", str(dated))
    assert "1 split(s) and 1 dividend(s) from the store applied" in said
    assert stored["trades"] == from_file["trades"] and stored["fills"] == from_file["fills"]


def test_verify_names_a_session_an_older_store_holds_twice(cli, tmp_path) -> None:
    """A store written before daily bars were dated may hold one session at midnight UTC and
    again at New York's midnight: verify says so instead of `ok`."""
    from store.candles import upsert_candles
    from store.db import open_store

    days = pd.date_range("2024-01-02", periods=3, freq="B", tz="UTC")
    midnight = days.as_unit("ms").asi8
    bars = pd.DataFrame({"open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 100.0,
                         "quote_volume": 0.0, "trades": 0, "taker_buy_volume": 0.0,
                         "taker_buy_quote_volume": 0.0}, index=range(3))  # fmt: skip
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = open_store(url)
    for opens in (midnight, midnight + 5 * 3_600_000):
        frame = bars.assign(open_time=opens, close_time=opens + 86_399_999)
        upsert_candles(store, "XYZ", "1d", frame[list(CANDLE_COLUMNS)], exchange="alpaca")
    store.close()
    result = cli("agent-data", "verify", "--symbol", "XYZ", env={"DATABASE_URL": url})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "XYZ 1d: 6 bars, 3 duplicate bars, first at 2024-01-02 00:00" in result.stdout


@pytest.mark.slow
def test_list_counts_a_stocks_missing_sessions_as_verify_does(cli, tmp_path) -> None:
    """`agent-data list` counted a stock's weekends and holidays as missing bars while
    `verify` said ok: both now count the one session the file lacks."""
    data = tmp_path / "xyz.csv"
    _file(data)
    rows = data.read_text().splitlines()
    assert rows.pop(12).startswith("2024-01-18")  # a Thursday
    data.write_text("\n".join(rows) + "\n")
    imported = cli("agent-data", "import", str(data), "--symbol", "XYZ", "--interval", "1d")
    assert imported.returncode == 0, imported.stderr
    listed = cli("agent-data", "list")
    assert re.search(rf"XYZ\s*│\s*1d\s*│[^│]*│[^│]*│\s*{N - 1}\s*│\s*1\s*│", listed.stdout)
    verified = cli("agent-data", "verify", "--symbol", "XYZ")
    assert f"XYZ 1d: {N - 1} bars, 1 bars missing in regular hours" in verified.stdout
