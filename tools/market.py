"""Market tools: candles, the compact snapshot and indicator values, as of the decision time,
and the order book where a depth stream keeps one."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, WithJsonSchema

from core.errors import UserError
from market.models import interval_ms, iso_ms, moment_ms
from market.snapshot import MarketSnapshot, build_snapshot
from tools.env import ToolEnv
from tools.registry import Tool, ToolError

Interval = Literal["1m", "5m", "15m", "1h", "4h"]
# Checked, but not spelled out in every schema: the tokens go on every call.
Symbol = Annotated[str, Field(max_length=20), WithJsonSchema({"type": "string"})]


def require_symbol(env: ToolEnv, symbol: str, *, venues: bool = False) -> str:
    """The symbol as the data knows it, or an error listing what this run has. `bybit:BTCUSDT`
    names a venue: the run's own is the plain symbol; another venue's bars only where `venues`
    (reading tools), since the run trades on its own exchange alone."""
    venue, _, bare = symbol.strip().rpartition(":")
    venue, wanted = venue.lower(), bare.upper()
    if venue not in ("", env.market.exchange):
        if not venues:
            raise ToolError(
                f"{symbol!r} is on {venue}: this session trades {wanted} on "
                f"{env.market.exchange}; read other venues with get_candles or get_market_snapshot"
            )
        wanted = f"{venue}:{wanted}"
    if wanted not in env.symbols:
        raise ToolError(
            f"unknown symbol {symbol!r}; this session has data for {', '.join(env.symbols)}"
        )
    return wanted


def parse_time(text: str, what: str) -> int:
    try:
        moment = pd.Timestamp(text)
    except ValueError:
        raise ToolError(f"{what} {text!r} is not an ISO time like 2025-10-30T12:00Z") from None
    if moment.tzinfo is None:
        moment = moment.tz_localize("UTC")
    try:
        return moment_ms(moment, what)
    except UserError as exc:
        raise ToolError(str(exc)) from None


class CandlesIn(BaseModel):
    symbol: Symbol
    interval: Interval = "15m"
    limit: int = Field(20, ge=1, le=100)
    end: str | None = Field(None, description="ISO UTC close of the last bar; default now")


class CandlesOut(BaseModel):
    symbol: str
    interval: str
    columns: list[str] = ["close_time", "open", "high", "low", "close", "volume"]
    rows: list[list[str | float]]


def get_candles(env: ToolEnv, args: CandlesIn) -> CandlesOut:
    symbol = require_symbol(env, args.symbol, venues=True)
    end_ms = env.now_ms
    if args.end is not None:
        end_ms = parse_time(args.end, "end")
        if end_ms > env.now_ms:
            raise ToolError(
                f"end {args.end} is after the decision time {iso_ms(env.now_ms)}: "
                "bars after now are not visible"
            )
    frame = env.market.candles(symbol, end_ms)
    if frame.empty:
        first = env.market.frames[symbol]["open_time"].iloc[0]
        raise ToolError(f"no {symbol} bars before {iso_ms(end_ms)}; data starts {iso_ms(first)}")
    # Only the tail that can make `limit` complete bars: resampling all history per call cost
    # more than the rest of a cached decision.
    ratio = max(1, interval_ms(args.interval) // interval_ms(env.market.interval))
    window = frame.tail((args.limit + 2) * ratio)
    bars = _resample(window, env.market.interval, args.interval).tail(args.limit)
    decimals = _price_decimals(env, symbol, float(bars["close"].iloc[-1]))
    rows = [
        [iso_ms(int(r.close_time) + 1)]
        + [round(float(v), decimals) for v in (r.open, r.high, r.low, r.close)]
        + [round(float(r.volume), 3)]
        for r in bars.itertuples(index=False)
    ]
    return CandlesOut(symbol=symbol, interval=args.interval, rows=rows)


def _resample(frame: pd.DataFrame, base: str, target: str) -> pd.DataFrame:
    """Complete target bars only: a bucket is used once every base bar in it has closed.
    numpy's reduceat over sorted buckets: a pandas groupby cost ~10 ms per call."""
    base_ms, step = interval_ms(base), interval_ms(target)
    if step == base_ms:
        return frame
    if step % base_ms:
        raise ToolError(f"cannot build {target} bars from {base} data")
    bucket = frame["open_time"].to_numpy(dtype=np.int64) // step
    if not len(bucket):
        return frame.iloc[:0]
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(bucket)]
    keep = (ends - starts) == step // base_ms
    column = {c: frame[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close")}
    volume = frame["volume"].to_numpy(dtype=np.float64)
    bars = pd.DataFrame(
        {
            "open": column["open"][starts],
            "high": np.maximum.reduceat(column["high"], starts),
            "low": np.minimum.reduceat(column["low"], starts),
            "close": column["close"][ends - 1],
            "volume": np.add.reduceat(volume, starts),
            "close_time": (bucket[starts] + 1) * step - 1,
        }
    )
    return bars[keep].reset_index(drop=True)


def _price_decimals(env: ToolEnv, symbol: str, price: float) -> int:
    """The exchange's tick size when known (0.01 for BTCUSDT), else 8 significant digits (a
    symbol without filters has a tick of 0)."""
    rules = env.rules.get(symbol)
    if rules is not None and rules.tick_size > 0:
        return max(0, -int(rules.tick_size.normalize().as_tuple().exponent))
    if not math.isfinite(price) or price <= 0:
        return 2
    return max(0, 7 - math.floor(math.log10(price)))


class SymbolIn(BaseModel):
    symbol: Symbol


def get_market_snapshot(env: ToolEnv, args: SymbolIn) -> MarketSnapshot:
    symbol = require_symbol(env, args.symbol, venues=True)
    candles = env.market.candles(symbol, env.now_ms)
    if len(candles) < 2:
        raise ToolError(f"not enough {symbol} history before {iso_ms(env.now_ms)} for a snapshot")
    return build_snapshot(
        symbol,
        env.market.interval,
        candles,
        env.market.indicators(symbol, env.now_ms),
        env.market.indicator_config,
    )


class IndicatorsIn(BaseModel):
    symbol: Symbol
    names: list[str] | None = Field(None, description="indicator names; default all")
    last: int = Field(1, ge=1, le=20, description="values per indicator, newest last")


class IndicatorsOut(BaseModel):
    symbol: str
    as_of: str
    values: dict[str, list[float | None]]


def compute_indicators(env: ToolEnv, args: IndicatorsIn) -> IndicatorsOut:
    symbol = require_symbol(env, args.symbol)
    table = env.market.indicators(symbol, env.now_ms)
    available = list(table.columns)
    names = args.names or available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ToolError(
            f"unknown indicator(s) {', '.join(unknown)}; available: {', '.join(available)}"
        )
    tail = table[names].tail(args.last)
    values = {
        n: [None if not math.isfinite(v) else round(float(v), 4) for v in tail[n]] for n in names
    }
    as_of = int(env.market.candles(symbol, env.now_ms)["close_time"].iloc[-1])
    return IndicatorsOut(symbol=symbol, as_of=iso_ms(as_of + 1), values=values)


class OrderBookIn(BaseModel):
    symbol: Symbol
    levels: int = Field(5, ge=1, le=20, description="price levels per side, best first")
    depth_bps: float = Field(10.0, gt=0, le=500, description="depth counted within this of mid")


class OrderBookOut(BaseModel):
    symbol: str
    as_of: str
    age_s: float
    mid: float
    spread_bps: float
    bids: list[list[float]]  # [price, quantity], best first
    asks: list[list[float]]
    depth_bps: float
    bid_depth_quote: float  # quote currency on the bids within depth_bps below the mid
    ask_depth_quote: float


def get_order_book(env: ToolEnv, args: OrderBookIn) -> OrderBookOut:
    symbol = require_symbol(env, args.symbol)
    if env.book is None:
        raise ToolError(
            "no order book in this mode: backtests replay closed bars only; paper and live "
            "trading keep the book from the exchange's depth stream"
        )
    quote = env.book(symbol, levels=args.levels, depth_bps=args.depth_bps)
    if quote is None:
        raise ToolError(
            f"no synced {symbol} order book right now: it is resyncing, or this feed carries "
            f"no depth for {symbol}; use the candles"
        )
    return OrderBookOut(
        symbol=symbol,
        as_of=iso_ms(quote.event_time_ms),
        age_s=quote.age_ms(env.now_ms) / 1000,
        mid=round(quote.mid, 8),
        spread_bps=round(quote.spread_bps, 2),
        bids=[[round(b.price, 8), b.quantity] for b in quote.bids],
        asks=[[round(a.price, 8), a.quantity] for a in quote.asks],
        depth_bps=args.depth_bps,
        bid_depth_quote=round(quote.bid_depth_quote, 2),
        ask_depth_quote=round(quote.ask_depth_quote, 2),
    )


MARKET_TOOLS = (
    Tool(
        "get_candles",
        "Closed OHLCV bars, newest last.",
        CandlesIn,
        CandlesOut,
        get_candles,
    ),
    Tool(
        "get_market_snapshot",
        "Compact summary: last price, returns, volatility, indicators and trend flags.",
        SymbolIn,
        MarketSnapshot,
        get_market_snapshot,
    ),
    Tool(
        "compute_indicators",
        "Latest values of SMA, EMA, RSI, MACD, Bollinger, ATR, VWAP and volume z-score.",
        IndicatorsIn,
        IndicatorsOut,
        compute_indicators,
    ),
    Tool(
        "get_order_book",
        "Live order book: top levels, spread in bps and depth near the mid, with its age.",
        OrderBookIn,
        OrderBookOut,
        get_order_book,
    ),
)
