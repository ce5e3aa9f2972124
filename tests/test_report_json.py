"""The report's JSON is streamed (the equity curve a chunk at a time) yet is byte for byte what
pydantic writes for the whole model, so files, hashes and stored runs never change."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
from script_strategy import NO_COSTS

from backtest.data import to_bar_arrays
from backtest.engine import run_backtest
from backtest.report import EquityOut, build_report
from backtest.strategies import STRATEGIES
from market.sample import load_sample, sample_rules


def _report():
    bars, _ = to_bar_arrays({"BTCUSDT": load_sample("BTCUSDT")})
    cls = STRATEGIES["sma_cross"]
    return build_report(run_backtest(bars, cls(cls.Params()), sample_rules(), NO_COSTS))


def test_the_drawdown_at_a_peak_is_0_never_minus_0() -> None:
    """A run's JSON drawdown read "-0.0" at every peak (negated zeros)."""
    bars, _ = to_bar_arrays({"BTCUSDT": load_sample("BTCUSDT").iloc[-1440:]})
    cls = STRATEGIES["sma_cross"]
    result = run_backtest(bars, cls(cls.Params()), sample_rules(), NO_COSTS)
    curve = json.loads(build_report(result).model_dump_json())["equity"]["drawdown_pct"]
    peaks = [x for x in curve if x == 0]
    assert peaks and all(math.copysign(1.0, x) == 1.0 for x in peaks)


def test_the_streamed_json_is_pydantics_whole_dump_and_its_hash() -> None:
    report = _report()
    text = report.to_json()
    assert text == report.model_dump_json(indent=1, exclude={"agent", "scorecard"})
    assert report.sha256() == hashlib.sha256(text.encode()).hexdigest()
    assert len(json.loads(text)["equity"]["equity"]) == report.config["bars"]


def test_a_long_curve_with_gaps_and_an_agent_section_streams_the_same() -> None:
    """Over several chunks, NaN/inf as null, an empty curve, and the optional sections."""
    n = 150_001
    equity = np.linspace(10_000.0, 12_345.678, n)
    equity[[0, 70_000, n - 1]] = [np.nan, np.inf, -np.inf]
    curve = EquityOut(
        time=np.arange(n, dtype=np.int64) * 60_000, equity=equity, drawdown_pct=-equity
    )
    report = _report().model_copy(update={"equity": curve, "agent": {"model": "m", "calls": 2}})
    text = report.to_json()
    assert text == report.model_dump_json(indent=1, exclude={"scorecard"})
    shown = json.loads(text)["equity"]
    assert shown["equity"][0] is None and shown["equity"][70_000] is None
    assert shown["time"][-1] == (n - 1) * 60_000 and len(shown["drawdown_pct"]) == n
    empty = EquityOut(time=np.empty(0, np.int64), equity=np.empty(0), drawdown_pct=np.empty(0))
    flat = report.model_copy(update={"equity": empty, "agent": None})
    assert flat.to_json() == flat.model_dump_json(indent=1, exclude={"agent", "scorecard"})
