"""The runner's one view of the account, marked at bar closes, with the peak and the UTC day's
start taken from the risk state that every mode keeps the same way, and the orders the venue
holds counted as an exchange counts them: buys lock their cash, every order moves the position."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from execution.ledger import Ledger
from execution.orders import Pending, snap
from risk.models import PortfolioView, PositionView
from risk.state import RiskState
from risk.trusted import trusted


def portfolio_view(
    ledger: Ledger,
    marks: Mapping[str, float],
    risk: RiskState,
    pending: Sequence[Pending] = (),
    fee_rate: float = 0.0,
) -> PortfolioView:
    equity = ledger.equity(marks)
    peak = equity if risk.peak_equity is None else max(risk.peak_equity, equity)
    day_start = equity if risk.day_start_equity is None else risk.day_start_equity
    cash = ledger.cash
    positions = {s: (q, ledger.avg_price(s)) for s, q in ledger.held()}
    for order in pending:
        price = marks[order.symbol] if order.price is None else order.price
        if order.side > 0:
            cash -= order.quantity * price * (1.0 + fee_rate)
        held, average = positions.get(order.symbol, (0.0, price))
        positions[order.symbol] = (snap(held + order.side * order.quantity), average)
    # Every value is a float the ledger and the risk state already hold: built without
    # re-validation, as the gate's own outputs are (risk.trusted).
    return trusted(
        PortfolioView,
        {
            "cash": cash,
            "equity": equity,
            "peak_equity": peak,
            "day_start_equity": day_start,
            "positions": {
                s: trusted(PositionView, {"quantity": q, "avg_price": a})
                for s, (q, a) in positions.items()
                if q
            },
            "elsewhere": None,  # the runner adds the portfolio's other venues when it has any
        },
    )
