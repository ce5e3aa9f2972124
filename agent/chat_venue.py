"""Where the chat's approved orders go: the paper venue (the default), or Binance's spot testnet
through the signed executor, with the key's permissions checked as `agent-trade` checks them.
A testnet chat that cannot trade on testnet stops with the reason; it never falls back to paper."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

from agent.chat_market import ChatMarket
from backtest.config import BacktestConfig
from config import Settings
from config.settings import TradingSettings
from core.errors import UserError
from execution.venues import VenueFactory, paper_venue, signed_venue
from market.models import SymbolRules
from market.sample import sample_rules
from risk.limits import RiskLimits
from store import Store

ChatMode = Literal["paper", "testnet"]
CHAT_MODES: tuple[ChatMode, ...] = ("paper", "testnet")


class ChatVenue(NamedTuple):
    """What the chat desk trades with: the exchange rules, the venue, a new account's cash and
    the limits its gate applies."""

    rules: dict[str, SymbolRules]
    venue: VenueFactory
    cash: float
    limits: RiskLimits


def paper_fills(trading: TradingSettings) -> BacktestConfig:
    """`agent-trade`'s paper fill model with no flag given: the settings' cash, fee and
    slippage, from agent-trade's own helper, so the chat's account fills as the loop's does."""
    from agent.cli.trade_flags import parser
    from agent.cli.trade_run import _fills

    args = parser().parse_args([])
    args.cash = trading.cash
    return _fills(args, trading)


def chat_venue(
    settings: Settings,
    mode: ChatMode,
    source: ChatMarket,
    store: Store,
    account: str,
    notify: Callable[[str], None],
) -> ChatVenue:
    """Paper as `agent-trade` trades it (its fee, slippage and the gate's reserve for them), or
    the signed testnet venue with the limits as configured."""
    cash = settings.trading.cash
    if mode == "paper":
        rules = sample_rules()
        fills = paper_fills(settings.trading)
        venue = paper_venue(rules, fees=fills.fees, slippage=fills.slippage)
        return ChatVenue(rules, venue, cash, settings.risk.with_cost_reserve(fills.cost_reserve()))
    require_live(mode, source)
    rules, venue = signed_venue(
        "binance", settings, mode, list(source.frames), store, account, notify
    )
    return ChatVenue(rules, venue, cash, settings.risk)


def require_live(mode: ChatMode, source: ChatMarket) -> None:
    """An exchange mode trades at the venue's last closed bar: the frozen sample cannot."""
    if not source.live:
        raise UserError(
            f"--mode {mode} trades at Binance's last closed bar, but the chat has only the "
            "bundled sample (offline, or Binance market data unreachable): nothing was sent"
        )


def venue_line(mode: ChatMode, account: str) -> str:
    """The banner's word on where orders go."""
    if mode == "paper":
        return (
            f"paper account `{account}` (the same venue and fill model as agent-trade; nothing "
            "is sent to an exchange)"
        )
    return (
        f"Binance spot **testnet** account `{account}` (approved orders are sent to the testnet "
        "as market orders; no real money)"
    )


def approving_line(mode: str, account: str) -> str:
    """Under each proposal: what Approve will do."""
    if mode == "paper":
        return (
            f"Paper account `{account}`: approving sends it to the paper venue, where it fills at "
            "the next bar's open; nothing goes to an exchange."
        )
    return (
        f"Binance {mode} account `{account}`: approving sends a market order to the {mode} at once."
    )
