"""Candle layout, symbol and interval parsing, and exchange symbol rules."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from core.errors import UserError

EXCHANGE = "binance"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as UTC "YYYY-MM-DD HH:MM", in whole-number arithmetic without pandas:
    status, flags and logs format times without loading it."""
    return (_EPOCH + timedelta(milliseconds=int(ms))).strftime("%Y-%m-%d %H:%M")


# The times a user may ask about. Stock CSVs reach back decades, so the floor is the epoch
# rather than Bitcoin's first block; the ceiling keeps spans and formatting far from the
# year-9999 edge where datetime and pandas arithmetic overflow.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def moment_ms(moment: datetime, what: str) -> int:
    """An aware time as epoch ms, or a UserError naming `what` when it is outside the range
    any market data can lie in (checked before converting: far dates overflow)."""
    if not EARLIEST <= moment < LATEST:
        raise UserError(
            f"{what} {moment.isoformat()} is out of range: "
            f"times go from {EARLIEST:%Y-%m-%d} to before {LATEST:%Y-%m-%d} (UTC)"
        )
    return (moment - _EPOCH) // timedelta(milliseconds=1)


# One row per bar, times in epoch milliseconds UTC (Binance's kline layout, named).
CANDLE_COLUMNS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_volume",
    "taker_buy_quote_volume",
)
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")

_MINUTE = 60_000
INTERVAL_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": _MINUTE,
    "3m": 3 * _MINUTE,
    "5m": 5 * _MINUTE,
    "15m": 15 * _MINUTE,
    "30m": 30 * _MINUTE,
    "1h": 60 * _MINUTE,
    "2h": 120 * _MINUTE,
    "4h": 240 * _MINUTE,
    "6h": 360 * _MINUTE,
    "8h": 480 * _MINUTE,
    "12h": 720 * _MINUTE,
    "1d": 1440 * _MINUTE,
    "3d": 3 * 1440 * _MINUTE,
    "1w": 7 * 1440 * _MINUTE,
}
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{5,20}$")


def parse_symbol(raw: str) -> str:
    """Normalise a Binance spot symbol (`btcusdt` -> `BTCUSDT`) or say what is wrong."""
    symbol = raw.strip().upper()
    if not _SYMBOL_RE.match(symbol):
        raise UserError(
            f"invalid symbol {raw!r}: expected a Binance spot symbol such as BTCUSDT "
            "(5-20 letters or digits, no separators)"
        )
    return symbol


def parse_interval(raw: str) -> str:
    """Accept only intervals with a fixed length, so gaps and bar times are well defined."""
    if raw not in INTERVAL_MS:
        raise UserError(f"invalid interval {raw!r}: expected one of {', '.join(INTERVAL_MS)}")
    return raw


def interval_ms(interval: str) -> int:
    return INTERVAL_MS[parse_interval(interval)]


class Candle(BaseModel):
    """One closed bar at an API boundary (tools, WebSocket); bulk paths use DataFrames."""

    model_config = ConfigDict(frozen=True)

    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    close_time: int
    quote_volume: float = 0.0
    trades: int = 0
    taker_buy_volume: float = 0.0
    taker_buy_quote_volume: float = 0.0


class SymbolRules(BaseModel):
    """Exchange filters an order must satisfy; prices and sizes stay Decimal at this boundary."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    base_asset: str
    quote_asset: str
    status: str = "TRADING"
    tick_size: Decimal
    min_price: Decimal = Decimal(0)
    max_price: Decimal = Decimal(0)
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    max_notional: Decimal | None = None

    @classmethod
    def from_exchange_info(cls, entry: dict[str, Any]) -> SymbolRules:
        """Parse one `symbols[]` entry; NOTIONAL (current) wins over legacy MIN_NOTIONAL."""
        filters = {f["filterType"]: f for f in entry.get("filters", [])}
        try:
            price = filters["PRICE_FILTER"]
            lot = filters["LOT_SIZE"]
        except KeyError as missing:
            raise ValueError(
                f"{entry.get('symbol')}: exchangeInfo lacks filter {missing}"
            ) from None
        notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
        max_notional = notional.get("maxNotional")
        return cls(
            symbol=entry["symbol"],
            base_asset=entry["baseAsset"],
            quote_asset=entry["quoteAsset"],
            status=entry.get("status", "TRADING"),
            tick_size=Decimal(price["tickSize"]),
            min_price=Decimal(price.get("minPrice", "0")),
            max_price=Decimal(price.get("maxPrice", "0")),
            step_size=Decimal(lot["stepSize"]),
            min_qty=Decimal(lot["minQty"]),
            max_qty=Decimal(lot["maxQty"]),
            min_notional=Decimal(notional.get("minNotional", "0")),
            max_notional=Decimal(max_notional) if max_notional is not None else None,
        )

    def floor_qty(self, qty: Decimal) -> Decimal:
        """Round a quantity down to stepSize: never buy or sell more than asked."""
        return _floor_to(qty, self.step_size)

    def floor_price(self, price: Decimal) -> Decimal:
        return _floor_to(price, self.tick_size)

    def violations(self, qty: Decimal, price: Decimal) -> list[str]:
        """Why an order of `qty` at `price` would be rejected by the exchange (empty if valid)."""
        problems: list[str] = []
        if qty != self.floor_qty(qty):
            problems.append(f"quantity {qty} is not a multiple of stepSize {self.step_size}")
        if price != self.floor_price(price):
            problems.append(f"price {price} is not a multiple of tickSize {self.tick_size}")
        if qty < self.min_qty:
            problems.append(f"quantity {qty} is below minQty {self.min_qty}")
        if qty > self.max_qty:
            problems.append(f"quantity {qty} is above maxQty {self.max_qty}")
        notional = qty * price
        if notional < self.min_notional:
            problems.append(f"notional {notional} is below minNotional {self.min_notional}")
        if self.max_notional is not None and notional > self.max_notional:
            problems.append(f"notional {notional} is above maxNotional {self.max_notional}")
        return problems


def _floor_to(value: Decimal, step: Decimal) -> Decimal:
    if step <= 0:
        return value
    return ((value / step).to_integral_value(rounding=ROUND_DOWN) * step).normalize()
