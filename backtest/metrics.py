"""Report metrics as pure functions of float64 arrays, with backtesting.py's names, units and
formulas; the annualised ones on the return frequency the window supports (backtest.annualise),
with 365 days per year for crypto, not 252."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from backtest.annualise import Basis, annualised, geometric_mean

PERIODS_PER_YEAR = 365


def drawdown(equity: np.ndarray) -> np.ndarray:
    """Fraction below the running peak at each bar (0 at new highs); made in one array, as a
    million bars' curve is 8 MB a copy."""
    out = np.maximum.accumulate(equity)
    np.divide(equity, out, out=out)
    return np.subtract(1.0, out, out=out)


def drawdown_periods(dd: np.ndarray, times_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each drawdown's duration (ms, peak to recovery or the end) and depth, as backtesting.py."""
    marks = np.unique(np.r_[np.flatnonzero(dd == 0), len(dd) - 1])
    starts, ends = marks[:-1], marks[1:]
    if not len(starts):
        return np.empty(0, np.int64), np.empty(0)
    depths = np.maximum.reduceat(dd, starts)
    real = ends > starts + 1
    return (times_ms[ends] - times_ms[starts])[real], depths[real]


def exposure(entry_bars: np.ndarray, exit_bars: np.ndarray, bars: int) -> np.ndarray:
    """True for every bar from a trade's entry bar to its exit bar, both included."""
    change = np.zeros(bars + 1, dtype=np.int64)
    np.add.at(change, entry_bars, 1)
    np.add.at(change, exit_bars + 1, -1)
    return np.cumsum(change, out=change)[:-1] > 0


def _nan_div(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _timedelta(ms: float, resolution: str) -> pd.Timedelta | None:
    if not np.isfinite(ms):
        return None
    return pd.Timedelta(ms, unit="ms").ceil(resolution)


def equity_metrics(
    equity: np.ndarray,
    times_ms: np.ndarray,
    interval_ms: int,
    periods_per_year: int = PERIODS_PER_YEAR,
    bars_per_session: float | None = None,
) -> tuple[dict[str, Any], Basis]:
    """Start to Max./Avg. Drawdown Duration, except exposure and Buy & Hold; the annualised
    ones on the basis the window supports (backtest.annualise), NaN where n/a."""
    resolution = pd.Timedelta(interval_ms, unit="ms").resolution_string
    start = pd.Timestamp(int(times_ms[0]), unit="ms", tz="UTC")
    end = pd.Timestamp(int(times_ms[-1]), unit="ms", tz="UTC")
    dd = drawdown(equity)
    durations, depths = drawdown_periods(dd, times_ms)
    max_dd = float(np.nan_to_num(dd.max()))
    annual, basis = annualised(
        equity, times_ms, interval_ms, max_dd, periods_per_year, bars_per_session
    )
    values = {
        "Start": start,
        "End": end,
        "Duration": end - start,
        "Equity Final [$]": float(equity[-1]),
        "Equity Peak [$]": float(equity.max()),
        "Return [%]": (equity[-1] - equity[0]) / equity[0] * 100,
        **annual,
        "Max. Drawdown [%]": (0.0 - max_dd) * 100,  # 0, not -0, without a drawdown
        "Avg. Drawdown [%]": -depths.mean() * 100 if len(depths) else float("nan"),
        "Max. Drawdown Duration": _timedelta(
            durations.max() if len(durations) else np.nan, resolution
        ),
        "Avg. Drawdown Duration": _timedelta(
            durations.mean() if len(durations) else np.nan, resolution
        ),
    }
    return values, basis


def trade_metrics(
    pnl: np.ndarray, returns: np.ndarray, durations_ms: np.ndarray, interval_ms: int
) -> dict[str, Any]:
    """# Trades to Kelly Criterion; `returns` are fractions net of fees."""
    resolution = pd.Timedelta(interval_ms, unit="ms").resolution_string
    n = len(pnl)
    win_rate = float((pnl > 0).mean()) if n else float("nan")
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    std = pnl.std(ddof=1) if n > 1 else float("nan")
    payoff = (wins.mean() / -losses.mean()) if len(wins) and len(losses) else float("nan")
    return {
        "# Trades": n,
        "Win Rate [%]": win_rate * 100,
        "Best Trade [%]": returns.max() * 100 if n else float("nan"),
        "Worst Trade [%]": returns.min() * 100 if n else float("nan"),
        "Avg. Trade [%]": geometric_mean(returns) * 100,
        "Max. Trade Duration": _timedelta(durations_ms.max() if n else np.nan, resolution),
        "Avg. Trade Duration": _timedelta(durations_ms.mean() if n else np.nan, resolution),
        "Profit Factor": _nan_div(returns[returns > 0].sum(), abs(returns[returns < 0].sum())),
        "Expectancy [%]": returns.mean() * 100 if n else float("nan"),
        "SQN": np.sqrt(n) * pnl.mean() / std if n > 1 and std else float("nan"),
        "Kelly Criterion": win_rate - (1 - win_rate) / payoff if n else float("nan"),
    }


TRADE_FIGURES = (
    "Win Rate [%]",
    "Best Trade [%]",
    "Worst Trade [%]",
    "Avg. Trade [%]",
    "Max. Trade Duration",
    "Avg. Trade Duration",
    "Profit Factor",
    "Expectancy [%]",
    "SQN",
    "Kelly Criterion",
)
_DRAWDOWN_FIGURES = ("Avg. Drawdown [%]", "Max. Drawdown Duration", "Avg. Drawdown Duration")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def unavailable(values: dict[str, Any], pnl: np.ndarray, still_open: int = 0) -> dict[str, str]:
    """Why each trade or drawdown figure that has no value cannot be computed honestly; `pnl`
    is the closed trades', `still_open` the trades open at the end (not in the statistics)."""
    reasons = {}
    none_closed = "no closed trades" + (f" ({still_open:,} open at the end)" if still_open else "")
    for name, value in values.items():
        if not _missing(value):
            continue
        if name in TRADE_FIGURES and not len(pnl):
            reasons[name] = none_closed
        elif name == "Profit Factor":
            reasons[name] = "no losing trade: no loss to divide by"
        elif name == "SQN":
            reasons[name] = (
                "needs 2+ closed trades" if len(pnl) < 2 else "every trade's PnL is the same"
            )
        elif name == "Kelly Criterion":
            reasons[name] = "needs a winning and a losing trade"
        elif name in _DRAWDOWN_FIGURES:
            reasons[name] = "no drawdown"
    return reasons


def warmup_shortfall(name: str, warmup: int, bars: int) -> str | None:
    """Why a strategy cannot trade at all when its warm-up leaves no bar to signal on and a
    later one to fill on; None when it can."""
    if warmup < bars - 1:
        return None
    return (
        f"{name} needs {warmup + 2:,} bars to trade (a {warmup:,}-bar warm-up, a bar to signal "
        f"on and one to fill on); the window has {bars:,}"
    )


def buy_and_hold(closes: list[np.ndarray], first_bar: int) -> float:
    """Equal-weight Buy & Hold [%] from the first bar a strategy could trade; NaN when the
    warm-up leaves none (warmup_shortfall says why)."""
    if first_bar >= len(closes[0]) - 1:
        return float("nan")
    return float(np.mean([(c[-1] - c[first_bar]) / c[first_bar] * 100 for c in closes]))


METRIC_ORDER: tuple[str, ...] = (
    "Start",
    "End",
    "Duration",
    "Exposure Time [%]",
    "Equity Final [$]",
    "Equity Peak [$]",
    "Return [%]",
    "Buy & Hold Return [%]",
    "Return (Ann.) [%]",
    "CAGR [%]",
    "Volatility (Ann.) [%]",
    "Sharpe Ratio",
    "Sortino Ratio",
    "Calmar Ratio",
    "Max. Drawdown [%]",
    "Avg. Drawdown [%]",
    "Max. Drawdown Duration",
    "Avg. Drawdown Duration",
    "# Trades",
    *TRADE_FIGURES,
    "Fees [$]",
    "Turnover [$]",
    "Rejected Orders",
)
