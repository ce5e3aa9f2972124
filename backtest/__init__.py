"""Backtests: the engine loop, strategies, metrics, reports, sweeps and the look-ahead check."""
