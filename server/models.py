"""What the REST API answers, as pydantic models: the OpenAPI schema at /docs is built from
these, so a client knows every field before it asks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from risk.limits import RiskLimits


class Problem(BaseModel):
    """Every 4xx and 5xx: the field at fault (when one is) and one line saying what is wrong."""

    detail: str
    field: str | None = None


class AccountHealth(BaseModel):
    account: str
    status: str
    trading_state: str
    last_bar: str | None
    feed_lag_s: float | None = Field(
        description="seconds since the account's last processed bar closed; None before any bar"
    )
    last_error: str | None


class ServerLoop(BaseModel):
    """The trading loop `agent-server --trade` runs inside this process."""

    account: str
    alive: bool
    ended: str | None = Field(None, description="why it stopped, once it has")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    store: Literal["reachable", "unreachable"]
    store_error: str | None = None
    accounts: list[AccountHealth]
    server_loop: ServerLoop | None = None


class Kline(BaseModel):
    open_time: int
    time: str
    open: float
    high: float
    low: float
    close: float
    volume: float


class Klines(BaseModel):
    symbol: str
    interval: str
    bars: list[Kline]
    notices: list[str] = Field(
        description="where the bars came from when not the store (e.g. the bundled sample)"
    )


class OrderBookOut(BaseModel):
    symbol: str
    kind: Literal["live", "snapshot"] = Field(
        description="live: the book the server's own loop keeps from the depth stream; "
        "snapshot: fetched over REST for this request"
    )
    source: str
    last_update_id: int | None = Field(description="the snapshot's; None for a live book")
    event_time_ms: int | None = Field(None, description="a live book's last depth event")
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    best_bid: float | None
    best_ask: float | None
    spread_bps: float | None


class Position(BaseModel):
    symbol: str
    quantity: float
    avg_price: float
    mark: float | None
    value: float


class Limits(BaseModel):
    """The limits the gate applied at its latest call for the account, or why none are shown."""

    in_force: RiskLimits | None
    note: str | None = None


class AccountOut(BaseModel):
    account: str
    mode: str
    status: str
    stop_reason: str | None
    trading_state: str
    locks: list[str]
    kill_switch_file: bool
    last_bar: str | None
    bars: int
    cash: float
    positions: list[Position]
    equity: float
    pnl: float
    pnl_pct: float
    initial_cash: float
    fills: int
    orders: int
    decisions: int
    outcomes: dict[str, int]
    vetoes: dict[str, int]
    last_error: str | None
    limits: Limits


class OrderOut(BaseModel):
    """An order as the API promises it: its own model, so the paper venue's checkpoint can
    change without changing what clients parse."""

    client_order_id: str
    decision_id: str
    symbol: str
    side: str
    order_type: str
    quantity: str
    status: str
    filled_quantity: float
    average_price: float | None
    reason: str | None
    stop_loss: float | None
    take_profit: float | None
    accepted_ms: int
    updated_ms: int


class DecisionOut(BaseModel):
    """A decision as recorded (invariant 4), with the gate's verdict and its reasons."""

    decision_id: str
    run_id: str
    mode: str
    symbol: str
    decided_ms: int
    outcome: str
    model: str
    prompt_version: str
    signal: dict[str, Any] | None
    verdict: dict[str, Any] | None
    order: dict[str, Any] | None
    abstain: dict[str, Any] | None


class HaltRequest(BaseModel):
    """A misspelt field is refused, not dropped: the halt would go on record without its reason."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("halted through the API", min_length=1, max_length=200)


class ResumeRequest(BaseModel):
    """Why trading resumes, kept on record with who did it (as `agent-trade resume --reason`)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("resumed through the API", min_length=1, max_length=200)


class HaltOut(BaseModel):
    account: str
    trading_state: str
    kill_switch_file: bool
    message: str
