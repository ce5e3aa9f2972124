"""A US stock's bars are kept under alpaca, the stock venue, however they came (an import or a
download), and a store made before, that kept imported ones under binance, has them moved
there when it is opened (migration 12)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select, text
from test_stock_store import _backtest, _file

from market.corporate import read_actions
from market.sample import load_sample
from market.source import load_csv_candles
from store import Store, bar_cache, open_store
from store.candles import load_candles, summarize, upsert_candles
from store.corporate import save_actions
from store.migrations import MIGRATIONS
from store.tables import CandleSeriesRow


@pytest.mark.slow
def test_an_imported_stock_is_listed_and_verified_under_alpaca(cli, tmp_path: Path) -> None:
    data = tmp_path / "xyz.csv"
    _file(data)
    imported = cli("agent-data", "import", str(data), "--symbol", "XYZ", "--interval", "1d")
    assert imported.returncode == 0, imported.stderr
    listed = cli("agent-data", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "XYZ" in line]
    assert len(rows) == 1 and re.search(r"alpaca\s*│\s*XYZ\s*│\s*1d\s*│", rows[0]), rows
    verified = cli("agent-data", "verify", "--symbol", "xyz", "--exchange", "alpaca")
    assert (verified.returncode, verified.stdout) == (0, "XYZ 1d: 80 bars, ok\n"), verified
    short = tmp_path / "abc.csv"
    pd.read_csv(data).drop(index=10).to_csv(short, index=False)  # one session's bar lost
    assert (
        cli("agent-data", "import", str(short), "--symbol", "ABC", "--interval", "1d").returncode
        == 0
    )
    lacking = cli("agent-data", "verify", "--symbol", "ABC")
    assert lacking.returncode == 1, lacking
    assert lacking.stdout == "ABC 1d: 79 bars, 1 bars missing in regular hours\n"
    on_binance = cli("agent-data", "verify", "--symbol", "XYZ", "--exchange", "binance")
    assert on_binance.returncode == 2
    assert "no stored candles for binance XYZ" in on_binance.stderr
    refused = cli("agent-data", "import", str(data), "--symbol", "XYZ", "--interval", "1d",
                  "--exchange", "binance")  # fmt: skip
    assert refused.returncode == 2
    assert "XYZ is a US stock; the binance venue trades" in refused.stderr


def _tokens(store: Store) -> dict[tuple[str, str, str], int]:
    table = CandleSeriesRow.__table__
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(table.c.exchange, table.c.symbol, table.c.interval, table.c.write_token)
        )
        return {(e, s, i): token for e, s, i, token in rows}


def _cached(store: Store) -> int:
    """How many series folders the SQLite store's columnar cache holds (none elsewhere)."""
    root = bar_cache.cache_root(store.engine)
    return 0 if root is None else len(list(root.iterdir()))


def _before_the_move(store: Store) -> None:
    """The store as the version before migration 12 left it (its rows are kept)."""
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM schema_version WHERE version >= 12"))


def test_migration_12_moves_imported_stock_bars_from_binance_to_alpaca(store: Store) -> None:
    stock = load_sample("ETHUSDT").iloc[:300]
    coin = load_sample("BTCUSDT").iloc[:200]
    downloaded = stock.iloc[250:].assign(close=stock["close"].iloc[250:] + 1.0)
    upsert_candles(store, "XYZ", "1m", stock)  # where `agent-data import` kept a stock's bars
    upsert_candles(store, "BTCUSDT", "1m", coin)
    upsert_candles(store, "XYZ", "1m", downloaded, exchange="alpaca")
    load_candles(store, "XYZ", "1m")  # each series' columnar cache, on SQLite
    load_candles(store, "XYZ", "1m", exchange="alpaca")
    before = _tokens(store)
    cached = _cached(store)
    assert cached in (0, 2)
    _before_the_move(store)

    assert store.migrate() == len(MIGRATIONS)
    assert _cached(store) == cached // 2, "binance's cache of XYZ went with its rows"
    series = {(s.exchange, s.symbol, s.interval): s.rows for s in summarize(store)}
    assert series == {("binance", "BTCUSDT", "1m"): 200, ("alpaca", "XYZ", "1m"): 300}
    alpaca_already_held = pd.concat([stock.iloc[:250], downloaded], ignore_index=True)
    moved = load_candles(store, "XYZ", "1m", exchange="alpaca")
    pd.testing.assert_frame_equal(moved, alpaca_already_held)
    assert load_candles(store, "XYZ", "1m").empty
    pd.testing.assert_frame_equal(load_candles(store, "BTCUSDT", "1m"), coin.reset_index(drop=True))
    after = _tokens(store)
    assert set(after) == {("binance", "BTCUSDT", "1m"), ("alpaca", "XYZ", "1m")}
    assert after[("alpaca", "XYZ", "1m")] != before[("alpaca", "XYZ", "1m")]
    assert after[("binance", "BTCUSDT", "1m")] == before[("binance", "BTCUSDT", "1m")]
    assert store.migrate() == len(MIGRATIONS)
    pd.testing.assert_frame_equal(load_candles(store, "XYZ", "1m", exchange="alpaca"), moved)


@pytest.mark.slow
def test_a_store_from_before_backtests_its_imported_stock_as_the_file_does(
    cli, offline_env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "xyz.csv"
    _file(data)
    old = open_store(f"sqlite:///{Path(offline_env['AGENT_DATA_DIR']) / 'agent.db'}")
    bars = load_csv_candles(data, "1d", lambda _: None, whole=True, stock=True)
    upsert_candles(old, "XYZ", "1d", bars)  # as `agent-data import` kept it before
    save_actions(old, "XYZ", "1d", read_actions(data, "1d"))
    _before_the_move(old)
    old.close()

    listed = cli("agent-data", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "XYZ" in line]
    assert len(rows) == 1 and re.search(r"alpaca\s*│\s*XYZ\s*│\s*1d\s*│", rows[0]), rows
    stored, said = _backtest(cli, tmp_path, "stored")
    from_file, _ = _backtest(cli, tmp_path, "file", "--data", str(data))
    assert "1 split(s) and 1 dividend(s) from the store applied" in said
    assert len(stored["trades"]) >= 2
    assert stored["trades"] == from_file["trades"]
    assert stored["fills"] == from_file["fills"]
