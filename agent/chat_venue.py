"""Where the chat's approved orders go: the paper venue (the default), or Binance's spot testnet
through the signed executor, with the key's permissions checked as `agent-trade` checks them.
A testnet chat that cannot trade on testnet stops with the reason; it never falls back to paper."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from agent.chat_market import ChatMarket
from config import Settings
from core.errors import UserError
from execution.venues import VenueFactory, signed_venue
from market.models import SymbolRules
from market.sample import sample_rules
from store import Store

ChatMode = Literal["paper", "testnet"]
CHAT_MODES: tuple[ChatMode, ...] = ("paper", "testnet")


def chat_venue(
    settings: Settings,
    mode: ChatMode,
    source: ChatMarket,
    store: Store,
    account: str,
    notify: Callable[[str], None],
) -> tuple[dict[str, SymbolRules], VenueFactory | None]:
    """The exchange rules and the venue factory (None: the chat desk's paper venue)."""
    if mode == "paper":
        return sample_rules(), None
    require_live(mode, source)
    return signed_venue("binance", settings, mode, list(source.frames), store, account, notify)


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
