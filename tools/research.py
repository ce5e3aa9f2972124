"""`run_backtest`: a classic strategy over a bounded range that ended before the decision time."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from backtest import run_backtest as run_engine
from backtest.data import to_bar_arrays
from backtest.report import compute_report_metrics
from backtest.strategies import STRATEGIES
from core.errors import UserError
from market.models import iso_ms
from tools.env import ToolEnv
from tools.market import Symbol, require_symbol
from tools.registry import Tool, ToolError

MAX_DAYS = 3.0
DAY_MS = 86_400_000
SHOWN_METRICS = (
    "Return [%]",
    "Buy & Hold Return [%]",
    "Max. Drawdown [%]",
    "Sharpe Ratio",
    "# Trades",
    "Win Rate [%]",
)


class BacktestIn(BaseModel):
    strategy: Literal["sma_cross", "rsi_reversion", "donchian_breakout"]
    symbol: Symbol
    days: float = Field(1.0, gt=0, le=MAX_DAYS, description="the days before now to test on")
    params: dict[str, float] = Field(default_factory=dict, description="strategy parameters")


class BacktestOut(BaseModel):
    strategy: str
    symbol: str
    start: str
    end: str
    params: dict[str, Any]
    metrics: dict[str, float | None]


def run_backtest(env: ToolEnv, args: BacktestIn) -> BacktestOut:
    symbol = require_symbol(env, args.symbol)
    frame = env.market.candles(symbol, env.now_ms)
    first_ms = int(frame["open_time"].iloc[0])
    start_ms = env.now_ms - int(args.days * DAY_MS)
    if start_ms < first_ms:
        have = (env.now_ms - first_ms) / DAY_MS
        raise ToolError(
            f"only {have:.2f} days of {symbol} data before now (from {iso_ms(first_ms)}); "
            f"ask for days <= {have:.2f}"
        )
    window = frame[frame["open_time"] >= start_ms]
    cls = STRATEGIES[args.strategy]
    try:
        params = cls.Params(**{k: _whole(v) for k, v in args.params.items()})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ToolError(f"invalid {args.strategy} params: {where}: {first['msg']}") from None
    try:
        bars, _ = to_bar_arrays({symbol: window})
    except UserError as exc:
        raise ToolError(str(exc)) from None
    config = env.backtest.model_copy(update={"interval": env.market.interval})
    result = run_engine(bars, cls(params), {symbol: env.rules[symbol]}, config, limits=env.limits)
    metrics = compute_report_metrics(result)
    return BacktestOut(
        strategy=args.strategy,
        symbol=symbol,
        start=iso_ms(int(bars.open_time[0])),
        end=iso_ms(int(bars.close_time[-1]) + 1),
        params=params.model_dump(),
        metrics={m: _rounded(metrics[m]) for m in SHOWN_METRICS},
    )


def _whole(value: float) -> float | int:
    """JSON numbers arrive as floats; periods are integers."""
    return int(value) if float(value).is_integer() else value


def _rounded(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return round(number, 3) if math.isfinite(number) else None


RESEARCH_TOOLS = (
    Tool(
        "run_backtest",
        "Backtest a classic strategy on the days before now; returns key metrics.",
        BacktestIn,
        BacktestOut,
        run_backtest,
    ),
)
