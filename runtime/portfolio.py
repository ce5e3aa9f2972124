"""The runner's one view of the account, marked at bar closes, with the peak and the UTC day's
start taken from the risk state that every mode keeps the same way, and the orders the venue
holds counted as an exchange counts them: buys lock their cash, every order moves the position."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from execution.ledger import Ledger
from execution.orders import Pending, snap
from risk.models import Elsewhere
from risk.state import RiskState
from risk.views import PortfolioFacts, PositionFacts


def account_facts(
    ledger: Ledger,
    marks: Mapping[str, float],
    risk: RiskState,
    pending: Sequence[Pending] = (),
    fee_rate: float = 0.0,
    elsewhere: Elsewhere | None = None,
) -> PortfolioFacts:
    equity = ledger.equity(marks)
    fields = risk.__dict__  # read once: a model's attribute read is slower than a dict's
    top, start = fields["peak_equity"], fields["day_start_equity"]
    peak = equity if top is None or equity > top else top  # max(top, equity), without a call
    day_start = equity if start is None else start
    cash = ledger.cash
    if not pending:  # the usual at a decision: every order filled at its open
        held = {s: PositionFacts(q, ledger.avg_price(s)) for s, q in ledger.held()}
        return PortfolioFacts(cash, equity, peak, day_start, held, elsewhere)
    positions = {s: (q, ledger.avg_price(s)) for s, q in ledger.held()}
    for order in pending:
        price = marks[order.symbol] if order.price is None else order.price
        if order.side > 0:
            cash -= order.quantity * price * (1.0 + fee_rate)
        quantity, average = positions.get(order.symbol, (0.0, price))
        positions[order.symbol] = (snap(quantity + order.side * order.quantity), average)
    return PortfolioFacts(
        cash,
        equity,
        peak,
        day_start,
        {s: PositionFacts(q, a) for s, (q, a) in positions.items() if q},
        elsewhere,
    )
