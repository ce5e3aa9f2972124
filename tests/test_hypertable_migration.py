"""Upgrading a PostgreSQL store that holds plain tables to hypertables loses no row, even when
the upgrade is killed half way (-9) and the store is opened again."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from conftest import database_url, schema_url
from sqlalchemy import create_engine, text

from market.sample import SAMPLE_SYMBOLS, load_sample
from store import open_store
from store.backend import detect_backend
from store.candles import upsert_candles
from store.hypertables import hypertables
from store.tables import EquityPointRow

# Order-independent fingerprints of every row (count, and an md5 over the rows in key order).
FINGERPRINT = {
    "candles": "SELECT count(*), md5(string_agg(c::text, '|' ORDER BY exchange, symbol, "
    "interval, open_time)) FROM candles c",
    "equity_points": "SELECT count(*), md5(string_agg(e::text, '|' ORDER BY account, time_ms)) "
    "FROM equity_points e",
}


@pytest.fixture
def plain_url() -> Iterator[str]:
    """A schema on the TimescaleDB server holding plain tables with real bars and equity."""
    for url in schema_url(database_url("timescaledb")):
        store = open_store(url, "off")
        for symbol in SAMPLE_SYMBOLS:
            upsert_candles(store, symbol, "1m", load_sample(symbol))
        points = [
            {"account": "paper", "time_ms": 1_761_696_000_000 + i * 60_000, "equity": 1e4 + i}
            for i in range(3000)
        ]
        with store.engine.begin() as conn:
            conn.execute(EquityPointRow.__table__.insert(), [p | {"cash": 5e3} for p in points])
        store.close()
        yield url


def _fingerprints(url: str) -> dict[str, tuple]:
    engine = create_engine(url)
    with engine.connect() as conn:
        prints = {table: tuple(conn.execute(text(sql)).one()) for table, sql in FINGERPRINT.items()}
    engine.dispose()
    return prints


@pytest.mark.slow
def test_plain_tables_become_hypertables_with_every_row(plain_url: str):
    before = _fingerprints(plain_url)
    store = open_store(plain_url, "require")
    assert hypertables(store.engine, store.backend) == ["candles", "equity_points"]
    store.close()
    assert _fingerprints(plain_url) == before
    assert before["candles"][0] == 2 * 4320
    again = open_store(plain_url, "require")  # idempotent: nothing left to convert
    assert hypertables(again.engine, again.backend) == ["candles", "equity_points"]
    again.close()
    assert _fingerprints(plain_url) == before


@pytest.mark.slow
def test_an_upgrade_killed_half_way_finishes_on_the_next_open(plain_url: str):
    """equity_points is locked, so the upgrade converts candles and then waits on it; kill -9
    then leaves one table converted and one plain, and the next open converts the rest."""
    before = _fingerprints(plain_url)
    holder = create_engine(plain_url)
    conn = holder.connect()
    conn.execute(text("LOCK TABLE equity_points IN ACCESS EXCLUSIVE MODE"))
    upgrade = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from store import open_store; open_store({plain_url!r}, 'require')",
        ]
    )
    try:
        converted: list[str] = []
        for _ in range(600):  # waits for the upgrade to reach the lock; not a timing assertion
            converted = _hypertables(plain_url)
            if converted or upgrade.poll() is not None:
                break
            time.sleep(0.1)
        assert converted == ["candles"]
        upgrade.kill()
        upgrade.wait()
    finally:
        conn.rollback()
        conn.close()
        holder.dispose()
    store = open_store(plain_url, "require")
    assert hypertables(store.engine, store.backend) == ["candles", "equity_points"]
    store.close()
    assert _fingerprints(plain_url) == before


def _hypertables(url: str) -> list[str]:
    """The hypertables as the database lists them, without opening (and so upgrading) it."""
    engine = create_engine(url)
    found = hypertables(engine, detect_backend(engine, "require"))
    engine.dispose()
    return found
