"""The bars `agent-backtest` runs on: the window asked for (--days, or --start/--end), from a
CSV, the store, Binance or the bundled sample; coarser intervals resampled from stored 1m bars
(closed buckets only) when nothing stores them; and a warning when less came back than asked."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import BaseModel

from agent.cli.backtest_flags import DEFAULT_DAYS, check_days, check_range
from agent.cli.common import parse_utc
from agent.cli.equity import no_stock_bars
from config import Settings
from core.clock import SystemClock
from core.errors import UserError
from market.instruments import STOCK_EXCHANGE, AssetClass, asset_class
from market.models import EXCHANGE, INTERVAL_MS, SymbolRules, iso_ms
from market.resample import RESAMPLED
from market.rules_cache import exchange_rules
from market.source import DAY_MS, CandleSource, load_csv_candles
from runtime.warmup import WARMUP_BARS, warmup_start
from store import Store
from store.candles import load_candles
from store.resample import resample_stored

if TYPE_CHECKING:  # the HTTP clients load only when an exchange is asked
    from venues.base import MarketData

Notify = Callable[[str], None]


class Window(BaseModel):
    """What was asked for and what the data delivered; both go into the JSON report."""

    requested: str
    requested_days: float
    delivered_days: float
    delivered_first_bar: str
    delivered_last_bar: str
    short: bool


def _span(args: argparse.Namespace, interval: str) -> tuple[str, dict[str, float | int]]:
    """The request as words and as CandleSource arguments."""
    if args.start is not None:
        if not args.end:
            raise UserError("--start needs --end")
        start = parse_utc(args.start, "--start")
        end = parse_utc(args.end, "--end")
        check_range(start, end, interval, f"--start {args.start}", f"--end {args.end}")
        return f"{args.start} → {args.end}", {
            "start_ms": start,
            "end_ms": end - INTERVAL_MS[interval],
        }
    days = check_days(DEFAULT_DAYS if args.days is None else args.days, interval)
    return f"the last {days:g} days", {"days": days}


def _csv(
    args: argparse.Namespace, interval: str, span: dict, notify: Notify, stock: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The file's bars in the window, and its warm-up before them."""
    whole = load_csv_candles(args.data, interval, notify, stock=stock, bars_only=True)
    frame, warmup = window_of(whole, span)
    if frame.empty:
        raise UserError(f"{args.data} has no bars in the window asked for")
    return frame, warmup


