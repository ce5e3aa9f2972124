"""The venues a trading loop runs on, built from settings: a paper account filled by the
backtest's fill model, or Binance or Bybit (testnet, live) through their signed executors, or
Alpaca's paper (testnet) or live stock account.
Front ends compose these factories and never reach into an executor."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from config import Settings
from core.errors import UserError, VenueError
from execution.fees import FeeFn
from execution.key_permissions import check_key, save_key_check
from execution.paper import GrowingFeed, PaperExecutor, PaperOrder
from execution.paper_records import save_orders
from execution.signed_access import check_live_allowed
from execution.slippage import Slippage
from market.corporate import CorporateActions
from market.models import SymbolRules
from market.rules_cache import exchange_rules
from store.db import Store

if TYPE_CHECKING:  # the signed venues and their HTTP clients load only to trade on one
    from execution.binance_executor import BinanceExecutor
    from execution.binance_venue import BinanceVenue
    from venues.alpaca.broker import AlpacaBroker
    from venues.bybit.trading import BybitExecutor

VenueFactory = Callable[[float, GrowingFeed], Any]

__all__ = [
    "VenueFactory",
    "alpaca_venue",
    "check_live_allowed",
    "paper_venue",
    "reconcile",
    "signed_executor",
    "signed_venue",
]


def paper_venue(
    rules: Mapping[str, SymbolRules],
    *,
    fees: FeeFn,
    slippage: Slippage,
    symbol_slippage: Mapping[str, Slippage] | None = None,
    actions: CorporateActions | None = None,
) -> VenueFactory:
    """A paper account: starting cash and the loop's feed in, the fill model out (with a
    stock's splits and dividends, when its raw prices carry them)."""

    def make(cash: float, feed: GrowingFeed) -> PaperExecutor:
        return PaperExecutor(
            rules,
            feed,
            cash=cash,
            fees=fees,
            slippage=slippage,
            symbol_slippage=symbol_slippage,
            actions=actions,
        )

    return make


def signed_executor(
    exchange: str,
    settings: Settings,
    mode: str,
    symbols: list[str],
    store: Store,
    account: str,
    notify: Callable[[str], None],
) -> tuple[BinanceExecutor | BybitExecutor, dict[str, SymbolRules]]:
    """The signed executor of `exchange` ("binance" or "bybit") for testnet (default URL) or
    live, after the key's permissions are checked, holding the exchange's own rules for
    `symbols` (from the store's daily cache, never the bundled capture)."""
    from execution.binance_executor import BinanceExecutor  # a paper run sends no signed request
    from venues.bybit.key_info import check_bybit_key
    from venues.bybit.trading import BybitExecutor

    bybit = exchange == "bybit"
    venue_settings = settings.bybit if bybit else settings.binance
    key, secret = (
        (settings.bybit_api_key, settings.bybit_api_secret)
        if bybit
        else (settings.binance_api_key, settings.binance_api_secret)
    )
    executor = (BybitExecutor if bybit else BinanceExecutor)(
        key,
        secret,
        live=mode == "live",
        live_confirmed=mode == "live",  # check_live_allowed passed
        base_url=venue_settings.trade_url,
        timeout_s=venue_settings.timeout_s,
        max_attempts=venue_settings.max_retries + 1,
        max_retry_after_s=venue_settings.max_retry_after_s,
    )
    now_ms = int(time.time() * 1000)
    try:
        if isinstance(executor, BybitExecutor):  # Bybit's testnet answers the key query too
            check_bybit_key(
                executor.api_key_info,
                mode,
                notify,
                lambda key: save_key_check(store, account, key, now_ms),
            )
        else:
            check_key(executor.api_restrictions, mode, store, account, now_ms, notify)
        rules = _cached_rules(executor, exchange, mode, symbols, store)
    except VenueError as exc:
        name = "Bybit" if bybit else "Binance"
        raise UserError(f"cannot start on {name} {mode} ({executor.base_url}): {exc}") from None
    return executor, rules


