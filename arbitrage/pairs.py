"""The dry-run arbitrage desk: takes both legs when the net edge for the real size clears the
threshold, books every fill into per-venue inventory after fees, journals each pair as one unit
and closes a lone leg (its partner failed or filled short) by reversing it on its own venue."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from arbitrage.spread import Edge, VenueBook, scan, vwap
from arbitrage.spread import edge as edge_at

Side = Literal["buy", "sell"]
DAY_MS = 86_400_000
_CLOSE = "close-"  # the prefix of a lone leg's close legs
DAILY_LOSS = "daily loss limit reached"
_DUST = 1e-9  # float rounding in a venue's holdings, not a shortfall


class PairState(StrEnum):
    OPEN = "open"  # journaled, legs being sent
    COMPLETE = "complete"  # both legs filled the same quantity (but for a residual, see note)
    LONE_LEG = "lone_leg"  # one leg holds more than the other: the close rule must act
    CLOSED = "closed"  # a lone leg reversed on its own venue, or left as a noted residual
    FAILED = "failed"  # neither leg filled


class Holdings(BaseModel):
    base: float = Field(ge=0)
    quote: float = Field(ge=0)


class LegFill(BaseModel):
    """What a venue did with one leg: `filled` may be short of `requested`, or 0.
    `untradable`: the venue can never take this leg: below its minimum quantity or notional,
    or, for a sell, none of the coin held there (the fee a buy paid in coins), so no retry can
    ever fill it."""

    model_config = ConfigDict(frozen=True)

    venue: str
    side: Side
    requested: float
    filled: float
    price: float | None
    fee_bps: float
    reason: str = "filled"
    untradable: bool = False

    @classmethod
    def missed(
        cls,
        venue: str,
        side: Side,
        requested: float,
        fee_bps: float,
        reason: str,
        *,
        untradable: bool = False,
    ) -> LegFill:
        """A leg that filled nothing, and why."""
        return cls(
            venue=venue,
            side=side,
            requested=requested,
            filled=0.0,
            price=None,
            fee_bps=fee_bps,
            reason=reason,
            untradable=untradable,
        )


class Pair(BaseModel):
    """One arbitrage as the journal keeps it: both legs, the close if one was needed, the PnL."""

    pair_id: str
    opened_ms: int
    state: PairState = PairState.OPEN
    edge: Edge
    legs: list[LegFill] = []
    closes: list[LegFill] = []
    pnl_quote: float = 0.0
    note: str = ""
    mode: str = "paper"  # where its legs went: paper, testnet or live

    @property
    def unmatched(self) -> tuple[str, Side, float] | None:
        """(venue, side, quantity) of the leg that holds more than its partner."""
        bought = sum(f.filled for f in self.legs + self.closes if f.side == "buy")
        sold = sum(f.filled for f in self.legs + self.closes if f.side == "sell")
        if abs(bought - sold) <= 1e-12:
            return None
        venue = self.edge.buy_venue if bought > sold else self.edge.sell_venue
        return venue, "buy" if bought > sold else "sell", abs(bought - sold)


class LegVenue(Protocol):
    """Where a leg goes: a paper book walk here, a signed executor on testnet or live."""

    def take(
        self, pair_id: str, venue: str, side: Side, quantity: float, book: VenueBook, leg: str
    ) -> LegFill:
        """Send one leg; `pair_id` and `leg` ("buy", "sell", "close-1", ...) name it, so a signed
        executor derives one client order id per leg and a resend is recognised."""


class PaperLegs:
    """Fills a leg by walking the venue's book as it stands, as a taker, within what `inventory`
    holds there, as a venue would: a sell of coins it does not hold (the fee a buy paid in them)
    can never fill. A buy needs no such check: the desk sizes it to the quote held. `fail`
    (pair id, venue, side) -> True refuses a leg, to rehearse the lone-leg rule."""

    def __init__(
        self, inventory: Inventory, fail: Callable[[str, str, Side], bool] | None = None
    ) -> None:
        self.inventory = inventory
        self._fail = fail

    def take(
        self, pair_id: str, venue: str, side: Side, quantity: float, book: VenueBook, leg: str
    ) -> LegFill:
        fee = book.taker_fee_bps
        if self._fail is not None and self._fail(pair_id, venue, side):
            return LegFill.missed(venue, side, quantity, fee, "rejected (rehearsed failure)")
        held = self.inventory.holdings[venue]
        if side == "sell" and held.base <= 0:
            return LegFill.missed(
                venue, side, quantity, fee, f"{venue} holds none of the coin", untradable=True
            )
        levels = book.asks if side == "buy" else book.bids
        filled = min(quantity, sum(q for _, q in levels))
        reason = "partly filled: book too thin"
        if side == "sell" and held.base < filled:
            filled, reason = held.base, f"partly filled: {venue} holds only {held.base:.8g}"
        price = vwap(levels, filled) if filled > 0 else None
        if price is not None:
            sign = 1 if side == "buy" else -1
            price *= 1 + sign * book.slippage_bps / 10_000
        return LegFill(
            venue=venue,
            side=side,
            requested=quantity,
            filled=filled if price is not None else 0.0,
            price=price,
            fee_bps=fee,
            reason="filled" if filled >= quantity else reason,
        )


class ArbLimits(BaseModel):
    """What the desk may do; every figure is checked before a pair opens."""

    model_config = ConfigDict(extra="forbid")

    quantity: float = Field(gt=0, description="base per pair")
    threshold_bps: float = Field(
        0.0, ge=0, description="net edge a pair must clear; below 0 every pair loses by design"
    )
    max_notional_per_leg: float = Field(gt=0, description="quote per leg")
    max_imbalance: float = Field(
        0.8, gt=0, le=1, description="|base A − base B| / (A + B) a pair may leave behind"
    )
    daily_loss: float = Field(
        gt=0, description="quote lost since 00:00 UTC, transfer fees too, that stops new pairs"
    )
    max_book_age_ms: int = Field(2_000, gt=0)


class Inventory:
    """Base and quote per venue, after fees. A buy's fee comes out of the coins received and a
    sell's out of the quote received, as Binance and Bybit spot charge takers by default."""

    def __init__(self, start: Mapping[str, Holdings]) -> None:
        self.holdings = {venue: h.model_copy() for venue, h in start.items()}

    def book(self, fill: LegFill) -> tuple[float, float]:
        """Apply a fill; returns its (base, quote) change. A fill that leaves its venue less than
        nothing sold or spent what the venue never held: a bug, refused rather than clamped to
        0 (which would credit the quote of coins that never existed). Float dust is not one."""
        change = fill_change(fill)
        held = self.holdings[fill.venue]
        base, quote = held.base + change[0], held.quote + change[1]
        if min(base, quote) < -_DUST:
            raise ValueError(
                f"{fill.venue} would hold {base:.8g} base and {quote:.8g} quote after a "
                f"{fill.side} of {fill.filled:.8g}: it never held what that takes"
            )
        self.holdings[fill.venue] = Holdings(base=max(0.0, base), quote=max(0.0, quote))
        return change

    def imbalance(self, a: str, b: str) -> float:
        x, y = self.holdings[a].base, self.holdings[b].base
        return abs(x - y) / (x + y) if x + y > 0 else 0.0

    def value(self, mark: float) -> float:
        return sum(h.quote + h.base * mark for h in self.holdings.values())


