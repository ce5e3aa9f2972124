"""The report as terminal tables (rich): metrics, what happened to orders, and recent trades."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

from backtest.report import BacktestReport

_SHOWN_TRADES = 10


def fmt(value: Any) -> str:
    """One way to show a metric or cell, shared by the terminal and the HTML page."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1_000 else f"{value:.4g}"
    return str(value)


def _short_time(iso: str) -> str:
    """'2025-10-29T06:23:00Z' -> '10-29 06:23': trade rows must fit an 80-column terminal."""
    return f"{iso[5:10]} {iso[11:16]}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{code} {n:,}" for code, n in counts.items()) or "none"


def render(report: BacktestReport) -> Group:
    config = report.config
    params = ", ".join(f"{k}={v}" for k, v in config["params"].items())
    metrics = Table(
        title=f"{config['strategy']}({params}) on {', '.join(config['symbols'])} "
        f"{config['interval']}: {config['first_bar']} → {config['last_bar']}, {config['bars']:,} bars",
        caption=f"annualised with {config['annualisation']}",
    )
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for name, value in report.metrics.items():
        metrics.add_row(name, fmt(value))

    orders = report.orders
    summary = Table(title="Orders", show_header=False)
    summary.add_column("what")
    summary.add_column("count")
    summary.add_row(
        "signals / approved / filled",
        f"{orders.signals:,} / {orders.approved:,} / {orders.fills:,}",
    )
    summary.add_row("vetoed by the gate", _counts(orders.vetoed))
    summary.add_row("adjusted by the gate", _counts(orders.adjusted))
    summary.add_row("rejected by the venue", _counts(orders.rejected))
    summary.add_row(
        "bars with SL and TP both hit (stop assumed)", f"{orders.ambiguous_sl_tp_bars:,}"
    )
    summary.add_row("orders still open at the end", f"{orders.open_orders_at_end:,}")

    shown = report.trades[-_SHOWN_TRADES:]
    several = len(config["symbols"]) > 1
    trades = Table(
        title=f"Last {len(shown)} of {len(report.trades):,} trades (UTC)",
        caption="all trades: --json FILE or --html FILE",
        box=None,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    columns = [*(["symbol"] if several else []), "side", "entry", "exit", "in", "out"]
    for column in (*columns, "PnL", "reason"):
        left = column in ("symbol", "side", "reason")
        trades.add_column(column, justify="left" if left else "right", no_wrap=True)
    for t in shown:
        trades.add_row(
            *([t.symbol] if several else []),
            t.side,
            _short_time(t.entry_time),
            _short_time(t.exit_time),
            f"{t.entry_price:.2f}",
            f"{t.exit_price:.2f}",
            f"{t.pnl:,.2f}",
            t.exit_reason,
        )
    return Group(metrics, summary, trades)
