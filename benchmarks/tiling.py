"""Make large realistic inputs by tiling the real sample forward in time (prices unchanged)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from market.sample import load_sample


def tiled_sample(symbol: str, rows: int) -> pd.DataFrame:
    """`rows` contiguous 1m bars: the real sample repeated, each copy shifted past the last."""
    base = load_sample(symbol)
    span = int(base["open_time"].iloc[-1] - base["open_time"].iloc[0]) + 60_000
    copies = -(-rows // len(base))
    frame = pd.concat([base] * copies, ignore_index=True).iloc[:rows].copy()
    shift = np.repeat(np.arange(copies, dtype=np.int64) * span, len(base))[:rows]
    frame["open_time"] += shift
    frame["close_time"] += shift
    return frame