def signed_venue(
    exchange: str,
    settings: Settings,
    mode: str,
    symbols: list[str],
    store: Store,
    account: str,
    notify: Callable[[str], None],
) -> tuple[dict[str, SymbolRules], VenueFactory]:
    """`signed_executor`'s rules, and the venue it backs, which writes each order to the store
    ahead of its request."""
    executor, rules = signed_executor(exchange, settings, mode, symbols, store, account, notify)
    name = "Bybit" if exchange == "bybit" else "Binance"
    return rules, _journalled(executor, rules, store, account, name)


def alpaca_venue(
    settings: Settings,
    mode: str,
    rules: Mapping[str, SymbolRules],
    store: Store,
    account: str,
    notify: Callable[[str], None],
) -> VenueFactory:
    """Alpaca's paper account (`testnet`) or its live one, with the keys from the environment,
    after Alpaca has shown the account: one it blocks from trading stops the start. What it
    showed is kept for `agent-trade status`."""
    from venues.alpaca.account import AlpacaAccountCheck  # a paper run sends no signed request
    from venues.alpaca.broker import AlpacaBroker
    from venues.alpaca.trading import AlpacaPaper
    from venues.registry import alpaca_keys

    alpaca = settings.alpaca
    url = alpaca.live_url if mode == "live" else alpaca.paper_url
    paper = AlpacaPaper(alpaca_keys(settings), base_url=url, timeout_s=alpaca.timeout_s)
    try:
        check = AlpacaAccountCheck(mode=mode, account=paper.account())
    except VenueError as exc:
        raise UserError(f"cannot start on Alpaca {mode} ({url}): {exc}") from None
    save_key_check(store, account, check, int(time.time() * 1000))
    notify(f"key: {check.summary()}")
    if check.account.trading_blocked:
        raise UserError(f"Alpaca {mode} ({url}) blocks this account from trading: nothing sent")
    broker = AlpacaBroker(
        paper, base_url=url, mode=mode, fees=settings.equity.fees, fill_wait_s=alpaca.fill_wait_s
    )
    return _journalled(broker, rules, store, account, "Alpaca")


def _journalled(
    executor: BinanceExecutor | BybitExecutor | AlpacaBroker,
    rules: Mapping[str, SymbolRules],
    store: Store,
    account: str,
    name: str,
) -> VenueFactory:
    """The exchange venue over `executor`, writing each order to the store ahead of its
    request."""
    from execution.binance_venue import BinanceVenue

    def journal(order: PaperOrder) -> None:
        save_orders(store, account, [order])

    def make(cash: float, feed: GrowingFeed) -> BinanceVenue:
        return BinanceVenue(executor, rules, feed, cash=cash, journal=journal, exchange=name)  # type: ignore[arg-type]

    return make


def _cached_rules(
    executor: BinanceExecutor | BybitExecutor,
    exchange: str,
    mode: str,
    symbols: list[str],
    store: Store,
) -> dict[str, SymbolRules]:
    """The venue's own rules through the store's daily cache (testnet's apart from live's),
    handed to the executor so it fetches none per symbol. A signed venue never trades by the
    bundled capture: what the exchange cannot state stops the start."""

    def fetch(wanted: list[str]) -> dict[str, SymbolRules]:
        return {s: executor.symbol_rules(s) for s in wanted}

    cache = exchange if mode == "live" else f"{exchange}-{mode}"
    fallback: list[str] = []
    rules = exchange_rules(store, cache, symbols, int(time.time() * 1000), fetch, fallback.append)
    unknown = [s for s in symbols if s not in rules]
    if fallback or unknown:
        raise VenueError(
            fallback[0].removeprefix("notice: ") if fallback else f"no rules for {unknown}"
        )
    executor.adopt_rules(rules)
    return rules


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
