"""What an `agent-backtest` of US stocks adds to a crypto run: the symbols' asset class, the
whole file as the default window, equity order rules, 252 sessions a year, the SEC and FINRA
fees, and the XNYS hours the runner fills in."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import UserError
from execution.equity_fees import EquityFees
from execution.fees import FeeSchedule
from market.instruments import (
    AssetClass,
    EquityRules,
    equity_rules,
    parse_instrument,
    require_class,
)
from market.models import INTERVAL_MS, iso_ms
from runtime.hours import TradingHours
from store import Store
from venues.names import none_named

if TYPE_CHECKING:  # the caller's: agent-trade's flags load without pandas
    import pandas as pd

    from backtest.config import BacktestConfig
    from config import Settings
    from market.corporate import CorporateActions

SESSIONS_PER_YEAR = 252
CRYPTO_ONLY = ("fee_bps", "maker_bps")


def add_equity_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("US stocks (docs/stocks.md)")
    group.add_argument(
        "--extended-hours",
        action="store_true",
        help="fill in the pre- and post-market too (setting equity.extended_hours)",
    )


def parse_symbols(raw: str) -> tuple[list[str], AssetClass]:
    """The symbols and their one asset class; a run mixing stocks and coins says so."""
    parsed = [parse_instrument(s) for s in raw.split(",") if s.strip()]
    if not parsed:
        raise none_named(raw)
    classes = {c for _, c in parsed}
    if len(classes) > 1:
        raise UserError(
            f"{raw!r} mixes US stocks and crypto pairs: they trade on different hours and "
            "accounts, so backtest them separately"
        )
    return [s for s, _ in parsed], classes.pop() if classes else AssetClass.CRYPTO


def check_stock_trade(args: argparse.Namespace, symbols: list[str]) -> None:
    """agent-trade takes stocks from Alpaca (paper, its paper account, live), or on a paper
    account replaying the user's file or the store's bars: Binance and Bybit trade crypto
    only."""
    if args.feed not in ("replay", "alpaca") or (args.feed == "replay" and args.mode != "paper"):
        venue = args.feed if args.feed != "replay" else "binance"
        require_class(symbols[0], AssetClass.CRYPTO, venue)
    if args.fee_bps is not None:
        raise UserError(
            "--fee-bps is a crypto fee; US stocks pay a commission and the SEC and FINRA fees "
            "set in equity.fees (config)"
        )


def stock_rules(frames: Mapping[str, pd.DataFrame]) -> dict[str, EquityRules]:
    """Each stock's order rules at its last price in the file."""
    return {s: equity_rules(s, float(f["close"].iloc[-1])) for s, f in frames.items()}


def check_flags(typed: set[str], args: argparse.Namespace, kind: AssetClass) -> None:
    """Flags that belong to the other asset class exit 2 instead of being ignored."""
    if kind is AssetClass.CRYPTO:
        if "extended_hours" in typed:
            raise UserError("--extended-hours applies to US stocks only; crypto trades 24/7")
        return
    for name in CRYPTO_ONLY:
        if name in typed:
            raise UserError(
                f"--{name.replace('_', '-')} is a crypto fee; US stocks pay a commission and the "
                "SEC and FINRA fees set in equity.fees (config)"
            )


def no_stock_bars(symbol: str, interval: str) -> UserError:
    return UserError(
        "US stocks need --data FILE (a Yahoo/yfinance or backtesting.py CSV) or bars imported "
        f"with `agent-data import FILE --symbol {symbol} --interval {interval}`: no {symbol} "
        f"{interval} bars in the store, and no stock data is bundled or downloaded"
    )


def equity_interval(
    args: argparse.Namespace,
    typed: set[str],
    interval: str,
    store: Store,
    symbol: str,
    exchange: str,
) -> str:
    """A stock's bar interval: as --interval says, else read from the CSV, else the one the
    store holds for the symbol (if it holds exactly one)."""
    if "interval" in typed:
        return interval
    if args.data is not None:
        from market.csv_import import sniff_interval  # pandas: only to read the CSV

        return sniff_interval(args.data)
    from store.candles import summarize  # pandas: only when a stock's bars come from the store

    stored = {s.interval for s in summarize(store, symbol) if s.exchange == exchange}
    return stored.pop() if len(stored) == 1 else interval


