"""Position protections: no adding to a held long unless the source allows it, and no new
symbol past `max_open_positions`; exits stay possible either way."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from risk import RiskLimits, SignalSource
from risk.models import ReasonCode
from tests.test_risk_gate import (
    AI,
    PRICE,
    STRATEGY,
    approved,
    market,
    portfolio,
    run,
    vetoed_with,
)
from tests.test_risk_gate import signal as make_signal

HELD = {"BTCUSDT": (0.01, PRICE)}


def test_the_agent_does_not_pyramid_by_default() -> None:
    buy = make_signal(source=AI, size_pct=0.05, stop_loss=PRICE * 0.99, confidence=0.9)
    vetoed_with(run(buy, portfolio(positions=HELD)), ReasonCode.PYRAMIDING)
    approved(run(buy, portfolio()))  # flat: the same signal enters


def test_pyramiding_is_allowed_where_the_source_says_so() -> None:
    approved(run(make_signal(source=STRATEGY, size_pct=0.05), portfolio(positions=HELD)))
    buy = make_signal(source=AI, size_pct=0.05, stop_loss=PRICE * 0.99, confidence=0.9)
    allowed = RiskLimits(ai={"allow_pyramiding": True})
    approved(run(buy, portfolio(positions=HELD), limits=allowed))
    strict = RiskLimits(strategy={"allow_pyramiding": False})
    vetoed_with(
        run(make_signal(size_pct=0.05), portfolio(positions=HELD), limits=strict),
        ReasonCode.PYRAMIDING,
    )


@given(
    cap=st.integers(min_value=1, max_value=3),
    held=st.integers(min_value=0, max_value=4),
    source=st.sampled_from(list(SignalSource)),
)
def test_max_open_positions_refuses_a_new_symbol_never_an_exit(
    cap: int, held: int, source: SignalSource
) -> None:
    symbols = ["ETHUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT"][:held]
    positions = {s: (1.0, 100.0) for s in symbols}
    pf = portfolio(cash=10_000.0, positions=positions, equity=10_000.0 + held * 100.0)
    limits = RiskLimits(max_open_positions=cap)
    entry = make_signal(
        source=source, size_pct=0.01, stop_loss=PRICE * 0.99, confidence=0.9, symbol="BTCUSDT"
    )
    verdict = run(entry, pf, limits=limits)
    if held >= cap:
        vetoed_with(verdict, ReasonCode.MAX_OPEN_POSITIONS)
    else:
        approved(verdict)
    with_btc = portfolio(cash=10_000.0, positions={**positions, "BTCUSDT": (0.01, PRICE)})
    approved(run(make_signal("close", source=source), with_btc, market(), limits=limits))
