"""A recorded corpus of risk-gate cases: random signals against varied portfolios, markets,
states and limits, each with the verdict the gate gave when it was recorded. Replaying it
proves a faster gate still says exactly the same thing.

Re-record (only when a verdict is meant to change): python -m tests.gate_corpus"""

from __future__ import annotations

import gzip
import json
import math
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

from market.sample import sample_rules
from risk import (
    MarketView,
    OrderType,
    PortfolioView,
    PositionView,
    RiskLimits,
    RiskState,
    SignalAction,
    SignalSource,
    TradeSignal,
    assess,
)
from risk.models import ReasonCode
from risk.protections import Lock, TradingState

CORPUS = Path(__file__).parent / "fixtures" / "gate_verdicts.json.gz"
NOW = 1_761_782_400_000
CASES = 3_000
_GARBAGE = [math.nan, math.inf, -1.0, 0.0]


def _maybe(rng: random.Random, p: float, value: Any) -> Any:
    return value if rng.random() < p else None


def _price(rng: random.Random, last: float) -> float:
    if rng.random() < 0.02:
        return rng.choice(_GARBAGE)
    return last * (1 + rng.gauss(0, 0.03))


def _signal(rng: random.Random, i: int, symbol: str, last: float) -> TradeSignal:
    order_type = rng.choice(list(OrderType))
    quantity = _maybe(rng, 0.4, rng.uniform(0.00001, 3.0))
    if rng.random() < 0.03:
        quantity = rng.choice(_GARBAGE)
    return TradeSignal(
        decision_id=f"corpus-{i}" if rng.random() > 0.01 else " ",
        source=rng.choice(list(SignalSource)),
        symbol=symbol if rng.random() > 0.02 else "XRPUSDT",
        action=rng.choices(list(SignalAction), weights=[6, 2, 2, 1])[0],
        order_type=order_type,
        quantity=quantity,
        size_pct=_maybe(rng, 0.4, rng.uniform(0.001, 1.5)),
        limit_price=_price(rng, last) if rng.random() < 0.9 or order_type == "limit" else None,
        stop_price=_price(rng, last) if rng.random() < 0.9 else None,
        stop_loss=_maybe(rng, 0.5, last * (1 - rng.uniform(-0.01, 0.06))),
        take_profit=_maybe(rng, 0.3, last * (1 + rng.uniform(-0.01, 0.1))),
        confidence=rng.uniform(0.2, 1.0) if rng.random() > 0.02 else 1.5,
        created_ms=NOW,
        protective=rng.random() < 0.1,
    )


def _portfolio(rng: random.Random, symbol: str, last: float) -> PortfolioView:
    equity = rng.choice([10_000.0, 250.0, 1_000_000.0, 12_500.0])
    if rng.random() < 0.02:
        equity = rng.choice(_GARBAGE)
    positions = {}
    if rng.random() < 0.5:
        qty = rng.choice([1, -1]) * rng.uniform(0.0001, 2.0) if rng.random() < 0.9 else math.nan
        positions[symbol] = PositionView(quantity=qty, avg_price=last * rng.uniform(0.9, 1.1))
    if rng.random() < 0.4:
        positions["SOLUSDT"] = PositionView(quantity=rng.uniform(0, 50), avg_price=180.0)
    return PortfolioView(
        cash=equity * rng.uniform(0.0, 1.0),
        equity=equity,
        peak_equity=equity * rng.uniform(1.0, 1.5),
        day_start_equity=equity * rng.uniform(0.85, 1.2),
        positions=positions,
    )


def _market(rng: random.Random, symbol: str, last: float) -> MarketView:
    rules = sample_rules()[symbol]
    if rng.random() < 0.1:
        rules = rules.model_copy(update={"max_notional": Decimal("5000")})
    if rng.random() < 0.02:
        rules = rules.model_copy(update={"status": "BREAK"})
    spread = rng.choice([0.01, 0.5, last * 0.01]) if rng.random() < 0.6 else None
    return MarketView(
        symbol=symbol,
        last_price=last if rng.random() > 0.01 else math.nan,
        data_time_ms=NOW - rng.choice([1_000, 60_000, 300_000]),
        atr=_maybe(rng, 0.8, last * rng.uniform(0.0005, 0.01)),
        best_bid=None if spread is None else last - spread,
        best_ask=None if spread is None else last,
        rules=rules,
    )


def _state(rng: random.Random) -> RiskState:
    locks = []
    for level, code in (
        (TradingState.HALTED, ReasonCode.KILL_SWITCH),
        (TradingState.REDUCING, ReasonCode.SAFE_MODE),
    ):
        if rng.random() < 0.1:
            until = rng.choice([None, NOW - 1, NOW + 60_000])
            locks.append(
                Lock(code=code, level=level, message="corpus", since_ms=NOW - 1, until_ms=until)
            )
    orders = tuple(
        sorted(NOW - rng.randrange(3_600_000) for _ in range(rng.choice([0, 0, 1, 3, 25])))
    )
    return RiskState(
        locks=tuple(locks),
        losing_streak=rng.choice([0, 0, 3, 5]),
        last_loss_ms=rng.choice([None, NOW - 600_000, NOW - 7_200_000]),
        recent_orders_ms=orders,
    )


def _limits(rng: random.Random) -> RiskLimits:
    return rng.choice(
        [
            RiskLimits(),
            RiskLimits(max_open_positions=1),
            RiskLimits(ai={"require_stop_loss": False, "atr_stop_multiple": None}),
            RiskLimits(fee_rate=0.0, strategy={"max_order_notional": 2_000.0}),
        ]
    )


def cases(count: int = CASES, seed: int = 18) -> list[dict[str, Any]]:
    """The inputs of every case (NaN and inf kept: they are what the gate must veto)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        symbol = rng.choice(["BTCUSDT", "ETHUSDT"])
        last = 65_000.0 if symbol == "BTCUSDT" else 3_900.0
        out.append(
            {
                "signal": _signal(rng, i, symbol, last).model_dump(),
                "portfolio": _portfolio(rng, symbol, last).model_dump(),
                "market": _market(rng, symbol, last).model_dump(),
                "limits": _limits(rng).model_dump(),
                "state": _state(rng).model_dump(),
            }
        )
    return out


def verdict_of(case: dict[str, Any]) -> dict[str, Any]:
    """The gate's verdict on one case as JSON, without the per-process seal."""
    verdict = assess(
        TradeSignal.model_validate(case["signal"]),
        PortfolioView.model_validate(case["portfolio"]),
        MarketView.model_validate(case["market"]),
        NOW,
        RiskLimits.model_validate(case["limits"]),
        RiskState.model_validate(case["state"]),
    )
    return verdict.model_dump(mode="json", exclude={"order": {"seal"}})


def load() -> list[dict[str, Any]]:
    with gzip.open(CORPUS, "rt") as f:
        return json.load(f)


def record() -> None:
    inputs = json.loads(json.dumps(cases(), default=str))  # exactly what a replay reads back
    corpus = [{**case, "verdict": verdict_of(case)} for case in inputs]
    with gzip.GzipFile(CORPUS, "wb", mtime=0) as f:
        f.write(json.dumps(corpus, separators=(",", ":"), default=str).encode())


if __name__ == "__main__":
    record()