def whole_file(
    args: argparse.Namespace, interval: str, store: Store, symbol: str, exchange: str
) -> None:
    """With no --days or --start, a stock CSV (or the store's bars of the stock) is backtested
    whole (a crypto CSV keeps the last 3 days, as before)."""
    if args.days is not None or args.start is not None:
        return
    if args.data is not None:
        from market.source import load_csv_candles  # pandas: only a stock backtest's CSV

        frame = load_csv_candles(args.data, interval, lambda _line: None, bars_only=True)
        first, last = int(frame["open_time"].iloc[0]), int(frame["open_time"].iloc[-1])
    else:
        from store.candles import summarize  # pandas: only when a stock's bars come from the store

        series = [
            s for s in summarize(store, symbol) if s.interval == interval and s.exchange == exchange
        ]
        if not series:
            raise no_stock_bars(symbol, interval)
        first, last = series[0].first_open_ms, series[0].last_open_ms
    args.start = iso_ms(first).replace(" ", "T")
    args.end = iso_ms(last + INTERVAL_MS[interval]).replace(" ", "T")


@dataclass(frozen=True)
class EquityRun:
    rules: dict
    config: BacktestConfig
    fees: EquityFees
    hours: TradingHours
    actions: CorporateActions


def equity_run(
    args: argparse.Namespace,
    settings: Settings,
    frames: Mapping[str, pd.DataFrame],
    config: BacktestConfig,
    interval: str,
    note: Callable[[str], None],
    store: Store,
) -> EquityRun:
    """Rules at each stock's last price, 252 sessions a year, no crypto fee (the equity fees
    are charged per fill instead), and the hours orders fill in."""
    import numpy as np  # pandas and numpy load with a stock run, not with the flags

    from market.calendar import DAY_MS, xnys
    from market.corporate import CorporateActions, read_actions
    from store.corporate import load_actions

    equity = settings.equity
    hours = TradingHours(
        INTERVAL_MS[interval], equity.hours(extended_hours=args.extended_hours), xnys()
    )
    for symbol, frame in frames.items():
        note(session_line(symbol, frame, hours))
    if args.data is not None:
        actions = CorporateActions({s: read_actions(args.data, interval) for s in frames})
        note(corporate_line(actions))
    else:
        actions = CorporateActions({s: load_actions(store, s, interval) for s in frames})
        note(corporate_line(actions, "the store"))
    intraday = INTERVAL_MS[interval] < DAY_MS
    opens = np.unique(np.concatenate([f["open_time"].to_numpy() for f in frames.values()]))
    return EquityRun(
        rules=stock_rules(frames),
        config=config.model_copy(
            update={
                "periods_per_year": SESSIONS_PER_YEAR,
                "bars_per_session": round(hours.sessions.bars_per_session(opens), 2)
                if intraday
                else None,
                "fees": FeeSchedule(maker=0.0, taker=0.0),
            }
        ),
        fees=equity.fees,
        hours=hours,
        actions=actions,
    )


def session_line(symbol: str, frame: pd.DataFrame, hours: TradingHours) -> str:
    """How many bars fall in regular hours, in the pre/post-market and outside any session."""
    opens = frame["open_time"].to_numpy()
    sessions = hours.sessions
    regular = sessions.regular(opens, hours.interval_ms)
    extended = sessions.extended(opens, hours.interval_ms) & ~regular
    outside = ~(regular | extended)
    fills = "regular and extended hours" if hours.config.extended_hours else "regular hours"
    return (
        f"notice: {symbol}: {int(regular.sum()):,} bars in regular hours, "
        f"{int(extended.sum()):,} pre/post-market, {int(outside.sum()):,} outside any XNYS "
        f"session; orders fill in {fills}; prices are raw (as printed, not adjusted)"
    )


def corporate_line(actions: CorporateActions, source: str = "the file") -> str:
    """Whether the account follows splits and dividends, and where it learnt them."""
    if not actions:
        return f"notice: no split or dividend in {source}: none applied"
    counts = actions.counts()
    return (
        f"notice: {counts['splits']} split(s) and {counts['dividends']} dividend(s) from "
        f"{source} applied to the account at their ex-dates; indicators read adjusted prices"
    )


def kept_line(actions: CorporateActions) -> str:
    """What `agent-data import` kept of a stock file's splits and dividends."""
    counts = actions.counts()
    return (
        f"notice: kept {counts['splits']} split(s) and {counts['dividends']} dividend(s) "
        "beside the raw bars; a backtest on the store applies them as one on the file does"
    )
