"""Inventory rebalancing for the arbitrage desk. Every pair buys on the cheap venue and sells on
the dear one, so base piles up on one side and quote on the other until a venue cannot fill its
leg. When an asset's split between the two venues drifts past a threshold, a transfer from the
richer venue to the poorer one is proposed to even it out, net of the network fee it costs; on
paper it is executed at once and journaled with that cost."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from arbitrage.pairs import DAILY_LOSS, Holdings, Inventory

Asset = Literal["base", "quote"]
ASSETS: tuple[Asset, ...] = ("base", "quote")


class RebalanceRule(BaseModel):
    """When to move inventory and what a move costs (withdrawal fee, in the coin moved)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(gt=0, le=1, description="|A − B| / (A + B) of an asset that triggers")
    base_fee: float = Field(0.0, ge=0, description="network fee per base transfer, in base")
    quote_fee: float = Field(0.0, ge=0, description="network fee per quote transfer, in quote")


class Transfer(BaseModel):
    """One move of one asset between the venues, with what it cost and what it fixed."""

    model_config = ConfigDict(frozen=True)

    transfer_id: str
    time_ms: int
    asset: Asset
    from_venue: str
    to_venue: str
    amount: float  # leaves `from_venue`
    fee: float  # in the asset moved
    cost_quote: float  # the fee valued at the mark
    imbalance_before: float
    imbalance_after: float


def split(inventory: Inventory, a: str, b: str, asset: Asset) -> float:
    x, y = getattr(inventory.holdings[a], asset), getattr(inventory.holdings[b], asset)
    return abs(x - y) / (x + y) if x + y > 0 else 0.0


def propose(
    inventory: Inventory, a: str, b: str, asset: Asset, rule: RebalanceRule
) -> tuple[str, str, float, float] | None:
    """(from, to, amount, fee) that evens `asset` out between `a` and `b` once the fee is paid,
    or None while the split is within the threshold or the fee would eat the move."""
    if split(inventory, a, b, asset) <= rule.threshold:
        return None
    x, y = getattr(inventory.holdings[a], asset), getattr(inventory.holdings[b], asset)
    rich, poor = (a, b) if x > y else (b, a)
    fee = rule.base_fee if asset == "base" else rule.quote_fee
    amount = (abs(x - y) + fee) / 2  # the poorer venue receives amount − fee: both end equal
    if amount - fee <= 0:
        return None
    return rich, poor, amount, fee


def apply(
    inventory: Inventory, asset: Asset, source: str, target: str, amount: float, fee: float
) -> None:
    """The transfer's effect: `amount` leaves `source`, `amount − fee` reaches `target`."""
    for venue, change in ((source, -amount), (target, amount - fee)):
        held = inventory.holdings[venue].model_dump()
        held[asset] = max(0.0, held[asset] + change)
        inventory.holdings[venue] = Holdings(**held)


class Rebalancer:
    """Checks both assets before each step of the desk and, on paper, executes what it
    proposes at once. A real transfer takes minutes and needs a withdrawal-enabled key, which
    the signed venues refuse, so this stays a paper tool. `journal` sees every transfer;
    `skipped` counts the transfers held back, by reason."""

    def __init__(self, rule: RebalanceRule, journal: Callable[[Transfer], None]) -> None:
        self.rule = rule
        self.journal = journal
        self.transfers: list[Transfer] = []
        self.skipped: dict[str, int] = {}

    @property
    def cost_quote(self) -> float:
        return self.cost_since(0)

    def cost_since(self, since_ms: int) -> float:
        """The quote the transfers made since `since_ms` cost: a loss the desk counts too."""
        return sum(t.cost_quote for t in self.transfers if t.time_ms >= since_ms)

    def step(
        self,
        inventory: Inventory,
        a: str,
        b: str,
        mark: float,
        now_ms: int,
        room: float = math.inf,
    ) -> list[Transfer]:
        """`room`: the quote the day may still lose before the desk's daily loss limit (see
        ArbDesk.loss_room). Once the transfers' costs use it up, a transfer that would be made
        is held back and counted in `skipped`."""
        made = []
        for asset in ASSETS:
            found = propose(inventory, a, b, asset, self.rule)
            if found is None:
                continue
            if room <= 0:
                self.skipped[DAILY_LOSS] = self.skipped.get(DAILY_LOSS, 0) + 1
                continue
            source, target, amount, fee = found
            before = split(inventory, a, b, asset)
            apply(inventory, asset, source, target, amount, fee)
            transfer = Transfer(
                transfer_id=f"move-{len(self.transfers) + 1:06d}",
                time_ms=now_ms,
                asset=asset,
                from_venue=source,
                to_venue=target,
                amount=amount,
                fee=fee,
                cost_quote=fee * mark if asset == "base" else fee,
                imbalance_before=before,
                imbalance_after=split(inventory, a, b, asset),
            )
            self.transfers.append(transfer)
            room -= transfer.cost_quote
            self.journal(transfer)
            made.append(transfer)
        return made
