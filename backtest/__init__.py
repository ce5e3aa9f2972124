"""Backtests: the fast driver of the one runner, strategies, metrics, reports, sweeps and the
look-ahead check. Front ends run a backtest through `run_backtest` here; the driver in
`backtest.engine` is this package's own (loaded on first use, so `agent-trade status` and
`agent-data` stay quick)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import core.engine_build  # noqa: F401  (first: the compiled engine or its source)

if TYPE_CHECKING:
    from backtest.engine import BacktestResult, run_backtest

__all__ = ["BacktestResult", "run_backtest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from backtest import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'backtest' has no attribute {name!r}")
