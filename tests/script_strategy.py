"""Tiny hand-made candles and a scripted strategy, so each fill scenario reads like a table."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from backtest.config import BacktestConfig
from backtest.data import to_bar_arrays
from backtest.engine import BacktestResult, run_backtest
from execution.feed import SymbolBars
from execution.fees import FeeFn, FeeSchedule
from market.corporate import CorporateActions
from market.models import SymbolRules
from risk.limits import RiskLimits
from risk.models import OrderType, SignalAction, SignalSource, TradeSignal
from runtime.hours import TradingHours
from runtime.strategy import Context, Prepared, Strategy

T0 = 1_761_711_720_000  # 2025-10-29 04:22 UTC, the bundled sample's first bar
MINUTE = 60_000
NO_COSTS = BacktestConfig(fees=FeeSchedule(maker=0, taker=0))

Bar = tuple[float, float, float, float] | tuple[float, float, float, float, float]
Decision = Callable[[Context], TradeSignal]


def candles(rows: Sequence[Bar], start_ms: int = T0) -> pd.DataFrame:
    """1m bars from (open, high, low, close[, volume]) rows; volume defaults to 1,000."""
    times = start_ms + MINUTE * np.arange(len(rows), dtype=np.int64)
    o, h, lo, c, v = zip(*[(*r, 1_000.0) if len(r) == 4 else r for r in rows], strict=True)
    return pd.DataFrame(
        {
            "open_time": times,
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": v,
            "close_time": times + MINUTE - 1,
        }
    )


def rules(symbol: str = "BTCUSDT", min_notional: str = "5") -> SymbolRules:
    """Binance-like filters on a 100-ish price: tick 0.01, step 0.001."""
    return SymbolRules(
        symbol=symbol,
        base_asset=symbol.removesuffix("USDT"),
        quote_asset="USDT",
        tick_size=Decimal("0.01"),
        step_size=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        max_qty=Decimal("9000"),
        min_notional=Decimal(min_notional),
    )


def order(
    ctx: Context,
    action: SignalAction = SignalAction.BUY,
    *,
    quantity: float | None = None,
    size_pct: float | None = None,
    order_type: OrderType = OrderType.MARKET,
    limit: float | None = None,
    stop: float | None = None,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing: float | None = None,
    symbol: str | None = None,
    tag: str = "",
) -> TradeSignal:
    return TradeSignal(
        decision_id=f"script:{symbol or ctx.symbol}:{ctx.index}:{action}{tag}",
        source=SignalSource.STRATEGY,
        symbol=symbol or ctx.symbol,
        action=action,
        order_type=order_type,
        quantity=quantity,
        size_pct=size_pct,
        limit_price=limit,
        stop_price=stop,
        stop_loss=stop_loss,
        take_profit=take_profit,
        trailing_stop_pct=trailing,
        created_ms=ctx.time_ms,
    )


class _NoParams(BaseModel):
    pass


class Script(Strategy):
    """Emits exactly the planned signals at the planned (symbol, bar) closes."""

    name = "script"
    Params = _NoParams

    def __init__(self, plan: Mapping[int | tuple[str, int], Sequence[Decision]]) -> None:
        """Plan keys: a bar index (for BTCUSDT) or a (symbol, bar) pair."""
        super().__init__(_NoParams())
        self.plan = {(k if isinstance(k, tuple) else ("BTCUSDT", k)): v for k, v in plan.items()}

    @property
    def warmup(self) -> int:
        return 0

    def prepare(self, bars: SymbolBars) -> Prepared:
        return {"close": bars.close}

    def wake(self, prepared: Prepared) -> np.ndarray:
        mask = np.zeros(len(prepared["close"]), dtype=bool)
        for _symbol, bar in self.plan:
            if bar < len(mask):
                mask[bar] = True
        return mask

    def decide(self, ctx: Context) -> list[TradeSignal]:
        return [make(ctx) for make in self.plan.get((ctx.symbol, ctx.index), ())]


def backtest(
    frames: pd.DataFrame | Mapping[str, pd.DataFrame],
    plan: Mapping[int | tuple[str, int], Sequence[Decision]],
    config: BacktestConfig = NO_COSTS,
    *,
    symbol_rules: Mapping[str, SymbolRules] | None = None,
    limits: RiskLimits | None = None,
    fee_fn: FeeFn | None = None,
    hours: TradingHours | None = None,
    actions: CorporateActions | None = None,
) -> BacktestResult:
    if isinstance(frames, pd.DataFrame):
        frames = {"BTCUSDT": frames}
    bars, _ = to_bar_arrays(frames)
    chosen = symbol_rules or {s: rules(s) for s in frames}
    return run_backtest(
        bars,
        Script(plan),
        chosen,
        config,
        limits=limits,
        fee_fn=fee_fn,
        hours=hours,
        actions=actions,
    )
