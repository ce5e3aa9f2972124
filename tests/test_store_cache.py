"""The SQLite store's columnar cache (store/bar_cache.py) serves a series' bars fast, yet always
the bars the database holds now: after an import adds bars, after the database is made anew
with other bars at the same path, and after a writer that knows nothing of the cache."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from market.sample import load_sample
from store import open_store
from store.candles import load_candles, upsert_candles


def _import(cli, frame: pd.DataFrame, path: Path):
    frame.to_csv(path, index=False)
    return cli("agent-data", "import", str(path), "--symbol", "BTCUSDT", "--interval", "1m")


def test_an_import_after_a_cached_load_is_seen_by_the_next_load(cli, tmp_path: Path) -> None:
    bars = load_sample("BTCUSDT")
    first = _import(cli, bars.iloc[:3000], tmp_path / "a.csv")
    assert first.returncode == 0, first.stderr
    store = open_store(f"sqlite:///{tmp_path / 'data' / 'agent.db'}")
    pd.testing.assert_frame_equal(load_candles(store, "BTCUSDT", "1m"), bars.iloc[:3000])
    assert any((tmp_path / "data" / "agent.db.bars").iterdir()), "the whole series is cached"

    more = _import(cli, bars.iloc[2000:], tmp_path / "b.csv")
    assert more.returncode == 0, more.stderr
    assert "1,320 new in the store" in more.stdout
    pd.testing.assert_frame_equal(load_candles(store, "BTCUSDT", "1m"), bars)
    start, end = int(bars.open_time[2990]), int(bars.open_time[3009])
    window = load_candles(store, "BTCUSDT", "1m", start, end)
    pd.testing.assert_frame_equal(window, bars.iloc[2990:3010].reset_index(drop=True))
    store.close()


def test_a_database_made_anew_at_the_same_path_never_gets_the_old_bars(tmp_path: Path) -> None:
    """Same symbol, same span, same count, other prices: only the write token tells them apart."""
    path = tmp_path / "agent.db"
    bars = load_sample("ETHUSDT")
    store = open_store(f"sqlite:///{path}")
    upsert_candles(store, "ETHUSDT", "1m", bars)
    load_candles(store, "ETHUSDT", "1m")
    store.close()
    for leftover in tmp_path.glob("agent.db*"):
        if leftover.is_file():
            leftover.unlink()
    replaced = bars.assign(close=bars.close * 2)
    store = open_store(f"sqlite:///{path}")
    upsert_candles(store, "ETHUSDT", "1m", replaced)
    pd.testing.assert_frame_equal(load_candles(store, "ETHUSDT", "1m"), replaced)
    store.close()


def test_bars_written_past_the_cache_and_edits_to_a_loaded_frame(tmp_path: Path) -> None:
    """A writer that does not renew the token (an older version of the program) moves the
    series' last bar, so the cache is not read; a caller editing the frame it got changes
    neither the store nor the next load."""
    bars = load_sample("BTCUSDT")
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    upsert_candles(store, "BTCUSDT", "1m", bars.iloc[:-1])
    loaded = load_candles(store, "BTCUSDT", "1m")
    loaded.loc[0, "close"] = -1.0
    again = load_candles(store, "BTCUSDT", "1m")
    pd.testing.assert_frame_equal(again, bars.iloc[:-1])

    last = bars.iloc[-1]
    values = ", ".join(str(last[c]) for c in bars.columns)
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            f"INSERT INTO candles (exchange, symbol, interval, {', '.join(bars.columns)}) "
            f"VALUES ('binance', 'BTCUSDT', '1m', {values})"
        )
    pd.testing.assert_frame_equal(load_candles(store, "BTCUSDT", "1m"), bars)
    store.close()


def test_a_backtest_window_over_most_of_a_series_caches_it(tmp_path: Path) -> None:
    """A run over most of the stored bars reads them all once; a short window is read alone."""
    bars = load_sample("BTCUSDT")
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    upsert_candles(store, "BTCUSDT", "1m", bars)
    start, end = int(bars.open_time[10]), int(bars.open_time[3999])
    short = load_candles(store, "BTCUSDT", "1m", start, start + 59 * 60_000)
    pd.testing.assert_frame_equal(short, bars.iloc[10:70].reset_index(drop=True))
    assert not (tmp_path / "agent.db.bars").exists()
    most = load_candles(store, "BTCUSDT", "1m", start, end)
    pd.testing.assert_frame_equal(most, bars.iloc[10:4000].reset_index(drop=True))
    assert any((tmp_path / "agent.db.bars").iterdir())
    pd.testing.assert_frame_equal(load_candles(store, "BTCUSDT", "1m", start, end), most)
    store.close()
