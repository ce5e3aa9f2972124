"""Imported first by each package that holds a hot module (backtest, execution, risk, runtime):
picks the compiled build or the source before any of them loads (see core.native)."""

from core.native import choose

BUILD = choose()
"""Which build runs, in words: benchmarks and reports print it beside their figures."""
