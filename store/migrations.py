"""Ordered schema migrations; append only, never edit one that has shipped."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from sqlalchemy import Connection


class Migration(NamedTuple):
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create(*tables: str) -> Callable[[Connection], None]:
    """Creates the named `store.tables` models; they load only when a migration is pending, so
    opening an up-to-date store never defines the SQLModel classes."""

    def apply(conn: Connection) -> None:
        import store.tables

        for table in tables:
            getattr(store.tables, table).__table__.create(conn, checkfirst=True)

    return apply


def _series_tokens(conn: Connection) -> None:
    """Every series already stored gets its first write token (see CandleSeriesRow)."""
    from sqlalchemy import select

    from store.tables import CandleRow, CandleSeriesRow

    series, candles = CandleSeriesRow.__table__, CandleRow.__table__
    series.create(conn, checkfirst=True)
    key = (candles.c.exchange, candles.c.symbol, candles.c.interval)
    rows = [
        {"exchange": e, "symbol": s, "interval": i, "write_token": secrets.randbits(62)}
        for e, s, i in conn.execute(select(*key).distinct())
    ]
    if rows:
        conn.execute(series.insert(), rows)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "candles", _create("CandleRow")),
    Migration(2, "risk state and verdicts", _create("RiskStateRow", "RiskVerdictRow")),
    Migration(3, "backtest runs", _create("BacktestRunRow")),
    Migration(4, "agent decisions", _create("DecisionRow")),
    Migration(
        5,
        "paper accounts and the trading loop",
        _create("PaperOrderRow", "PaperFillRow", "TradingLoopRow", "EquityPointRow"),
    ),
    Migration(
        6,
        "paper records for live readiness and API key checks",
        _create("AccountProfileRow", "KeyCheckRow"),
    ),
    Migration(7, "a person's halts, resumes and drawdown resets", _create("RiskInterventionRow")),
    Migration(8, "exchange rules cached from exchangeInfo", _create("ExchangeRuleRow")),
    Migration(9, "splits and dividends paper accounts took", _create("PaperCorporateActionRow")),
    Migration(10, "splits and dividends of imported stock candles", _create("CorporateActionRow")),
    Migration(11, "a write token per candle series, for the columnar cache", _series_tokens),
)
