"""Indicators and the LLM market snapshot, checked on the real bundled Binance sample."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from ta.volatility import AverageTrueRange

from market.indicators import IndicatorConfig, compute_indicators
from market.sample import load_sample
from market.snapshot import build_snapshot

SYMBOLS = ("BTCUSDT", "ETHUSDT")


@pytest.fixture(scope="module", params=SYMBOLS)
def symbol(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def candles(symbol: str) -> pd.DataFrame:
    return load_sample(symbol)


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    return load_sample("BTCUSDT")


@pytest.fixture(scope="module")
def btc_indicators(btc: pd.DataFrame) -> pd.DataFrame:
    return compute_indicators(btc)


def _warmup(cfg: IndicatorConfig) -> dict[str, int]:
    """Rows that must be NaN: a window of n bars first fills at row n - 1."""
    signal = cfg.macd_slow + cfg.macd_signal - 2
    return {
        f"sma_{cfg.sma_fast}": cfg.sma_fast - 1,
        f"sma_{cfg.sma_slow}": cfg.sma_slow - 1,
        f"ema_{cfg.ema_fast}": cfg.ema_fast - 1,
        f"ema_{cfg.ema_slow}": cfg.ema_slow - 1,
        # ta counts the first bar's unknown change as 0, so RSI fills one bar early.
        f"rsi_{cfg.rsi}": cfg.rsi - 1,
        "macd": cfg.macd_slow - 1,
        "macd_signal": signal,
        "macd_hist": signal,
        "bb_upper": cfg.bb_window - 1,
        "bb_middle": cfg.bb_window - 1,
        "bb_lower": cfg.bb_window - 1,
        "bb_pct": cfg.bb_window - 1,
        f"atr_{cfg.atr}": cfg.atr - 1,
        "vwap": cfg.vwap_window - 1,
        "volume_z": cfg.volume_z_window - 1,
    }


@pytest.mark.parametrize(
    "cfg",
    [IndicatorConfig(), IndicatorConfig(sma_fast=7, sma_slow=99, rsi=6, atr=30, vwap_window=60)],
)
def test_columns_are_float64_aligned_and_nan_only_during_warmup(
    candles: pd.DataFrame, cfg: IndicatorConfig
) -> None:
    out = compute_indicators(candles, cfg)
    assert list(out.columns) == list(_warmup(cfg))
    assert out.index.equals(candles.index)
    assert (out.dtypes == np.float64).all()
    for column, warmup in _warmup(cfg).items():
        nan = out[column].isna().to_numpy()
        assert nan[:warmup].all(), f"{column} has values before its warm-up ends"
        assert not nan[warmup:].any(), f"{column} has NaN after warm-up (row {warmup})"


def test_value_ranges_users_rely_on(candles: pd.DataFrame) -> None:
    out = compute_indicators(candles).dropna()
    assert out["rsi_14"].between(0, 100).all()
    assert (out["bb_lower"] <= out["bb_middle"]).all()
    assert (out["bb_middle"] <= out["bb_upper"]).all()
    assert (out["atr_14"] > 0).all()
    assert out["vwap"].between(candles["low"].min(), candles["high"].max()).all()


def test_sma_vwap_and_volume_z_match_hand_arithmetic(
    btc: pd.DataFrame, btc_indicators: pd.DataFrame
) -> None:
    close, volume = btc["close"], btc["volume"]
    typical = (btc["high"] + btc["low"] + btc["close"]) / 3
    for row in (19, 49, 1000, 2500, len(btc) - 1):
        assert btc_indicators["sma_20"].iloc[row] == pytest.approx(
            close.iloc[row - 19 : row + 1].mean(), rel=1e-12
        )
        if row >= 49:
            assert btc_indicators["sma_50"].iloc[row] == pytest.approx(
                close.iloc[row - 49 : row + 1].mean(), rel=1e-12
            )
        window = slice(row - 19, row + 1)
        vwap = (typical.iloc[window] * volume.iloc[window]).sum() / volume.iloc[window].sum()
        assert btc_indicators["vwap"].iloc[row] == pytest.approx(vwap, rel=1e-12)
        recent = volume.iloc[window]
        z = (volume.iloc[row] - recent.mean()) / recent.std(ddof=0)
        assert btc_indicators["volume_z"].iloc[row] == pytest.approx(z, rel=1e-9)


def test_atr_equals_ta_reference(btc: pd.DataFrame, btc_indicators: pd.DataFrame) -> None:
    reference = AverageTrueRange(btc["high"], btc["low"], btc["close"], window=14)
    expected = reference.average_true_range().to_numpy()[13:]
    np.testing.assert_allclose(btc_indicators["atr_14"].to_numpy()[13:], expected, rtol=1e-12)


def test_no_look_ahead_on_truncated_prefixes(candles: pd.DataFrame) -> None:
    full = compute_indicators(candles)
    for cut in (1, 10, 33, 34, 60, 500, 2017, len(candles) - 1):
        prefix = compute_indicators(candles.iloc[:cut])
        pd.testing.assert_frame_equal(prefix, full.iloc[:cut], check_exact=True, obj=f"cut {cut}")


def test_any_index_is_kept_row_for_row(btc: pd.DataFrame, btc_indicators: pd.DataFrame) -> None:
    by_time = btc.set_index(pd.to_datetime(btc["open_time"], unit="ms", utc=True))
    out = compute_indicators(by_time)
    assert out.index.equals(by_time.index)
    np.testing.assert_array_equal(out.to_numpy(), btc_indicators.to_numpy())


def test_missing_columns_are_named(btc: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="volume"):
        compute_indicators(btc.drop(columns="volume"))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"macd_fast": 26}, "macd_slow"),
        ({"macd_fast": 30, "macd_slow": 26}, "macd_fast"),
        ({"sma_fast": 50}, "sma_slow"),
        ({"rsi": 0}, "rsi"),
        ({"atr": -3}, "atr"),
        ({"bb_std": 0}, "bb_std"),
        ({"volume_z_window": 1}, "volume_z_window"),
        ({"rsi_window": 14}, "rsi_window"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        IndicatorConfig(**kwargs)


def test_snapshot_fits_a_prompt_and_reports_the_last_close(
    symbol: str, candles: pd.DataFrame
) -> None:
    for rows in (2, 100, len(candles)):
        view = candles.iloc[:rows]
        snapshot = build_snapshot(symbol, "1m", view)
        text = snapshot.model_dump_json()
        assert len(text) < 1_600, f"{len(text)} chars ≈ {len(text) // 4} tokens"
        assert snapshot.last_price == view["close"].iloc[-1]
        assert snapshot.symbol == symbol and snapshot.interval == "1m"
    last_close = pd.Timestamp(int(candles["close_time"].iloc[-1]), unit="ms", tz="UTC")
    assert pd.Timestamp(snapshot.as_of) == last_close
    assert snapshot.as_of.endswith("Z")


def test_snapshot_returns_and_volatility_by_hand(btc: pd.DataFrame) -> None:
    close = btc["close"].to_numpy()
    snapshot = build_snapshot("BTCUSDT", "1m", btc)
    for label, bars in {"15m": 15, "1h": 60, "4h": 240, "24h": 1440}.items():
        expected = (close[-1] / close[-1 - bars] - 1) * 100
        assert snapshot.returns_pct[label] == pytest.approx(expected, abs=5e-4), label
    log_returns = np.diff(np.log(close[-1441:]))
    expected_vol = math.sqrt(np.mean(log_returns**2) * 365 * 1440) * 100
    assert snapshot.realized_vol_pct == pytest.approx(expected_vol, abs=5e-3)


def test_snapshot_returns_are_none_without_enough_history(btc: pd.DataFrame) -> None:
    returns = build_snapshot("BTCUSDT", "1m", btc.iloc[:60]).returns_pct
    assert returns["15m"] is not None
    assert returns["1h"] is None and returns["4h"] is None and returns["24h"] is None
    assert build_snapshot("BTCUSDT", "1m", btc.iloc[:61]).returns_pct["1h"] is not None


def test_snapshot_on_hourly_bars_skips_horizons_shorter_than_a_bar(btc: pd.DataFrame) -> None:
    hourly = (
        btc.groupby(btc["open_time"] // 3_600_000, as_index=False)
        .agg(
            open_time=("open_time", "first"),
            open=("open", "first"),
            high=("high", "max"),
            low=("low", "min"),
            close=("close", "last"),
            volume=("volume", "sum"),
            close_time=("close_time", "last"),
        )
        .iloc[1:-1]  # drop the partial first and last hours
        .reset_index(drop=True)
    )
    snapshot = build_snapshot("BTCUSDT", "1h", hourly)
    close = hourly["close"].to_numpy()
    assert snapshot.returns_pct["15m"] is None
    assert snapshot.returns_pct["1h"] == pytest.approx((close[-1] / close[-2] - 1) * 100, abs=5e-4)
    assert snapshot.returns_pct["24h"] == pytest.approx(
        (close[-1] / close[-25] - 1) * 100, abs=5e-4
    )


def test_snapshot_flags_follow_the_indicators(
    btc: pd.DataFrame, btc_indicators: pd.DataFrame
) -> None:
    rsi = btc_indicators["rsi_14"]
    for row in (int(rsi.idxmax()), int(rsi.idxmin()), len(btc) - 1):
        view = btc.iloc[: row + 1]
        snapshot = build_snapshot("BTCUSDT", "1m", view, indicators=btc_indicators.iloc[: row + 1])
        assert snapshot == build_snapshot("BTCUSDT", "1m", view)
        latest = btc_indicators.iloc[row]
        assert snapshot.trend.rsi_overbought == (latest["rsi_14"] > 70)
        assert snapshot.trend.rsi_oversold == (latest["rsi_14"] < 30)
        assert snapshot.trend.price_above_sma_slow == (btc["close"].iloc[row] > latest["sma_50"])
        assert snapshot.trend.sma_fast_above_slow == (latest["sma_20"] > latest["sma_50"])
        assert snapshot.trend.macd_above_signal == (latest["macd"] > latest["macd_signal"])
        assert snapshot.indicators["rsi_14"] == pytest.approx(latest["rsi_14"], abs=0.05)
    assert build_snapshot("BTCUSDT", "1m", btc.iloc[: int(rsi.idxmax()) + 1]).trend.rsi_overbought
    assert build_snapshot("BTCUSDT", "1m", btc.iloc[: int(rsi.idxmin()) + 1]).trend.rsi_oversold


def test_snapshot_refuses_what_it_cannot_summarise(
    btc: pd.DataFrame, btc_indicators: pd.DataFrame
) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        build_snapshot("BTCUSDT", "1m", btc.iloc[:1])
    with pytest.raises(ValueError, match="aligned"):
        build_snapshot("BTCUSDT", "1m", btc.iloc[:100], indicators=btc_indicators.iloc[:99])
    with pytest.raises(ValueError, match="sma_7"):
        build_snapshot("BTCUSDT", "1m", btc, btc_indicators, IndicatorConfig(sma_fast=7))
