"""The baselines a strategy's result must stand beside (DESIGN invariant 13): buy-and-hold and a
seeded random-entry strategy, both plain strategies, so they run on the same bars through the
same gate, fills and fees as whatever they are compared with."""

from __future__ import annotations

from collections import Counter

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from backtest.engine import BacktestResult
from execution.feed import BarArrays, SymbolBars
from risk.models import SignalAction, SignalSource, TradeSignal
from runtime.strategy import Context, Prepared, Strategy


class BuyAndHoldParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    start: int = Field(0, ge=0, description="bar whose close buys (the compared run's warm-up)")
    size_pct: float = Field(1.0, gt=0, le=1, description="fraction of equity, split by symbol")


class BuyAndHold(Strategy):
    """Buy every symbol at one close and hold to the end: the question 'why trade at all?'."""

    name = "buy_and_hold"
    Params = BuyAndHoldParams
    params: BuyAndHoldParams

    def __init__(self, params: BuyAndHoldParams, symbols: int = 1) -> None:
        super().__init__(params)
        self.symbols = symbols

    @property
    def warmup(self) -> int:
        return self.params.start

    def prepare(self, bars: SymbolBars) -> Prepared:
        wake = np.zeros(len(bars.close), dtype=bool)
        if self.params.start < len(wake):
            wake[self.params.start] = True
        return {"wake": wake}

    def wake(self, prepared: Prepared) -> np.ndarray:
        return prepared["wake"]

    def decide(self, ctx: Context) -> list[TradeSignal]:
        return [ctx.buy(size_pct=self.params.size_pct / self.symbols, rationale="buy and hold")]


class RandomEntryParams(BaseModel):
    """What the compared run did, so luck is the only difference: entries per symbol, bars
    held, the size it asked for and its stop distance; the seed picks the bars."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    entries: dict[str, int] = Field(default_factory=dict)
    hold_bars: int = Field(1, ge=1)
    start: int = Field(0, ge=0)
    size_pct: float | None = Field(None, gt=0, le=1)
    stop_loss_pct: float | None = Field(None, gt=0, lt=1)
    source: SignalSource = SignalSource.AI


class RandomEntry(Strategy):
    """Long entries at seeded random closes, each closed `hold_bars` later, never overlapping.
    Its signals carry the compared run's source, so the gate applies that source's limits."""

    name = "random_entry"
    Params = RandomEntryParams
    params: RandomEntryParams

    def __init__(self, params: RandomEntryParams) -> None:
        super().__init__(params)
        self.source = params.source  # type: ignore[misc]
        self.masks: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def bind(self, feed: BarArrays) -> None:
        """Each symbol's entry and exit bars, drawn from the run's length and the symbol alone
        (no price), so they are known here, whatever bars `prepare` is handed (adjusted for
        splits and dividends, say)."""
        p, n = self.params, len(feed)
        self.masks = {}
        for symbol in feed.symbols:
            entry = np.zeros(n, dtype=bool)
            exit_ = np.zeros(n, dtype=bool)
            wanted = p.entries.get(symbol, 0)
            for e in entry_bars(n, wanted, p.hold_bars, p.start, (p.seed, _tag(symbol))):
                entry[e] = True
                exit_[e + p.hold_bars] = True
            self.masks[symbol] = (entry, exit_)

    @property
    def warmup(self) -> int:
        return self.params.start

    def prepare(self, bars: SymbolBars) -> Prepared:
        due = np.zeros(len(bars.close), dtype=bool)
        for entry, exit_ in self.masks.values():
            due |= entry | exit_
        return {"due": due}

    def wake(self, prepared: Prepared) -> np.ndarray:
        return prepared["due"]

    def decide(self, ctx: Context) -> list[TradeSignal]:
        entry, exit_ = self.masks[ctx.symbol]
        if exit_[ctx.index]:
            return [ctx.close_position(rationale="random exit")]
        if not entry[ctx.index]:
            return []
        signal = ctx.buy(size_pct=self.params.size_pct, rationale="random entry")
        stop = self.params.stop_loss_pct
        if stop is None:
            return [signal]
        return [signal.model_copy(update={"stop_loss": ctx.close * (1 - stop)})]


def entry_bars(n: int, wanted: int, hold: int, start: int, seed: tuple[int, int]) -> np.ndarray:
    """`wanted` entry closes in [start, n-2-hold], each trade's exit before the next entry, drawn
    uniformly among such layouts (fewer when the window cannot hold them all). An exit decided
    at bar n-2 still fills at the last bar's open."""
    span = (n - 2) - start + 1
    count = fitting(n, wanted, hold, start)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    free = span - count * (hold + 1)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(free + count, size=count, replace=False))
    return start + picks + np.arange(count) * hold


def fitting(n: int, wanted: int, hold: int, start: int) -> int:
    """How many of `wanted` non-overlapping trades of `hold` bars fit in `n` bars after `start`
    (fewer than the compared run's when its own trades overlapped)."""
    return max(0, min(wanted, ((n - 2) - start + 1) // (hold + 1)))


def _tag(symbol: str) -> int:
    """A stable per-symbol stream (Python's str hash is salted per process)."""
    return int.from_bytes(symbol.encode()[:8].ljust(8, b"\0"), "little")


class AgentShape(BaseModel):
    """The compared run's trading, measured from its result."""

    entries: dict[str, int]
    hold_bars: int
    size_pct: float | None
    stop_loss_pct: float | None
    source: SignalSource


def shape_of(result: BacktestResult) -> AgentShape:
    """Entries per symbol and mean bars held from its trades; the median size and stop distance
    its buy signals asked for (None where it asked for none) and their source, whose limits the
    gate then applies to the random entries too."""
    entries: dict[str, int] = {}
    for trade in result.trades:
        entries[trade.symbol] = entries.get(trade.symbol, 0) + 1
    held = [t.exit_bar - t.entry_bar for t in result.trades]
    sizes, stops, sources = [], [], []
    for call in result.gate_calls:
        signal, market = call.signal, call.market
        if signal.action is not SignalAction.BUY or signal.protective:
            continue
        sources.append(signal.source)
        if signal.size_pct is not None:
            sizes.append(signal.size_pct)
        if signal.stop_loss is not None and market is not None:
            distance = 1 - signal.stop_loss / market.last_price
            if 0 < distance < 1:
                stops.append(distance)
    return AgentShape(
        entries=dict(sorted(entries.items())),
        hold_bars=max(1, round(float(np.mean(held)))) if held else 1,
        size_pct=float(np.median(sizes)) if sizes else None,
        stop_loss_pct=float(np.median(stops)) if stops else None,
        source=Counter(sources).most_common(1)[0][0] if sources else SignalSource.AI,
    )
