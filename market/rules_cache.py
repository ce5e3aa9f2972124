"""Which exchange rules a run trades by: the venue's own, fetched at most once a day and kept in
the store; offline, the last ones stored, else the bundled capture, said in one notice line."""

from __future__ import annotations

from collections.abc import Callable

from core.errors import UserError, VenueError
from market.models import SymbolRules
from market.sample import sample_rules
from store import Store
from store.exchange_rules import load_rules, save_rules

DAY_MS = 86_400_000
Fetch = Callable[[list[str]], dict[str, SymbolRules]]


def exchange_rules(
    store: Store,
    venue: str,
    symbols: list[str],
    now_ms: int,
    fetch: Fetch | None,
    notify: Callable[[str], None],
) -> dict[str, SymbolRules]:
    """Rules for the `symbols` the venue lists; a symbol nobody knows is left out (the caller
    says what it trades it with), and one the venue does not list is an error, unless the
    store kept its rules from when it did (a delisted coin's stored bars still backtest).
    `fetch` None: offline by setting."""
    stored = {} if store.deferred else load_rules(store, venue, symbols)  # new: none yet
    fresh = {s: r for s, (r, at) in stored.items() if now_ms - at < DAY_MS}
    if len(fresh) == len(symbols):
        return fresh
    why = "offline"
    if fetch is not None:
        try:
            fetched = fetch(symbols)
        except UserError as exc:
            if len(stored) < len(symbols):
                raise  # a symbol the venue does not list and never did: the user's to fix
            why = f"{venue.capitalize()} no longer lists them: {exc}"  # their last rules serve
        except VenueError as exc:
            why = f"{venue.capitalize()} unreachable: {exc}"
        else:
            save_rules(store, venue, fetched, now_ms)
            return fetched
    known = {s: r for s, (r, _) in stored.items()}
    # the bundled capture is Binance's: another venue's symbols are never priced by it
    capture = sample_rules() if venue.startswith("binance") else {}
    bundled = {s: r for s, r in capture.items() if s in symbols and s not in known}
    if bundled:
        notify(
            f"notice: exchange rules for {', '.join(sorted(bundled))} are the bundled "
            f"2024-09-08 capture ({why})"
        )
    elif missing := sorted(set(symbols) - set(known)):
        notify(f"notice: no {venue} exchange rules for {', '.join(missing)} ({why})")
    return known | bundled
