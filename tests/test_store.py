"""The candle store on real databases: round trip, idempotent upserts, schema upgrades."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from conftest import database_url, schema_url
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, func, inspect, select
from sqlalchemy.engine import make_url

from backtest.config import BacktestConfig
from backtest.data import to_bar_arrays
from backtest.engine import run_backtest
from backtest.report import build_report
from backtest.runs import save_run
from backtest.strategies import STRATEGIES
from core.clock import FixedClock
from market.rules_cache import exchange_rules
from market.sample import load_sample, sample_rules
from market.source import CandleSource
from store import Store, open_store
from store.backend import TimescaleMode
from store.candles import count_candles, load_candles, summarize, upsert_candles
from store.db import PLAIN_SQLITE_FILE
from store.migrations import MIGRATIONS, Migration


def test_round_trip_returns_exactly_what_was_stored(store: Store) -> None:
    bars = load_sample("BTCUSDT")
    assert upsert_candles(store, "BTCUSDT", "1m", bars) == 4320
    loaded = load_candles(store, "BTCUSDT", "1m")
    pd.testing.assert_frame_equal(loaded, bars.reset_index(drop=True))


@pytest.mark.slow
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


def test_an_upgrade_cut_short_leaves_the_store_as_it_was_and_the_next_open_finishes_it(
    tmp_path,
) -> None:
    """Two pending migrations, the second failing (a disk full, a kill): the first's table
    and version are not left behind, half an upgrade no later code expects; the next open
    applies both."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    open_store(url).close()
    notes = Table("notes", MetaData(), Column("id", Integer, primary_key=True))

    def cut_short(conn: Connection) -> None:
        raise OSError("database or disk is full")

    base = len(MIGRATIONS)
    first = Migration(base + 1, "notes", lambda c: notes.create(c))
    reopened = open_store(url)
    with pytest.raises(OSError, match="disk is full"):
        reopened.migrate((*MIGRATIONS, first, Migration(base + 2, "cut short", cut_short)))
    assert reopened.schema_version() == base
    assert not inspect(reopened.engine).has_table("notes")
    finished = (*MIGRATIONS, first, Migration(base + 2, "index", lambda c: None))
    assert reopened.migrate(finished) == base + 2
    assert inspect(reopened.engine).has_table("notes")
    reopened.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_stores_opened_at_once_take_turns_at_a_migration_and_run_it_once(
    backend: str, tmp_path
) -> None:
    """A loop starting and `agent-trade status` beside it both find a migration pending: the
    one that waited must skip it, not run it again (a second insert of its version failed
    the status command; a migration that moves rows must not move them twice)."""
    if backend == "sqlite":
        _migrate_at_once(f"sqlite:///{tmp_path / 'shared.db'}", "auto")
        return
    for url in schema_url(database_url("postgresql")):
        _migrate_at_once(url, "off")


def _migrate_at_once(url: str, mode: TimescaleMode) -> None:
    first, second = open_store(url, mode), open_store(url, mode)
    notes = Table("notes", MetaData(), Column("id", Integer, primary_key=True))
    inside = threading.Event()

    def slow_insert(conn: Connection) -> None:
        notes.create(conn, checkfirst=True)
        conn.execute(notes.insert())  # run twice, it would leave two rows
        inside.set()
        time.sleep(0.5)

    later = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "notes", slow_insert))
    with ThreadPoolExecutor(2) as pool:
        ahead = pool.submit(first.migrate, later)
        assert inside.wait(10)
        behind = pool.submit(second.migrate, later)
        assert [ahead.result(), behind.result()] == [len(MIGRATIONS) + 1] * 2
    with second.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(notes)).scalar() == 1
        versions = conn.exec_driver_sql("SELECT version FROM schema_version").scalars()
        assert sorted(versions) == list(range(1, len(MIGRATIONS) + 2))
    first.close()
    second.close()


def test_sqlite_store_uses_wal(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'wal.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()


def test_bad_database_url_is_a_user_error() -> None:
    from core.errors import UserError

    with pytest.raises(UserError, match="invalid DATABASE_URL"):
        open_store("not a url")


def test_a_saved_run_is_exactly_the_row_the_schemas_own_insert_writes(store: Store) -> None:
    """save_run sends its INSERT through the driver; the same values inserted by SQLAlchemy
    through `BacktestRunRow`'s table give the same columns, types and values."""
    from sqlalchemy import select

    from store.tables import BacktestRunRow

    bars, _ = to_bar_arrays({"BTCUSDT": load_sample("BTCUSDT").iloc[:1500]})
    strategy = STRATEGIES["sma_cross"](STRATEGIES["sma_cross"].Params())
    report = build_report(run_backtest(bars, strategy, sample_rules(), BacktestConfig()))
    saved = save_run(store, report, created_ms=1_700_000_000_000)
    table = BacktestRunRow.__table__
    with store.engine.begin() as conn:
        (values,) = conn.execute(select(table).where(table.c.id == saved)).mappings().all()
        again = conn.execute(
            table.insert().values({k: v for k, v in values.items() if k != "id"})
        ).inserted_primary_key[0]
    with store.driver() as conn:  # the driver's own values and types, no SQLAlchemy processing
        cursor = conn.cursor()
        typed = "typeof({})" if store.dialect == "sqlite" else "pg_typeof({})::text"
        columns = [c.name for c in table.columns if c.name != "id"]
        listed = ", ".join([*columns, *(typed.format(c) for c in columns)])
        rows = []
        for run_id in (saved, again):
            mark = "?" if store.dialect == "sqlite" else "%s"
            cursor.execute(f"SELECT {listed} FROM backtest_runs WHERE id = {mark}", [run_id])
            rows.append(cursor.fetchone())
    assert rows[0] == rows[1]
    assert rows[0][: len(columns)] == tuple(values[c] for c in columns)
    assert values["strategy"] == "sma_cross" and values["created_ms"] == 1_700_000_000_000


def test_the_drivers_sqlite_connection_has_the_engines_settings(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'same.db'}")
    pragmas = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "cache_size")
    with store.driver() as conn:
        driver = [conn.execute(f"PRAGMA {p}").fetchone()[0] for p in pragmas]
    with store.engine.connect() as conn:
        engine = [conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in pragmas]
    store.close()
    assert driver == engine == ["wal", 1, 1, 5000, -65536]


