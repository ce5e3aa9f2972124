"""Exchange rules (tickSize, stepSize, minNotional, maxQty) kept per venue and symbol with the
time they were fetched, so a day's runs ask the venue once."""

from __future__ import annotations

from market.models import SymbolRules
from store.db import Store


def save_rules(store: Store, venue: str, rules: dict[str, SymbolRules], now_ms: int) -> None:
    from sqlmodel import Session  # SQLModel loads when the venue's rules are used

    from store.tables import ExchangeRuleRow

    with Session(store.engine) as session:
        for symbol, rule in rules.items():
            session.merge(
                ExchangeRuleRow(
                    venue=venue, symbol=symbol, rules_json=rule.model_dump_json(), fetched_ms=now_ms
                )
            )
        session.commit()


def load_rules(store: Store, venue: str, symbols: list[str]) -> dict[str, tuple[SymbolRules, int]]:
    """The stored rules of `symbols` that the store has, with when each was fetched."""
    if not symbols:
        return {}
    marks = ", ".join("?" * len(symbols))
    rows = store.rows(
        "SELECT symbol, rules_json, fetched_ms FROM exchange_rules "  # nosec B608
        f"WHERE venue = ? AND symbol IN ({marks})",  # only placeholders are formatted in
        (venue, *symbols),
    )
    return {symbol: (SymbolRules.model_validate_json(rules), at) for symbol, rules, at in rows}
