"""Does the model know when it knows? Directional decisions are grouped by the confidence the
model stated; each group's realised hit rate sits beside its mean confidence, and the Brier
score sums it up (0 is perfect; always saying 0.5 scores 0.25)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from backtest.veto_ledger import forward, label
from execution.feed import BarArrays

HORIZON_MIN = 60
MAX_GROUPS = 10
PER_GROUP = 10  # fewer decisions than 10 per decile: fewer, wider groups
_DIRECTION = {"buy": 1, "sell": -1, "close": -1}


class Stated(BaseModel):
    """One decision as the model stated it."""

    symbol: str
    decided_ms: int
    action: str
    confidence: float | None


class Group(BaseModel):
    low: float
    high: float
    decisions: int
    mean_confidence: float
    hit_rate: float


class Calibration(BaseModel):
    horizon: str
    decisions: int = 0
    brier: float | None = None
    groups: list[Group] = []
    na: str | None = None


def calibration(
    stated: Sequence[Stated], bars: BarArrays, horizon_min: int = HORIZON_MIN
) -> Calibration:
    """A buy is right when the close `horizon_min` after the next open is above that open; a
    sell or close when it is below. Holds say nothing about direction and are left out."""
    name = label(horizon_min)
    directional = [s for s in stated if s.action in _DIRECTION]
    confident = [s for s in directional if s.confidence is not None]
    if not confident:
        why = (
            "the model stated no confidence"
            if directional
            else "no buy, sell or close decisions to score"
        )
        return Calibration(horizon=name, na=why)
    pairs = []
    for s in confident:
        prices = forward(bars, s.symbol, s.decided_ms, horizon_min)
        if prices is not None:
            pairs.append(
                (float(s.confidence), float((prices[1] - prices[0]) * _DIRECTION[s.action] > 0))
            )
    if not pairs:
        return Calibration(horizon=name, na=f"no decision has {name} of data after it")
    conf, hit = np.array(pairs).T
    count = int(min(MAX_GROUPS, max(1, len(pairs) // PER_GROUP)))
    which = np.minimum((conf * count).astype(int), count - 1)
    groups = [
        Group(
            low=round(g / count, 2),
            high=round((g + 1) / count, 2),
            decisions=int((which == g).sum()),
            mean_confidence=round(float(conf[which == g].mean()), 4),
            hit_rate=round(float(hit[which == g].mean()), 4),
        )
        for g in range(count)
        if (which == g).any()
    ]
    brier = round(float(np.mean((conf - hit) ** 2)), 4)
    return Calibration(horizon=name, decisions=len(pairs), brier=brier, groups=groups)
