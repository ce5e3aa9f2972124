"""The bundled real Binance sample (BTCUSDT, ETHUSDT 1m, 3 days), so everything works offline."""

from __future__ import annotations

import gzip
import json
from collections import deque
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from market.csv_import import read_candle_csv
from market.models import SymbolRules, iso_ms

SAMPLE_SYMBOLS: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
SAMPLE_INTERVAL = "1m"
_FILES = {s: f"{s}-1m-2025-10-29_3d.csv.gz" for s in SAMPLE_SYMBOLS}
_RULES_FILE = "exchangeInfo_spot_2024-09-08_BTCUSDT_ETHUSDT.json"
# A real diff-depth stream exists for BTCUSDT only; ETHUSDT has no bundled book.
_DEPTH_FILES = {"BTCUSDT": "BTCUSDT-depth-binanceus-2025-07-13_71msgs.jsonl"}
DEPTH_SAMPLE_SYMBOLS: tuple[str, ...] = tuple(_DEPTH_FILES)


def _data_path(name: str) -> Path:
    return Path(str(resources.files("market") / "data" / name))


def has_sample(symbol: str, interval: str) -> bool:
    return symbol in _FILES and interval == SAMPLE_INTERVAL


@cache
def _load(symbol: str) -> pd.DataFrame:
    frame, _absent = read_candle_csv(_data_path(_FILES[symbol]), SAMPLE_INTERVAL)
    return frame


def load_sample(symbol: str) -> pd.DataFrame:
    """A fresh copy of the sample bars; read through the same parser as any user CSV."""
    if symbol not in _FILES:
        raise KeyError(f"no bundled sample for {symbol}; bundled: {', '.join(SAMPLE_SYMBOLS)}")
    return _load(symbol).copy()


@cache
def sample_end(symbol: str) -> int:
    """The sample's last open time, read off its last row: every offline run asks, and parsing
    the whole file to answer cost more than the rest of loading a day of bars."""
    with gzip.open(_data_path(_FILES[symbol]), "rt") as rows:
        (last,) = deque(rows, maxlen=1)
    return int(last.split(",", 1)[0])


def is_sample(symbol: str, frame: pd.DataFrame) -> bool:
    """Whether every bar of `frame` is the bundled sample's own (its time and its prices): a
    user's bars imported for times the sample covers are theirs, not the sample."""
    if symbol not in _FILES or int(frame["open_time"].iloc[-1]) > sample_end(symbol):
        return False
    columns = ["open", "high", "low", "close", "volume"]
    sample = _load(symbol).set_index("open_time")[columns].reindex(frame["open_time"])
    return bool(np.array_equal(sample.to_numpy(), frame[columns].to_numpy()))


def sample_notice(symbol: str, frame: pd.DataFrame) -> str:
    """The one line that tells a user they are looking at bundled, not live, data."""
    first, last = int(frame["open_time"].iloc[0]), int(frame["open_time"].iloc[-1])
    return (
        f"notice: using the bundled Binance sample for {symbol} 1m, "
        f"{iso_ms(first)} → {iso_ms(last)} UTC ({len(frame):,} bars), not live data"
    )


@cache
def sample_rules() -> dict[str, SymbolRules]:
    """Exchange filters captured from Binance (2024-09-08), for offline order checks."""
    info = json.loads(_data_path(_RULES_FILE).read_text())
    return {s["symbol"]: SymbolRules.from_exchange_info(s) for s in info["symbols"]}


@cache
def _depth(symbol: str) -> tuple[dict[str, Any], ...]:
    lines = _data_path(_DEPTH_FILES[symbol]).read_text().splitlines()
    return tuple(json.loads(line) for line in lines if line)


def load_depth_sample(symbol: str) -> list[dict[str, Any]]:
    """The bundled real diff-depth messages (raw `depthUpdate` JSON objects) for `symbol`."""
    if symbol not in _DEPTH_FILES:
        raise KeyError(
            f"no bundled depth capture for {symbol}; bundled: {', '.join(DEPTH_SAMPLE_SYMBOLS)}"
        )
    return [dict(message) for message in _depth(symbol)]
