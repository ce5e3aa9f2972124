"""Ordered schema migrations; append only, never edit one that has shipped."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Connection
    from sqlalchemy.sql import FromClause


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


def _stocks_to_alpaca(conn: Connection) -> None:
    """A US stock's bars that `agent-data import` kept under binance (before the store key
    followed the asset class) move to alpaca, the stock venue. A bar alpaca already holds is
    kept and the moved copy dropped, as an import adds only new bars; each moved series gets a
    new write token, so no columnar cache made before is read, and the cache of its old key goes
    (store/bar_cache.py)."""
    from sqlalchemy import delete, exists, select, update

    from market.instruments import STOCK_EXCHANGE, home_exchange
    from market.models import EXCHANGE
    from store import bar_cache
    from store.tables import CandleRow, CandleSeriesRow

    candles, tokens = CandleRow.__table__, CandleSeriesRow.__table__
    there = candles.alias()  # the stock venue's own bars, beside the ones moving
    held = select(candles.c.symbol, candles.c.interval).where(candles.c.exchange == EXCHANGE)
    root = bar_cache.cache_root(conn.engine)
    stocks = [s for s in conn.execute(held.distinct()) if home_exchange(s.symbol) == STOCK_EXCHANGE]
    for symbol, interval in stocks:
        moved = _series(candles, EXCHANGE, symbol, interval)
        kept = select(there.c.open_time).where(
            _series(there, STOCK_EXCHANGE, symbol, interval),
            there.c.open_time == candles.c.open_time,
        )
        conn.execute(delete(candles).where(moved, exists(kept)))
        conn.execute(update(candles).where(moved).values(exchange=STOCK_EXCHANGE))
        conn.execute(
            delete(tokens).where(
                _series(tokens, EXCHANGE, symbol, interval)
                | _series(tokens, STOCK_EXCHANGE, symbol, interval)
            )
        )
        token = secrets.randbits(62)
        series = {"exchange": STOCK_EXCHANGE, "symbol": symbol, "interval": interval}
        conn.execute(tokens.insert().values(**series, write_token=token))
        if root is not None:
            bar_cache.forget(root, (EXCHANGE, symbol, interval))


def _arb_times_64_bit(conn: Connection) -> None:
    """The arbitrage journal's times are milliseconds since 1970, past 2**31: PostgreSQL made
    them 32-bit columns, which refused the first pair. SQLite's integers are 64-bit already,
    and a store that never ran `agent-arb run` has no journal yet (it is made on first use)."""
    from sqlalchemy import inspect

    if conn.dialect.name == "sqlite":
        return
    made = inspect(conn)
    for table, column in (("arb_pairs", "opened_ms"), ("arb_transfers", "time_ms")):
        if made.has_table(table):
            conn.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE BIGINT")


def _series(table: FromClause, exchange: str, symbol: str, interval: str) -> ColumnElement[bool]:
    from sqlalchemy import and_

    c = table.c
    return and_(c.exchange == exchange, c.symbol == symbol, c.interval == interval)


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
    Migration(12, "imported stock bars under alpaca, the stock venue", _stocks_to_alpaca),
    Migration(13, "64-bit times in the arbitrage journal", _arb_times_64_bit),
)
