"""The candle store on real databases: round trip, idempotent upserts, schema upgrades."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, inspect

from market.sample import load_sample
from store import Store, open_store
from store.candles import count_candles, load_candles, summarize, upsert_candles
from store.migrations import MIGRATIONS, Migration


def test_round_trip_returns_exactly_what_was_stored(store: Store) -> None:
    bars = load_sample("BTCUSDT")
    assert upsert_candles(store, "BTCUSDT", "1m", bars) == 4320
    loaded = load_candles(store, "BTCUSDT", "1m")
    pd.testing.assert_frame_equal(loaded, bars.reset_index(drop=True))


def test_reimporting_the_same_bars_adds_no_rows(store: Store) -> None:
    bars = load_sample("ETHUSDT")
    upsert_candles(store, "ETHUSDT", "1m", bars)
    assert upsert_candles(store, "ETHUSDT", "1m", bars) == 0
    assert upsert_candles(store, "ETHUSDT", "1m", bars.iloc[100:200]) == 0
    assert count_candles(store, "ETHUSDT", "1m") == 4320


def test_overlapping_import_adds_only_the_new_bars(store: Store) -> None:
    bars = load_sample("BTCUSDT")
    upsert_candles(store, "BTCUSDT", "1m", bars.iloc[:3000])
    assert upsert_candles(store, "BTCUSDT", "1m", bars.iloc[2000:]) == 1320


def test_range_query_is_inclusive_and_ordered(store: Store) -> None:
    bars = load_sample("BTCUSDT")
    upsert_candles(store, "BTCUSDT", "1m", bars.iloc[::-1])
    start, end = int(bars.open_time[60]), int(bars.open_time[119])
    window = load_candles(store, "BTCUSDT", "1m", start, end)
    assert len(window) == 60
    assert window.open_time.is_monotonic_increasing
    assert window.close.iloc[0] == bars.close[60]


def test_summary_counts_missing_bars(store: Store) -> None:
    bars = load_sample("BTCUSDT").drop(index=range(1000, 1010))
    upsert_candles(store, "BTCUSDT", "1m", bars)
    upsert_candles(store, "ETHUSDT", "1m", load_sample("ETHUSDT"))
    by_symbol = {s.symbol: s for s in summarize(store)}
    assert by_symbol["BTCUSDT"].rows == 4310
    assert by_symbol["BTCUSDT"].missing_bars == 10
    assert by_symbol["ETHUSDT"].missing_bars == 0


def test_schema_upgrade_keeps_existing_rows(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = open_store(url)
    upsert_candles(store, "BTCUSDT", "1m", load_sample("BTCUSDT"))
    assert store.schema_version() == len(MIGRATIONS)
    store.close()

    metadata = MetaData()
    notes = Table(
        "notes", metadata, Column("id", Integer, primary_key=True), Column("text", String)
    )
    later = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "notes", lambda c: notes.create(c)))
    reopened = open_store(url)
    assert reopened.migrate(later) == len(MIGRATIONS) + 1
    assert inspect(reopened.engine).has_table("notes")
    assert count_candles(reopened, "BTCUSDT", "1m") == 4320
    assert reopened.migrate(later) == len(MIGRATIONS) + 1
    reopened.close()


def test_sqlite_store_uses_wal(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'wal.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()


def test_bad_database_url_is_a_user_error() -> None:
    from core.errors import UserError

    with pytest.raises(UserError, match="invalid DATABASE_URL"):
        open_store("not a url")
