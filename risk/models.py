"""Typed boundary of the risk layer: signals in, verdicts out, and the views the gate reads."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from market.models import SymbolRules


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class SignalSource(StrEnum):
    """Limits can differ by source: an unattended AI gets tighter defaults than a strategy.
    A person's orders in the chat are the model's proposals a person approved: `AI`."""

    AI = "ai"
    STRATEGY = "strategy"


class SignalAction(StrEnum):
    BUY = "buy"  # open or add to a long (or cover a short)
    SELL = "sell"  # reduce a long (or open a short when shorting is allowed)
    CLOSE = "close"  # flatten the position
    HOLD = "hold"  # no order


class TradeSignal(BaseModel):
    """A proposal, never an order. Floats may be garbage (NaN, inf, <0): the gate vetoes those."""

    model_config = ConfigDict(frozen=True)

    decision_id: str
    source: SignalSource
    symbol: str
    action: SignalAction
    order_type: OrderType = OrderType.MARKET
    quantity: float | None = None  # base units asked for; None lets the gate size it
    size_pct: float | None = None  # fraction of equity asked for (0-1); alternative to quantity
    limit_price: float | None = None
    stop_price: float | None = None  # trigger of STOP / STOP_LIMIT orders
    stop_loss: float | None = None
    take_profit: float | None = None
    # A trailing stop for a long entry: a fraction below the highest high since the fill
    # (0.02 = 2%), or that many ATRs, which the gate turns into a fraction of the entry price.
    trailing_stop_pct: float | None = None
    trailing_stop_atr: float | None = None
    confidence: float = 1.0
    # Share of K samples of the model that voted for this action (--samples K); None when the
    # decision was asked once. The gate reads it only with risk.size_by_agreement.
    agreement: float | None = None
    horizon_minutes: int | None = None
    rationale: str = ""
    created_ms: int
    # A close that executes a stop or target set while entering (Binance spot has no bracket
    # order, so the loop watches them): it passes a HALTED lock, as a resting exchange stop would.
    protective: bool = False
    # A leg that reverses what an earlier order of the same unit left open (an arbitrage pair's
    # lone leg): it takes risk off, so the entry rate limits record it (UNWIND) and let it pass.
    unwinds: bool = False


class PositionView(BaseModel):
    model_config = ConfigDict(frozen=True)

    quantity: float  # signed: > 0 long, < 0 short
    avg_price: float


class Elsewhere(BaseModel):
    """The same portfolio's other venues, in this account's quote currency (risk.usd): their
    equity and their positions' gross value, which exposure limits count with this account's."""

    model_config = ConfigDict(frozen=True)

    equity: float
    exposure: float
    venues: list[str] = Field(default_factory=list)


class PortfolioView(BaseModel):
    """What the gate may know about the account at decision time."""

    model_config = ConfigDict(frozen=True)

    cash: float  # free quote currency (USDT)
    equity: float
    peak_equity: float
    day_start_equity: float
    positions: dict[str, PositionView] = Field(default_factory=dict)
    elsewhere: Elsewhere | None = None  # None: this account is the whole portfolio


class MarketView(BaseModel):
    """The latest closed bar's facts for one symbol, plus the book when one is known."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    last_price: float
    data_time_ms: int  # close time of the newest bar the decision saw
    atr: float | None = None
    best_bid: float | None = None
    best_ask: float | None = None
    rules: SymbolRules


class ReasonCode(StrEnum):
    """Stable codes for vetoes and adjustments; reports group by these, so never rename one."""

    INVALID_SIGNAL = "INVALID_SIGNAL"
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    HOLD = "HOLD"
    KILL_SWITCH = "KILL_SWITCH"
    HALTED = "HALTED"
    REDUCING = "REDUCING"
    SAFE_MODE = "SAFE_MODE"
    DAILY_LOSS = "DAILY_LOSS"
    MAX_DRAWDOWN = "MAX_DRAWDOWN"
    COOLDOWN = "COOLDOWN"
    LOW_CONFIDENCE = "LOW_CONFIDENCE"
    NO_STOP_LOSS = "NO_STOP_LOSS"
    ATR_STOP = "ATR_STOP"
    BAD_STOP = "BAD_STOP"
    STALE_DATA = "STALE_DATA"
    WIDE_SPREAD = "WIDE_SPREAD"
    FAT_FINGER = "FAT_FINGER"
    RATE_LIMIT = "RATE_LIMIT"
    UNWIND = "UNWIND"  # an unwinding leg passed the order-rate limit that would veto an entry
    NO_POSITION = "NO_POSITION"
    SHORT_NOT_ALLOWED = "SHORT_NOT_ALLOWED"
    RISK_SIZED = "RISK_SIZED"
    CONFIDENCE_SCALED = "CONFIDENCE_SCALED"
    LOW_AGREEMENT = "LOW_AGREEMENT"
    AGREEMENT_SCALED = "AGREEMENT_SCALED"
    MAX_POSITION = "MAX_POSITION"
    MAX_EXPOSURE = "MAX_EXPOSURE"
    MAX_ORDER_NOTIONAL = "MAX_ORDER_NOTIONAL"
    INSUFFICIENT_CASH = "INSUFFICIENT_CASH"
    STEP_SIZE = "STEP_SIZE"
    TICK_SIZE = "TICK_SIZE"
    MIN_QTY = "MIN_QTY"
    MAX_QTY = "MAX_QTY"
    MIN_NOTIONAL = "MIN_NOTIONAL"
    INVALID_MARKET = "INVALID_MARKET"
    INVALID_PORTFOLIO = "INVALID_PORTFOLIO"
    REDUCE_ONLY = "REDUCE_ONLY"
    MAX_OPEN_POSITIONS = "MAX_OPEN_POSITIONS"
    PYRAMIDING = "PYRAMIDING"
    TRAILING_STOP = "TRAILING_STOP"
    MARKET_CLOSED = "MARKET_CLOSED"


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: ReasonCode
    message: str


class ApprovedOrder(BaseModel):
    """An order the gate approved. Its seal is a MAC only the gate can make, so executors
    can refuse hand-built or altered orders (see `risk.approval.verify_approved`)."""

    model_config = ConfigDict(frozen=True)

    client_order_id: str
    decision_id: str
    symbol: str
    side: Side
    order_type: OrderType
    quantity: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_stop_pct: Decimal | None = None
    reduce_only: bool = False
    source: SignalSource
    created_ms: int
    seal: str


class Approved(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["approved"] = "approved"
    order: ApprovedOrder
    adjustments: list[Reason] = Field(default_factory=list)


class Vetoed(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["vetoed"] = "vetoed"
    reasons: list[Reason]


Verdict = Annotated[Approved | Vetoed, Field(discriminator="kind")]
