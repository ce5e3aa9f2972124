"""The venues a trading loop runs on, built from settings: a paper account filled by the
backtest's fill model, or Binance (testnet, live) through the signed executor. Front ends
compose these factories and never reach into an executor."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from config import Settings
from core.errors import UserError
from execution.binance_executor import BinanceExecutor, check_live_allowed
from execution.binance_venue import BinanceVenue
from execution.fees import FeeFn
from execution.key_permissions import check_key
from execution.paper import GrowingFeed, PaperExecutor, PaperOrder
from execution.paper_records import save_orders
from execution.slippage import Slippage
from market.binance_rest import BinanceError
from market.models import SymbolRules
from store.db import Store
from venues.bybit.key_info import check_bybit_key
from venues.bybit.rest import BybitError
from venues.bybit.trading import BybitExecutor

VenueFactory = Callable[[float, GrowingFeed], Any]

__all__ = [
    "VenueFactory",
    "binance_venue",
    "bybit_venue",
    "check_live_allowed",
    "paper_venue",
    "reconcile",
]


def paper_venue(
    rules: Mapping[str, SymbolRules],
    *,
    fees: FeeFn,
    slippage: Slippage,
    symbol_slippage: Mapping[str, Slippage] | None = None,
) -> VenueFactory:
    """A paper account: starting cash and the loop's feed in, the fill model out."""

    def make(cash: float, feed: GrowingFeed) -> PaperExecutor:
        return PaperExecutor(
            rules, feed, cash=cash, fees=fees, slippage=slippage, symbol_slippage=symbol_slippage
        )

    return make


def binance_venue(
    settings: Settings,
    mode: str,
    symbols: list[str],
    store: Store,
    account: str,
    notify: Callable[[str], None],
) -> tuple[dict[str, SymbolRules], VenueFactory]:
    """The signed executor for testnet (default URL) or live, after the key's permissions are
    checked; the exchange's own rules for `symbols`; and the venue it backs, which writes each
    order to the store ahead of its request."""
    executor = BinanceExecutor(
        settings.binance_api_key,
        settings.binance_api_secret,
        live=mode == "live",
        live_confirmed=mode == "live",  # check_live_allowed passed
        base_url=settings.binance.trade_url,
        timeout_s=settings.binance.timeout_s,
        max_attempts=settings.binance.max_retries + 1,
        max_retry_after_s=settings.binance.max_retry_after_s,
    )
    try:
        check_key(executor.api_restrictions, mode, store, account, int(time.time() * 1000), notify)
        rules = {s: executor.symbol_rules(s) for s in symbols}
    except BinanceError as exc:
        raise UserError(f"cannot start on Binance {mode} ({executor.base_url}): {exc}") from None

    return rules, _signed_venue(executor, rules, store, account, "Binance")


def bybit_venue(
    settings: Settings,
    mode: str,
    symbols: list[str],
    store: Store,
    account: str,
    notify: Callable[[str], None],
) -> tuple[dict[str, SymbolRules], VenueFactory]:
    """Bybit's signed executor for testnet (default URL) or live, after the key's permissions
    are checked (on testnet too: Bybit's testnet answers the query), its rules for `symbols`,
    and the venue it backs, journaling each order ahead of its request as for Binance."""
    executor = BybitExecutor(
        settings.bybit_api_key,
        settings.bybit_api_secret,
        live=mode == "live",
        live_confirmed=mode == "live",  # check_live_allowed passed
        base_url=settings.bybit.trade_url,
        timeout_s=settings.bybit.timeout_s,
        max_attempts=settings.bybit.max_retries + 1,
        max_retry_after_s=settings.bybit.max_retry_after_s,
    )
    try:
        check_bybit_key(executor.api_key_info, mode, notify)
        rules = {s: executor.symbol_rules(s) for s in symbols}
    except BybitError as exc:
        raise UserError(f"cannot start on Bybit {mode} ({executor.base_url}): {exc}") from None
    return rules, _signed_venue(executor, rules, store, account, "Bybit")


def _signed_venue(
    executor: BinanceExecutor | BybitExecutor,
    rules: dict[str, SymbolRules],
    store: Store,
    account: str,
    exchange: str,
) -> VenueFactory:
    """The loop's venue over a signed executor, writing each order to the store first."""

    def journal(order: PaperOrder) -> None:
        save_orders(store, account, [order])

    def make(cash: float, feed: GrowingFeed) -> BinanceVenue:
        return BinanceVenue(executor, rules, feed, cash=cash, journal=journal, exchange=exchange)

    return make


def reconcile(venue: BinanceVenue, mode: str, account: str) -> None:
    """Agree with the exchange before trading: what it holds that the account cannot explain
    stops the start, with nothing sent."""
    findings = venue.reconcile()
    if findings:
        raise UserError(
            f"{venue.exchange} {mode} does not match account {account!r}: "
            + "; ".join(findings)
            + ". Nothing was sent; fix the account or use another --account"
        )