class ArbDesk:
    """One symbol on two venues. `step(books, now_ms)` first closes lone legs, then opens at
    most one pair if the edge and the limits allow; `journal` sees every state a pair reaches.
    `past` pairs (a restart's journal) count towards the day's loss and the pair ids, and so
    does `spent(since_ms)`, the quote paid outside the pairs since then (transfer fees); `lot`
    rounds a pair's quantity down to what both venues accept."""

    def __init__(
        self,
        limits: ArbLimits,
        inventory: Inventory,
        legs: LegVenue,
        journal: Callable[[Pair], None],
        *,
        past: Sequence[Pair] = (),
        lot: Callable[[float], float] = lambda quantity: quantity,
        spent: Callable[[int], float] = lambda since_ms: 0.0,
        mode: str = "paper",
    ) -> None:
        self.limits = limits
        self.inventory = inventory
        self.legs = legs
        self.journal = journal
        self.pairs: list[Pair] = list(past)
        self._ids = itertools.count(1 + max((int(p.pair_id[4:]) for p in past), default=0))
        self._lot = lot
        self._spent = spent
        self.mode = mode
        self.skipped: dict[str, int] = {}

    @property
    def lone(self) -> list[Pair]:
        return [p for p in self.pairs if p.state == PairState.LONE_LEG]

    def realized_today(self, now_ms: int) -> float:
        day = now_ms - now_ms % DAY_MS
        return sum(p.pnl_quote for p in self.pairs if p.opened_ms >= day) - self._spent(day)

    def loss_room(self, now_ms: int) -> float:
        """The quote the day may still lose before the daily loss limit stops it (<= 0: no
        new pair, and no transfer either)."""
        return self.limits.daily_loss + self.realized_today(now_ms)

    def step(self, books: Mapping[str, VenueBook], now_ms: int) -> Pair | None:
        for pair in self.lone:
            self._close(pair, books)
        if self.lone:
            return self._skip("a lone leg is still open")
        if self.loss_room(now_ms) <= 0:
            return self._skip(DAILY_LOSS)
        a, b = books.values()
        found = scan(
            a,
            b,
            self.limits.quantity,
            now_ms,
            max_age_ms=self.limits.max_book_age_ms,
            threshold_bps=self.limits.threshold_bps,
        )
        if found.edge is None:
            return self._skip(found.refused or "no edge")
        if found.edge.net_bps < self.limits.threshold_bps:
            return self._skip("edge below threshold")
        quantity = self._size(found.edge, found.max_profitable_quantity)
        if quantity <= 0:
            return self._skip("no inventory or room for a pair")
        return self._open(found.edge, quantity, books, now_ms)

    def _size(self, edge: Edge, profitable: float) -> float:
        buy, sell = (
            self.inventory.holdings[edge.buy_venue],
            self.inventory.holdings[edge.sell_venue],
        )
        cost = edge.buy_vwap * (1 + edge.costs_bps / 10_000)
        quantity = min(
            self.limits.quantity,
            profitable,
            self.limits.max_notional_per_leg / edge.buy_vwap,
            buy.quote / cost,
            sell.base,
        )
        after = Inventory(self.inventory.holdings)
        after.holdings[edge.buy_venue] = Holdings(base=buy.base + quantity, quote=buy.quote)
        after.holdings[edge.sell_venue] = Holdings(base=sell.base - quantity, quote=sell.quote)
        if after.imbalance(edge.buy_venue, edge.sell_venue) > self.limits.max_imbalance:
            return 0.0
        return max(self._lot(quantity), 0.0)

    def _open(
        self, found: Edge, quantity: float, books: Mapping[str, VenueBook], now_ms: int
    ) -> Pair:
        """The pair at `quantity`, which sizing may have cut below the size `found` was priced
        at: priced again at it, so the journal's VWAPs and net are those of what it takes."""
        edge = edge_at(books[found.buy_venue], books[found.sell_venue], quantity)
        assert edge is not None  # less than the size priced fits the same books
        pair = Pair(
            pair_id=f"arb-{next(self._ids):06d}", mode=self.mode, opened_ms=now_ms, edge=edge
        )
        self.pairs.append(pair)
        self.journal(pair)  # ahead of any leg: a crash leaves an open pair to reconcile
        mark = (edge.buy_vwap + edge.sell_vwap) / 2
        for venue, side in ((edge.buy_venue, "buy"), (edge.sell_venue, "sell")):
            if pair.legs:  # the second leg hedges what the first bought, not what it asked for
                quantity = min(quantity, self._lot(pair.legs[0].filled))
                if quantity <= 0:
                    break  # the first leg took (next to) nothing: what it took is a lone leg
            fill = self.legs.take(pair.pair_id, venue, side, quantity, books[venue], side)  # type: ignore[arg-type]
            pair.legs.append(fill)
            pair.pnl_quote += _pnl(self.inventory.book(fill), mark)
        filled = [f.filled for f in pair.legs]
        if not any(filled):
            pair.state = PairState.FAILED
            pair.note = "; ".join(f"{f.venue} {f.side}: {f.reason}" for f in pair.legs)
        elif pair.unmatched is None:
            pair.state = PairState.COMPLETE
        else:
            pair.state = PairState.LONE_LEG
            pair.note = "; ".join(f"{f.venue} {f.side}: {f.reason}" for f in pair.legs)
        self.journal(pair)
        if pair.state == PairState.LONE_LEG:
            self._close(pair, books)
        return pair

    def _close(self, pair: Pair, books: Mapping[str, VenueBook]) -> None:
        """The close rule: reverse the unmatched quantity on the venue that holds it, at once, as
        a taker; if that fails too, the pair stays a lone leg and no new pair opens. A quantity
        the venue can never take (below its minimums, or coins it does not hold: the fee a buy
        paid in them) is a residual: the pair ends with a note saying so, and new pairs may
        open."""
        unmatched = pair.unmatched
        if unmatched is None:
            return
        venue, side, quantity = unmatched
        reverse: Side = "sell" if side == "buy" else "buy"
        leg = close_leg(len(pair.closes) + 1)
        fill = self.legs.take(pair.pair_id, venue, reverse, quantity, books[venue], leg)
        if fill.untradable:
            hedged = all(f.filled for f in pair.legs) and len(pair.legs) == 2
            pair.state = PairState.COMPLETE if hedged and not pair.closes else PairState.CLOSED
            residual = (
                f"{quantity:.8g} {side} left on {venue}, which cannot trade it: {fill.reason}"
            )
            pair.note = f"{pair.note}; {residual}" if pair.note else residual
            self.journal(pair)
            return
        pair.closes.append(fill)
        mark = (pair.edge.buy_vwap + pair.edge.sell_vwap) / 2
        pair.pnl_quote += _pnl(self.inventory.book(fill), mark)
        if pair.unmatched is None:
            pair.state = PairState.CLOSED
        self.journal(pair)

    def _skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1
        return None


def close_leg(number: int) -> str:
    """The name of a lone leg's `number`th close, which its client order id derives from."""
    return f"{_CLOSE}{number}"


def unwinds(leg: str) -> bool:
    """A close leg takes risk off: the gate lets it pass the limits that hold back entries."""
    return leg.startswith(_CLOSE)


def fill_change(fill: LegFill) -> tuple[float, float]:
    """A fill's (base, quote) change on its venue after the fee."""
    if fill.filled <= 0 or fill.price is None:
        return 0.0, 0.0
    keep = 1 - fill.fee_bps / 10_000
    if fill.side == "buy":
        return fill.filled * keep, -fill.filled * fill.price
    return -fill.filled, fill.filled * fill.price * keep


def fill_pnl(fill: LegFill, mark: float) -> float:
    """A fill's value change in quote, its base valued at the pair's own mark."""
    return _pnl(fill_change(fill), mark)


def _pnl(change: tuple[float, float], mark: float) -> float:
    """A fill's value change in quote, its base valued at the pair's own mark."""
    return change[1] + change[0] * mark
