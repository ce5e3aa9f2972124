"""SQLModel tables; each new table also gets a migration in `store/migrations.py`."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Text
from sqlmodel import Field, SQLModel


class CandleRow(SQLModel, table=True):
    """A closed bar; the composite key makes inserts idempotent and serves range queries."""

    __tablename__ = "candles"
    # SQLite: the key is the table (no rowid b-tree), which halves writes and range-read seeks.
    __table_args__ = {"sqlite_with_rowid": False}

    exchange: str = Field(sa_column=Column(String(16), primary_key=True))
    symbol: str = Field(sa_column=Column(String(20), primary_key=True))
    interval: str = Field(sa_column=Column(String(4), primary_key=True))
    open_time: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    open: float
    high: float
    low: float
    close: float
    volume: float
    close_time: int = Field(sa_column=Column(BigInteger, nullable=False))
    quote_volume: float
    trades: int = Field(sa_column=Column(BigInteger, nullable=False))
    taker_buy_volume: float
    taker_buy_quote_volume: float


class CandleSeriesRow(SQLModel, table=True):
    """A random token per candle series, replaced in the same transaction as every write to its
    bars: the columnar cache (store/bar_cache.py) is keyed by it, so it never serves old bars,
    even for a database deleted and created anew at the same path."""

    __tablename__ = "candle_series"

    exchange: str = Field(sa_column=Column(String(16), primary_key=True))
    symbol: str = Field(sa_column=Column(String(20), primary_key=True))
    interval: str = Field(sa_column=Column(String(4), primary_key=True))
    write_token: int = Field(sa_column=Column(BigInteger, nullable=False))


class SchemaVersion(SQLModel, table=True):
    """One row per applied migration, so an old database is upgraded in place."""

    __tablename__ = "schema_version"

    version: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    description: str
    applied_at: str


class RiskStateRow(SQLModel, table=True):
    """The trading state per scope (an account or a run), so a restart never clears a halt."""

    __tablename__ = "risk_state"

    scope: str = Field(sa_column=Column(String(64), primary_key=True))
    state_json: str = Field(sa_column=Column(Text, nullable=False))
    updated_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class RiskVerdictRow(SQLModel, table=True):
    """One gate verdict with everything needed to replay it: inputs, outcome, state around it."""

    __tablename__ = "risk_verdicts"
    __table_args__ = (Index("ix_risk_verdicts_scope_time", "scope", "now_ms"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    scope: str = Field(sa_column=Column(String(64), nullable=False))
    decision_id: str = Field(sa_column=Column(String(128), nullable=False))
    now_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    symbol: str = Field(sa_column=Column(String(20), nullable=False))
    source: str = Field(sa_column=Column(String(16), nullable=False))
    kind: str = Field(sa_column=Column(String(8), nullable=False))
    codes: str = Field(sa_column=Column(Text, nullable=False))  # comma-separated reason codes
    inputs_json: str = Field(sa_column=Column(Text, nullable=False))
    verdict_json: str = Field(sa_column=Column(Text, nullable=False))
    state_before_json: str = Field(sa_column=Column(Text, nullable=False))
    state_after_json: str = Field(sa_column=Column(Text, nullable=False))


class BacktestRunRow(SQLModel, table=True):
    """One backtest run: what ran, on which bars, and its metrics, trades and order counts."""

    __tablename__ = "backtest_runs"

    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    strategy: str = Field(sa_column=Column(String(32), nullable=False))
    symbols: str = Field(sa_column=Column(String(200), nullable=False))
    interval: str = Field(sa_column=Column(String(4), nullable=False))
    start_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    end_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    report_sha256: str = Field(sa_column=Column(String(64), nullable=False))
    config_json: str = Field(sa_column=Column(Text, nullable=False))
    metrics_json: str = Field(sa_column=Column(Text, nullable=False))
    orders_json: str = Field(sa_column=Column(Text, nullable=False))
    trades_json: str = Field(sa_column=Column(Text, nullable=False))


class DecisionRow(SQLModel, table=True):
    """One agent decision (invariant 4): inputs hash, model, prompt version, tool calls, LLM
    calls, signal, verdict, order and fill, as JSON, so any decision can be audited later."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_run_time", "run_id", "decided_ms"),)

    decision_id: str = Field(sa_column=Column(String(160), primary_key=True))
    run_id: str = Field(sa_column=Column(String(64), nullable=False))
    mode: str = Field(sa_column=Column(String(16), nullable=False))
    symbol: str = Field(sa_column=Column(String(20), nullable=False))
    decided_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    outcome: str = Field(sa_column=Column(String(24), nullable=False))
    model: str = Field(sa_column=Column(String(120), nullable=False))
    base_url: str = Field(sa_column=Column(String(300), nullable=False))
    prompt_version: str = Field(sa_column=Column(String(32), nullable=False))
    inputs_sha256: str = Field(sa_column=Column(String(64), nullable=False))
    record_json: str = Field(sa_column=Column(Text, nullable=False))