def test_plain_reads_see_each_commit_write_nothing_and_survive_a_fork(tmp_path) -> None:
    """A loop reads the record at every bar through Store.rows, on one kept connection: it sees
    what another connection commits, cannot write, and a forked child reads on its own."""
    path = tmp_path / "reads.db"
    store, other = open_store(f"sqlite:///{path}"), open_store(f"sqlite:///{path}")
    count = "SELECT COUNT(*) FROM candles WHERE symbol = ?"
    assert store.rows(count, ("BTCUSDT",)) == [(0,)]
    upsert_candles(other, "BTCUSDT", "1m", load_sample("BTCUSDT").iloc[:5])
    assert store.rows(count, ("BTCUSDT",)) == [(5,)]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.rows("DELETE FROM candles")
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's verdict is its exit status
        os._exit(0 if store.rows(count, ("BTCUSDT",)) == [(5,)] else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.rows(count, ("BTCUSDT",)) == [(5,)]
    store.close()
    other.close()


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40))
@settings(max_examples=300, deadline=None)
def test_a_sqlite_file_url_opened_without_sqlalchemy_names_the_same_file(path: str) -> None:
    """Where the store reads the path itself, SQLAlchemy's parser reads the same one."""
    url = f"sqlite:///{path}"
    plain = PLAIN_SQLITE_FILE.fullmatch(url)
    if plain:
        parsed = make_url(url)
        assert parsed.drivername == "sqlite" and parsed.database == plain.group(1)


def _offline_bars(store: Store, now_ms: int) -> pd.DataFrame:
    source = CandleSource(store, FixedClock(now_ms), lambda _: None)
    return source.get("BTCUSDT", "1m", days=1)


def _stored_rows(path) -> dict[str, list[tuple]]:
    """Every table's rows but the write token, which is random per write."""
    with sqlite3.connect(path) as conn:
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {n: conn.execute(f"SELECT * FROM {n} ORDER BY 1").fetchall() for n in names}
    rows.pop("candle_series")
    rows["schema_version"] = [r[:2] for r in rows["schema_version"]]  # not when it was applied
    return rows


def test_a_deferred_new_store_gives_the_same_bars_and_ends_the_same(tmp_path) -> None:
    """agent-backtest's new store is made after its bars are read from the sample: the bars,
    the tables and the bars stored are those of a store made first."""
    now = int(load_sample("BTCUSDT")["close_time"].iloc[-1]) + 1
    made = open_store(f"sqlite:///{tmp_path / 'made.db'}")
    expected = _offline_bars(made, now)
    made.close()

    deferred = open_store(f"sqlite:///{tmp_path / 'deferred.db'}", defer=True)
    assert deferred.deferred
    bars = _offline_bars(deferred, now)
    assert deferred.deferred  # nothing was read or written for them
    pd.testing.assert_frame_equal(bars, expected, check_exact=True)
    assert exchange_rules(deferred, "binance", ["BTCUSDT"], now, None, lambda _: None) == {
        "BTCUSDT": sample_rules()["BTCUSDT"]
    }
    deferred.close()  # a run that never used its store still leaves it made and filled
    assert _stored_rows(tmp_path / "deferred.db") == _stored_rows(tmp_path / "made.db")
    assert (tmp_path / "deferred.db.bars").is_dir()  # the next run reads the columnar cache


def test_the_first_use_of_a_deferred_store_makes_it_then_runs_the_queued_writes(
    tmp_path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'new.db'}", defer=True)
    store.later(lambda: upsert_candles(store, "ETHUSDT", "1m", load_sample("ETHUSDT")))
    assert count_candles(store, "ETHUSDT", "1m") == 4320
    assert not store.deferred and store.schema_version() == len(MIGRATIONS)
    store.later(lambda: upsert_candles(store, "BTCUSDT", "1m", load_sample("BTCUSDT")))
    assert count_candles(store, "BTCUSDT", "1m") == 4320  # a made store writes at once
    store.close()

    reopened = open_store(f"sqlite:///{tmp_path / 'new.db'}", defer=True)
    assert not reopened.deferred  # only a new file waits
    assert count_candles(reopened, "ETHUSDT", "1m") == 4320
    reopened.close()


def test_a_deferred_store_that_cannot_be_made_is_a_user_error(tmp_path) -> None:
    from core.errors import UserError

    path = tmp_path / "agent.db"
    store = open_store(f"sqlite:///{path}", defer=True)
    path.write_bytes(b"not a database, written after it was opened\n" * 100)
    with pytest.raises(UserError, match="cannot open database"):
        store.settle()
