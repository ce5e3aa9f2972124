"""TimescaleDB in the store: which backend it says it runs on, candles as hypertables, and SQL
resampling that gives the Python path's bars to the last bit, on the bundled real bars."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from market.resample import RESAMPLED, resample_closed
from market.sample import SAMPLE_SYMBOLS, load_sample
from store import Store
from store.candles import upsert_candles
from store.hypertables import hypertables
from store.resample import resample_stored
from tests.conftest import BACKENDS, backend_store

OHLCV = ["open_time", "open", "high", "low", "close", "volume", "close_time"]
LABELS = {
    "sqlite": r"sqlite",
    "postgresql": r"postgresql 1\d\.\d+",
    "timescaledb": r"postgresql 1\d\.\d+ \+ timescaledb \d+\.\d+\.\d+ \((apache|timescale)\)",
}


def _backend(store: Store) -> str:
    if store.backend.timescaledb:
        return "timescaledb"
    return store.dialect


@pytest.fixture(scope="module", params=BACKENDS)
def sampled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """The bundled bars stored once per backend and module: the tests that take it only read."""
    for store in backend_store(request.param, tmp_path_factory.mktemp(request.param)):
        for symbol in SAMPLE_SYMBOLS:
            upsert_candles(store, symbol, "1m", load_sample(symbol))
        yield store


def test_store_says_which_backend_it_runs_on(store: Store, request: pytest.FixtureRequest):
    backend = request.node.callspec.params["store"]
    assert re.fullmatch(LABELS[backend], store.backend.label)


def test_candles_and_equity_are_hypertables_only_on_timescaledb(store: Store):
    expected = ["candles", "equity_points"] if _backend(store) == "timescaledb" else []
    assert hypertables(store.engine, store.backend) == expected


@pytest.mark.slow
@pytest.mark.parametrize("interval", RESAMPLED)
def test_resampling_matches_the_python_path_on_real_bars(sampled: Store, interval: str):
    for symbol in SAMPLE_SYMBOLS:
        minutes = load_sample(symbol)[OHLCV]
        got = resample_stored(sampled, symbol, interval)
        pd.testing.assert_frame_equal(got, resample_closed(minutes, interval), check_exact=True)
        assert len(got) > 0


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(
    interval=st.sampled_from(RESAMPLED),
    first=st.integers(0, 4319),
    length=st.integers(1, 4320),
)
def test_any_window_of_real_bars_resamples_alike(
    sampled: Store, interval: str, first: int, length: int
):
    """A window that starts or ends inside a bucket drops that bucket on both paths."""
    minutes = load_sample("BTCUSDT")[OHLCV].iloc[first : first + length]
    start, end = int(minutes["open_time"].iloc[0]), int(minutes["open_time"].iloc[-1])
    got = resample_stored(sampled, "BTCUSDT", interval, start, end)
    expected = resample_closed(minutes.reset_index(drop=True), interval)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


@pytest.mark.slow
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keep=st.lists(st.booleans(), min_size=240, max_size=240),
    seed=st.integers(0, 2**32 - 1),
    interval=st.sampled_from(["5m", "15m", "1h"]),
)
def test_gaps_and_any_volumes_resample_alike(
    store: Store, keep: list[bool], seed: int, interval: str
):
    """Missing minutes and volumes whose sum depends on the order of addition."""
    rng = np.random.default_rng(seed)
    real = load_sample("ETHUSDT").iloc[:240].copy()
    real["volume"] = rng.lognormal(0, 3, len(real))
    minutes = real[np.array(keep)].reset_index(drop=True)
    if minutes.empty:
        return
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM candles"))
    upsert_candles(store, "ETHUSDT", "1m", minutes)
    got = resample_stored(store, "ETHUSDT", interval)
    pd.testing.assert_frame_equal(got, resample_closed(minutes[OHLCV], interval), check_exact=True)


def test_volume_is_summed_in_time_order():
    """The Python path adds volumes one by one in time order, as SQL's ordered sum does, not
    with pandas' compensated sum, so the two agree to the last bit."""
    minutes = load_sample("BTCUSDT")[OHLCV]
    bars = resample_closed(minutes, "1h")
    buckets = minutes["open_time"] // 3_600_000 * 3_600_000
    for open_time, volume in zip(bars["open_time"], bars["volume"], strict=True):
        total = 0.0
        for v in minutes["volume"][buckets == open_time]:
            total += v
        assert volume == total