class PaperOrderRow(SQLModel, table=True):
    """An order of a paper account; the key is the client order id, so none is stored twice."""

    __tablename__ = "paper_orders"
    __table_args__ = (Index("ix_paper_orders_account_time", "account", "accepted_ms"),)

    account: str = Field(sa_column=Column(String(64), primary_key=True))
    client_order_id: str = Field(sa_column=Column(String(64), primary_key=True))
    decision_id: str = Field(sa_column=Column(String(160), nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    accepted_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    order_json: str = Field(sa_column=Column(Text, nullable=False))


class PaperFillRow(SQLModel, table=True):
    """One fill of a paper account; `seq` orders them, and the ledger is rebuilt from them."""

    __tablename__ = "paper_fills"

    account: str = Field(sa_column=Column(String(64), primary_key=True))
    seq: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    order_id: str = Field(sa_column=Column(String(64), nullable=False))
    symbol: str = Field(sa_column=Column(String(20), nullable=False))
    side: int = Field(sa_column=Column(Integer, nullable=False))
    quantity: float
    price: float
    fee: float
    liquidity: str = Field(sa_column=Column(String(8), nullable=False))
    bar: int = Field(sa_column=Column(BigInteger, nullable=False))
    time_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    reason: str = Field(sa_column=Column(String(16), nullable=False))


class PaperCorporateActionRow(SQLModel, table=True):
    """A split or dividend a paper account took, after `fills_before` of its fills: a restart
    replays it between the same fills, and never applies it a second time."""

    __tablename__ = "paper_corporate_actions"

    account: str = Field(sa_column=Column(String(64), primary_key=True))
    seq: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    symbol: str = Field(sa_column=Column(String(20), nullable=False))
    open_time: int = Field(sa_column=Column(BigInteger, nullable=False))
    ratio: float
    dividend: float
    price: float
    step: float
    fills_before: int = Field(sa_column=Column(Integer, nullable=False))


class CorporateActionRow(SQLModel, table=True):
    """A stock's split (new shares per old) or dividend (cash per share) at the open of its
    ex-date's first bar, kept from an imported file beside its raw candles."""

    __tablename__ = "corporate_actions"

    symbol: str = Field(sa_column=Column(String(20), primary_key=True))
    interval: str = Field(sa_column=Column(String(8), primary_key=True))
    open_time: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    ratio: float
    dividend: float


class TradingLoopRow(SQLModel, table=True):
    """The autonomous loop's checkpoint per account, written with the step's orders and fills."""

    __tablename__ = "trading_loops"

    account: str = Field(sa_column=Column(String(64), primary_key=True))
    updated_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    state_json: str = Field(sa_column=Column(Text, nullable=False))


class EquityPointRow(SQLModel, table=True):
    """The account's equity at each bar's close, for status, the UI and drawdown checks."""

    __tablename__ = "equity_points"

    account: str = Field(sa_column=Column(String(64), primary_key=True))
    time_ms: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    equity: float
    cash: float


class AccountProfileRow(SQLModel, table=True):
    """What a paper account trades (strategy, symbols, risk limits, feed) and from which bar,
    so live trading can ask whether the same thing has a paper record."""

    __tablename__ = "account_profiles"

    account: str = Field(sa_column=Column(String(64), primary_key=True))
    fingerprint: str = Field(sa_column=Column(String(64), nullable=False))
    feed: str = Field(sa_column=Column(String(16), nullable=False))
    since_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    profile_json: str = Field(sa_column=Column(Text, nullable=False))


class KeyCheckRow(SQLModel, table=True):
    """The exchange API key's permissions as last checked for an account (never the key)."""

    __tablename__ = "key_checks"

    account: str = Field(sa_column=Column(String(64), primary_key=True))
    checked_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    permissions_json: str = Field(sa_column=Column(Text, nullable=False))


class RiskInterventionRow(SQLModel, table=True):
    """A person's halt, resume or drawdown reset of one scope: who, why, when, and the state
    around it, so every way back from a halt is on record."""

    __tablename__ = "risk_interventions"
    __table_args__ = (Index("ix_risk_interventions_scope", "scope", "id"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    scope: str = Field(sa_column=Column(String(64), nullable=False))
    action: str = Field(sa_column=Column(String(32), nullable=False))
    who: str = Field(sa_column=Column(String(128), nullable=False))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    equity: float | None = Field(default=None)
    state_before_json: str = Field(sa_column=Column(Text, nullable=False))
    state_after_json: str = Field(sa_column=Column(Text, nullable=False))


class ExchangeRuleRow(SQLModel, table=True):
    """A symbol's order filters as a venue last stated them (exchangeInfo), refetched daily."""

    __tablename__ = "exchange_rules"

    venue: str = Field(sa_column=Column(String(16), primary_key=True))
    symbol: str = Field(sa_column=Column(String(20), primary_key=True))
    rules_json: str = Field(sa_column=Column(Text, nullable=False))
    fetched_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
