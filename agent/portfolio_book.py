"""One portfolio across venues (config `portfolio.accounts`): each account's gate counts the
other accounts' equity and positions, read from the store as `agent-trade status` shows them
and converted through USD (risk.usd), so one exposure limit holds over stocks and crypto."""

from __future__ import annotations

from collections.abc import Callable

from agent.loop_state import LoopState
from config.portfolio import PortfolioSettings
from core.errors import UserError
from execution.corporate import rebuild_ledger
from execution.ledger import Ledger
from execution.paper_records import load_account
from market.instruments import quote_of
from risk.models import Elsewhere
from risk.usd import VenueBook, elsewhere, usd_per
from store.db import Store


def venue_book(store: Store, account: str) -> VenueBook | None:
    """An account's equity and gross exposure at its last marks; None if it never ran."""
    stored = load_account(store, account)
    if stored.state_json is None:
        return None
    state = LoopState.model_validate_json(stored.state_json)
    ledger = Ledger(state.initial_cash)
    rebuild_ledger(ledger, stored.fills, stored.actions)
    marks = state.paper.marks
    values = [q * marks.get(s, ledger.avg_price(s)) for s, q in ledger.held()]
    quotes = {quote_of(s) for s in marks} or {"USDT"}
    if len(quotes) != 1:
        raise UserError(f"account {account!r} trades in {', '.join(sorted(quotes))}: one each")
    return VenueBook(
        venue=account,
        quote=quotes.pop(),
        equity=ledger.cash + sum(values),
        exposure=sum(abs(v) for v in values),
    )


def portfolio_of(
    store: Store, account: str, quote: str, settings: PortfolioSettings
) -> Callable[[], Elsewhere] | None:
    """What the runner adds to `account`'s portfolio view, when the account is one of a
    portfolio's; every bar reads the others afresh (they run in their own processes)."""
    if account not in settings.accounts:
        return None
    try:
        usd_per(quote, settings.usdt_usd)
    except ValueError as exc:
        raise UserError(f"portfolio.accounts: {exc}") from None
    others = [a for a in settings.accounts if a != account]

    def read() -> Elsewhere:
        books = [b for b in (venue_book(store, a) for a in others) if b is not None]
        return elsewhere(books, quote, settings.usdt_usd)

    return read


def portfolio_line(shown: dict) -> str:
    """`agent-trade status`: the USDT rate in force and the accounts counted together."""
    together = ", ".join(shown["accounts"]) or "this account alone"
    return f"portfolio USDT = {shown['usdt_usd']:g} USD (portfolio.usdt_usd); exposure counts {together}"
