"""What each rule of the gate saved or cost. Every vetoed signal, and the part of every clamped
one that the gate cut, is replayed as a counterfactual: entered at the next bar's open (when it
would have filled), marked at the close a fixed horizon later, after fees and slippage both ways.
The sums are kept per reason code (the first reason the gate gave), so a trader sees whether
MAX_POSITION or LOW_CONFIDENCE earned its keep."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel

from backtest.engine import BacktestResult
from execution.feed import BarArrays
from risk.limits import RiskLimits
from risk.models import Approved, PortfolioView, ReasonCode, Side, SignalAction
from runtime.runner import GateCall

HORIZONS_MIN = (15, 60, 240)
MINUTE_MS = 60_000
BASIS = (
    "the vetoed signal, or the part of a clamped one the gate cut, entered at the next bar's "
    "open and marked at the close a horizon later, less fees and slippage both ways; "
    "saved = minus what it would have earned; by the gate's first reason code"
)
# Not a rule saving anything: the model chose to do nothing, or there was nothing to do.
_NOT_A_TRADE = frozenset({ReasonCode.HOLD, ReasonCode.NO_POSITION})


class CodeLedger(BaseModel):
    vetoed: int = 0
    clamped: int = 0
    saved_usd: dict[str, float] = {}
    still_open: dict[str, int] = {}  # horizons that end after the data


class VetoLedger(BaseModel):
    horizons: list[str]
    basis: str
    by_code: dict[str, CodeLedger]
    total_saved_usd: dict[str, float]


class Blocked(BaseModel):
    """What the gate blocked of one signal: kept with a trading loop's decision record, so the
    ledger can be priced later from stored bars."""

    code: str  # the gate's first reason code
    quantity: float  # signed base units: the vetoed signal, or the part of a clamped one cut
    clamped: bool
    cost: float  # fees and slippage per side, as a fraction of notional


class Counterfactual(NamedTuple):
    symbol: str
    decided_ms: int
    blocked: Blocked


def label(minutes: int) -> str:
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def forward(
    bars: BarArrays, symbol: str, decided_ms: int, minutes: int
) -> tuple[float, float] | None:
    """The next bar's open after a decision and the first close at least `minutes` after it,
    found by time so that a gap in the bars (a night, a weekend, a missing hour) does not
    shorten the horizon; None past the data."""
    index = int(np.searchsorted(bars.close_time, decided_ms))
    end = int(np.searchsorted(bars.close_time, decided_ms + minutes * MINUTE_MS))
    if end >= len(bars):
        return None
    series = bars.symbols[symbol]
    return float(series.open[index + 1]), float(series.close[end])


def veto_ledger(result: BacktestResult, horizons_min: Sequence[int] = HORIZONS_MIN) -> VetoLedger:
    cost = result.config.cost_reserve()
    found = []
    for call in result.gate_calls:
        what = blocked(call, result.limits, cost)
        if what is not None:
            found.append(Counterfactual(call.signal.symbol, call.signal.created_ms, what))
    return tally(found, lambda _: result.bars, horizons_min)


def tally(
    found: Iterable[Counterfactual],
    bars_of: Callable[[str], BarArrays],
    horizons_min: Sequence[int] = HORIZONS_MIN,
) -> VetoLedger:
    """Each blocked signal priced over each horizon on its symbol's bars, summed per code."""
    names = [label(h) for h in horizons_min]
    raw: dict[str, dict[str, list[float]]] = {}
    counts: dict[str, CodeLedger] = {}
    for symbol, decided_ms, what in found:
        bars = bars_of(symbol)
        entry = counts.setdefault(what.code, CodeLedger())
        if what.clamped:
            entry.clamped += 1
        else:
            entry.vetoed += 1
        sums = raw.setdefault(what.code, {})
        for name, minutes in zip(names, horizons_min, strict=True):
            prices = forward(bars, symbol, decided_ms, minutes)
            if prices is None:
                entry.still_open[name] = entry.still_open.get(name, 0) + 1
                continue
            start, end = prices
            quantity = what.quantity
            earned = quantity * (end - start) - what.cost * abs(quantity) * (start + end)
            sums.setdefault(name, []).append(-earned)
    by_code = {}
    for code in sorted(counts):
        entry = counts[code]
        entry.saved_usd = {n: round(sum(raw[code].get(n, [])), 2) for n in names}
        by_code[code] = entry
    total = {n: round(sum(e.saved_usd[n] for e in by_code.values()), 2) for n in names}
    return VetoLedger(horizons=names, basis=BASIS, by_code=by_code, total_saved_usd=total)


def blocked(call: GateCall, limits: RiskLimits, cost: float) -> Blocked | None:
    """What the gate blocked of this signal, or None when it blocked nothing that trades."""
    verdict, market, portfolio = call.verdict, call.market, call.portfolio
    if market is None or portfolio is None:
        return None
    proposed = _proposed(call, market.last_price, portfolio, limits)
    if isinstance(verdict, Approved):
        if not verdict.adjustments:
            return None
        order = verdict.order
        approved = float(order.quantity) * (1 if order.side is Side.BUY else -1)
        cut = proposed - approved
        if not cut:
            return None
        return Blocked(
            code=verdict.adjustments[0].code.value, quantity=cut, clamped=True, cost=cost
        )
    code = verdict.reasons[0].code
    if code in _NOT_A_TRADE or not proposed:
        return None
    return Blocked(code=code.value, quantity=proposed, clamped=False, cost=cost)


def _proposed(call: GateCall, price: float, portfolio: PortfolioView, limits: RiskLimits) -> float:
    """The signal as proposed, in signed base units: its quantity, else its share of equity
    (the source's position cap where it named none), else the whole position for a close."""
    signal = call.signal
    if signal.action is SignalAction.CLOSE:
        held = portfolio.positions.get(signal.symbol)
        return -held.quantity if held is not None else 0.0
    if signal.action not in (SignalAction.BUY, SignalAction.SELL):
        return 0.0
    direction = 1 if signal.action is SignalAction.BUY else -1
    if signal.quantity is not None:
        return direction * signal.quantity
    share = signal.size_pct
    if share is None:
        share = limits.for_source(signal.source).max_position_pct
    return direction * share * portfolio.equity / price
