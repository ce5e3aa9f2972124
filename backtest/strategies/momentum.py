"""Momentum: rank the run's symbols by their rate of change over the last N periods and hold
the top K, rebalanced at each period's end (an XNYS session for US stocks, a UTC day for
crypto). Long only. A symbol that drops out is closed at the rebalance; its replacement is
bought once that sale has filled (the gate sizes a buy on free cash, and a pending sale frees
none), at the close of the next period's first bar."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from backtest.strategies.periods import period_masks
from execution.feed import BarArrays, SymbolBars
from market.instruments import AssetClass, asset_class
from risk.models import TradeSignal
from runtime.strategy import Context, Prepared, Strategy


class MomentumParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lookback: int = Field(20, ge=1, description="rate of change over N sessions (crypto: days)")
    top_k: int = Field(1, ge=1, description="hold the K symbols with the highest rate of change")


class Momentum(Strategy):
    name = "momentum"
    Params = MomentumParams
    params: MomentumParams

    def __init__(self, params: BaseModel) -> None:
        super().__init__(params)
        self._times: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))
        self._sessions = False
        self._warmup = self.params.lookback  # in bars once bound: periods are bars on daily data

    def bind(self, feed: BarArrays) -> None:
        """Periods need the bars' times, and the run's asset class says which periods. The
        warm-up is the bar where the first rate of change is known: the end of period
        `lookback` + 1 (on intraday stock bars, that many sessions of bars, extended hours
        included), or the whole feed while it holds fewer periods."""
        self._times = (feed.open_time, feed.close_time)
        self._sessions = any(asset_class(s) is AssetClass.EQUITY for s in feed.symbols)
        ends = np.flatnonzero(period_masks(*self._times, sessions=self._sessions)[0])
        lookback = self.params.lookback
        self._warmup = int(ends[lookback]) if len(ends) > lookback else len(feed.open_time)

    @property
    def warmup(self) -> int:
        """Bars before the first rebalance: Buy & Hold starts there."""
        return self._warmup

    def prepare(self, bars: SymbolBars) -> Prepared:
        n = len(bars.close)
        open_time, close_time = (t[:n] for t in self._times)
        ends, starts = period_masks(open_time, close_time, sessions=self._sessions)
        at_end = np.flatnonzero(ends)
        closes = bars.close[at_end]
        lookback = self.params.lookback
        roc = np.full(n, np.nan)
        roc[at_end[lookback:]] = closes[lookback:] / closes[:-lookback] - 1.0
        latest = np.full(n, -1)
        latest[at_end[lookback:]] = at_end[lookback:]
        latest = np.maximum.accumulate(latest)
        ranked = np.where(latest >= 0, roc[np.maximum(latest, 0)], np.nan)
        known = np.isfinite(ranked)
        return {"roc": ranked, "rebalance": ends & known, "entry": starts & known}

    def wake(self, prepared: Prepared) -> np.ndarray:
        return prepared["rebalance"] | prepared["entry"]

    def picks(self, rocs: dict[str, float]) -> list[str]:
        """The top K by rate of change; ties go to the symbol that sorts first."""
        ranked = sorted((-r, s) for s, r in rocs.items() if math.isfinite(r))
        return [s for _, s in ranked[: self.params.top_k]]

    def decide(self, ctx: Context) -> list[TradeSignal]:
        picks = self.picks(ctx.across("roc"))
        held = ctx.position > 0
        if ctx.symbol not in picks:
            rebalance = ctx.value("rebalance") > 0
            return [ctx.close_position(rationale="left the top")] if held and rebalance else []
        leaving = any(q > 0 and s not in picks for s, q in ctx.holdings().items())
        if held or ctx.position < 0 or leaving:
            return []
        size = ctx.size_pct / self.params.top_k
        return [ctx.buy(size_pct=size, rationale=f"top {self.params.top_k} by rate of change")]