def window_of(whole: pd.DataFrame, span: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The bars of `span` in `whole` and the warm-up before them: a file's, a stock's stored
    bars and the UI's frames are cut alike, so each front end runs the same bars."""
    frame = _trim(whole, span)
    return frame, _before(whole, frame) if len(frame) else frame


def _trim(frame: pd.DataFrame, span: dict) -> pd.DataFrame:
    """The bars of `span`: the last N days of the data, or --start to --end; times are in
    order, so the window is a slice, not a copy."""
    if frame.empty:
        return frame
    times = frame["open_time"].to_numpy()
    if "days" in span:
        first = np.searchsorted(times, int(times[-1]) - int(span["days"] * DAY_MS), "right")
        frame = frame.iloc[first:]
    else:
        first = np.searchsorted(times, span["start_ms"], "left")
        frame = frame.iloc[first : np.searchsorted(times, span["end_ms"], "right")]
    return frame.reset_index(drop=True)


def _before(frame: pd.DataFrame, window: pd.DataFrame) -> pd.DataFrame:
    """The rows of `frame` before `window`'s first bar that warm the run up, as the paper
    loop's history does (runtime.warmup); none when the window starts at the first row."""
    times = frame["open_time"].to_numpy()
    first = int(window["open_time"].iloc[0])
    stop = int(np.searchsorted(times, first, "left"))
    return frame.iloc[warmup_start(times, first) : stop].reset_index(drop=True)


def _stored_before(
    source: CandleSource, store: Store, symbol: str, interval: str, window: pd.DataFrame
) -> pd.DataFrame:
    """The warm-up before a stored or fetched window, else resampled from the 1m bars before
    it, as the window itself is (`stored_bars`); none where neither has it."""
    first = int(window["open_time"].iloc[0])
    try:
        warmup = source.before(symbol, interval, first, WARMUP_BARS)
        if len(warmup) or interval not in RESAMPLED:
            return warmup
        per_bar = INTERVAL_MS[interval] // INTERVAL_MS["1m"]
        minutes = source.before(symbol, "1m", first, WARMUP_BARS * per_bar)
    except UserError:
        return window.iloc[:0]
    if minutes.empty:
        return window.iloc[:0]
    start, end = int(minutes["open_time"].iloc[0]), int(minutes["open_time"].iloc[-1])
    frame = resample_stored(store, symbol, interval, start, end, loaded=minutes)
    return frame[frame["open_time"] < first].tail(WARMUP_BARS).reset_index(drop=True)


def candle_source(
    settings: Settings, store: Store, notify: Notify, exchange: str = EXCHANGE
) -> CandleSource:
    """The store, then the exchange's API (unless offline), then (Binance only) the bundled
    sample: every front end's data resolution."""
    factory = None
    if not settings.offline:

        def factory() -> MarketData:
            from venues.registry import market_data

            return market_data(exchange, settings, cache_dir=settings.data_dir / "http-cache")

    return CandleSource(store, SystemClock(), notify, factory, exchange=exchange)


def venue_rules(
    settings: Settings,
    store: Store,
    symbols: list[str],
    notify: Notify,
    exchange: str = EXCHANGE,
) -> dict[str, SymbolRules]:
    """The exchange's rules for `symbols`, through the store's daily cache."""
    fetch = None
    if not settings.offline:

        def fetch(wanted: list[str]) -> dict[str, SymbolRules]:
            from venues.registry import market_data

            with market_data(exchange, settings) as client:
                return client.rules(wanted)

    return exchange_rules(store, exchange, symbols, SystemClock().now_ms(), fetch, notify)


def stored_bars(
    source: CandleSource, store: Store, symbol: str, interval: str, span: dict, notify: Notify
):
    """The interval as stored or fetched; else resampled from the 1m bars `source` brought
    into the store (in SQL on TimescaleDB), as the UI's charts are."""
    try:
        return source.get(symbol, interval, **span)
    except UserError:
        if interval not in RESAMPLED:
            raise
    wanted = dict(span)  # the last bucket's own minutes, up to its close, not just its open
    if "end_ms" in span:
        wanted["end_ms"] = span["end_ms"] + INTERVAL_MS[interval] - INTERVAL_MS["1m"]
    minutes = source.get(symbol, "1m", **wanted)
    first, last = int(minutes["open_time"].iloc[0]), int(minutes["open_time"].iloc[-1])
    frame = resample_stored(store, symbol, interval, first, last, loaded=minutes)
    if frame.empty:
        raise UserError(f"no closed {interval} bar of {symbol} in the window asked for")
    notify(f"notice: no {symbol} {interval} bars stored; resampled from 1m (closed bars only)")
    return frame


def load_frames(
    args: argparse.Namespace,
    settings: Settings,
    store: Store,
    symbols: list[str],
    interval: str,
    notify: Notify,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], Window]:
    """Each symbol's bars in the window asked for, the warm-up before them (up to the paper
    loop's WARMUP_BARS, where the data has them), and what the window delivered."""
    asked, span = _span(args, interval)
    if args.data is not None:
        if len(symbols) != 1:
            raise UserError("--data reads one symbol's bars: give a single --symbol")
        stock = asset_class(symbols[0]) is AssetClass.EQUITY
        frame, warm = _csv(args, interval, span, notify, stock)
        frames, warmup = {symbols[0]: frame}, {symbols[0]: warm}
    elif asset_class(symbols[0]) is AssetClass.EQUITY:  # stored bars only: none to download
        exchange = getattr(args, "exchange", None) or STOCK_EXCHANGE
        both = {s: _stored_stock(store, s, interval, span, exchange) for s in symbols}
        frames = {s: frame for s, (frame, _) in both.items()}
        warmup = {s: warm for s, (_, warm) in both.items()}
    else:
        source = candle_source(settings, store, notify, getattr(args, "exchange", EXCHANGE))
        frames = {s: stored_bars(source, store, s, interval, span, notify) for s in symbols}
        warmup = {s: _stored_before(source, store, s, interval, f) for s, f in frames.items()}
    return frames, warmup, _window(frames, interval, asked, span, notify)


def with_warmup(
    frames: dict[str, pd.DataFrame], warmup: dict[str, pd.DataFrame]
) -> dict[str, pd.DataFrame]:
    """Each symbol's warm-up, then its window: the bars an agent's tools read, as the paper
    loop's read its history before the bars it steps."""
    return {s: pd.concat([warmup[s], f], ignore_index=True) for s, f in frames.items()}


def _stored_stock(
    store: Store, symbol: str, interval: str, span: dict, exchange: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame, warmup = window_of(load_candles(store, symbol, interval, exchange=exchange), span)
    if frame.empty:
        raise no_stock_bars(symbol, interval)
    return frame, warmup


def _window(
    frames: dict[str, pd.DataFrame], interval: str, asked: str, span: dict, notify: Notify
) -> Window:
    step = INTERVAL_MS[interval]
    wanted = span["days"] * DAY_MS if "days" in span else span["end_ms"] + step - span["start_ms"]
    first = max(int(f["open_time"].iloc[0]) for f in frames.values())
    last = min(int(f["open_time"].iloc[-1]) for f in frames.values())
    got = last + step - first
    window = Window(
        requested=asked,
        requested_days=round(wanted / DAY_MS, 6),
        delivered_days=round(got / DAY_MS, 6),
        delivered_first_bar=iso_ms(first),
        delivered_last_bar=iso_ms(last),
        short=got + step < wanted,
    )
    if window.short:
        notify(
            f"warning: asked for {asked}; the data has {window.delivered_days:.3g} days, "
            f"{iso_ms(first)} → {iso_ms(last)} UTC"
        )
    return window
