"""The report as terminal tables (rich): metrics, what happened to orders, and recent trades."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from rich.console import Group
from rich.table import Table

from backtest.annualise import Basis
from backtest.report import END, BacktestReport, OpenOut, OrdersOut
from backtest.scorecard_view import (
    CALIBRATION_COLUMNS,
    INTERVAL_COLUMNS,
    RESULT_COLUMNS,
    calibration_line,
    calibration_rows,
    interval_na_lines,
    interval_rows,
    ledger_columns,
    ledger_rows,
    result_na_lines,
    result_notes,
    result_rows,
)

_SHOWN_TRADES = 10
_SIGNIFICANT = 6  # prices and sizes show at least this many digits
OPEN = "open (marked)"  # a trade still open on the last bar, marked at its close


def fmt(value: Any) -> str:
    """One way to show a metric or cell, shared by the terminal and the HTML page."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1_000 else f"{value:.4g}"
    return str(value)


def to_unit(value: float, unit: str | None = None) -> str:
    """A price or quantity to its exchange unit (tick or step: '0.01' -> 2 decimals) and to at
    least 6 significant digits, with separators: past the unit without trailing zeros, so an
    unknown symbol's 1.0987e-08 reads 0.000000010987 and a size carries no float noise."""
    places = 0 if unit is None else max(0, -int(Decimal(unit).normalize().as_tuple().exponent))
    digits = places
    if value and math.isfinite(value):
        digits = max(places, _SIGNIFICANT - 1 - math.floor(math.log10(abs(value))))
    whole, _, fraction = f"{value:,.{digits}f}".partition(".")
    fraction = fraction.rstrip("0").ljust(places, "0")
    return f"{whole}.{fraction}" if fraction else whole


def money(value: float) -> str:
    return f"{value:,.2f}"


def metric_text(name: str, value: Any) -> str:
    """A metric as shown: dollar figures ([$]) to the cent like every other dollar amount, the
    rest by `fmt`."""
    if name.endswith("[$]") and isinstance(value, float | int):
        return money(value)
    return fmt(value)


def metric_cell(name: str, value: Any, basis: Basis) -> str:
    return "n/a" if name in basis.not_available else metric_text(name, value)


def basis_lines(basis: Basis) -> list[str]:
    """The annualisation basis, then one line per figure that is n/a, with its reason."""
    return [
        f"annualised on {basis.describe()}",
        *(f"n/a {name}: {why}" for name, why in basis.not_available.items()),
    ]


TRADE_COLUMNS = (
    "symbol",
    "side",
    "entry (UTC)",
    "exit (UTC)",
    "entry",
    "exit",
    "size",
    "PnL",
    "fees",
    "return [%]",
    "exit reason",
)


def trade_cells(report: BacktestReport) -> list[dict[str, str]]:
    """Every trade as text: prices and sizes by `to_unit`, money to the cent (the HTML page and
    the UI show these, never a raw float like -39.31361006399983)."""
    units = report.config.get("filters", {})
    rows = []
    for t in report.trades:
        unit = units.get(t.symbol, {})
        tick = unit.get("tick_size")
        values = (
            t.symbol,
            t.side,
            t.entry_time,
            t.exit_time,
            to_unit(t.entry_price, tick),
            to_unit(t.exit_price, tick),
            to_unit(t.size, unit.get("step_size")),
            money(t.pnl),
            money(t.fees),
            f"{t.return_pct:.3f}",
            _reason(t.exit_reason),
        )
        rows.append(dict(zip(TRADE_COLUMNS, values, strict=True)))
    return rows


def _reason(exit_reason: str) -> str:
    """A trade still open at the end has no exit: it says so."""
    return OPEN if exit_reason == END.value else exit_reason


def _short_time(iso: str) -> str:
    """'2025-10-29T06:23:00Z' -> '10-29 06:23': trade rows must fit an 80-column terminal."""
    return f"{iso[5:10]} {iso[11:16]}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{code} {n:,}" for code, n in counts.items()) or "none"


def _total(counts: dict[str, int]) -> str:
    return f"{sum(counts.values()):,}" + (f" ({_counts(counts)})" if counts else "")


def _open(held: OpenOut) -> str:
    if not held.trades or held.unrealised_pct is None:
        return "0"
    return (
        f"{held.trades:,} (unrealised {held.unrealised_pct:+.2f} %, "
        f"{held.unrealised_pnl:+,.2f}, before the exit fee)"
    )


def order_rows(orders: OrdersOut) -> list[tuple[str, str]]:
    """Every count with what it is made of, so none needs guessing (shared with the HTML)."""
    vetoed = sum(orders.vetoed.values())
    return [
        ("signals", _total(orders.signals_by_action)),
        ("approved by the gate", f"{orders.approved:,} of {orders.signals:,}"),
        ("vetoed by the gate", _total(orders.vetoed)),
        ("adjustments by the gate (per code)", _counts(orders.adjusted)),
        ("rejected by the venue", _total(orders.rejected)),
        (
            "fills",
            f"{orders.fills:,}: entries {_total(orders.entry_fills)}; "
            f"exits {_total(orders.exit_fills)}",
        ),
        ("closed trades by exit", _total(orders.trades_by_exit)),
        ("open at the end", _open(orders.open_at_end)),
        ("bars with SL and TP both hit (stop assumed)", f"{orders.ambiguous_sl_tp_bars:,}"),
        ("orders still open at the end", f"{orders.open_orders_at_end:,}"),
        *(
            (
                "halted: decision bars skipped",
                f"{h.decision_bars:,}, {h.message}, from {h.first} to {h.last}",
            )
            for h in orders.halted
        ),
        (
            "how they add up",
            f"signals = approved + vetoed ({orders.approved:,} + {vetoed:,}); stops and "
            "targets fill without a signal; an order too big for a bar fills in parts; "
            "a trade open at the end is marked at the last close, not filled, and left out "
            "of the trade statistics",
        ),
    ]


def render(report: BacktestReport) -> Group:
    config = report.config
    params = ", ".join(f"{k}={v}" for k, v in config["params"].items())
    basis = report.annualisation
    metrics = Table(
        title=f"{config['strategy']}({params}) on {', '.join(config['symbols'])} "
        f"{config['interval']}: {config['first_bar']} → {config['last_bar']}, {config['bars']:,} bars",
        caption="\n".join(basis_lines(basis)),
        caption_justify="left",
    )
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for name, value in report.metrics.items():
        metrics.add_row(name, metric_cell(name, value, basis))

    summary = Table(title="Orders", show_header=False)
    summary.add_column("what")
    summary.add_column("count")
    for row in order_rows(report.orders):
        summary.add_row(*row)
    return Group(metrics, summary, _trades(report))


def _trades(report: BacktestReport) -> Table:
    config = report.config
    units = config.get("filters", {})
    shown = report.trades[-_SHOWN_TRADES:]
    several = len(config["symbols"]) > 1
    sides = {t.side for t in report.trades}
    one_side = f" {next(iter(sides))}" if len(sides) == 1 else ""
    trades = Table(
        title=f"Last {len(shown)} of {len(report.trades):,}{one_side} trades (UTC)",
        caption="all trades: --json FILE or --html FILE",
        box=None,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    columns = [*(["symbol"] if several else []), *(["side"] if not one_side else [])]
    for column in (*columns, "entry", "exit", "in", "out", "PnL", "reason"):
        left = column in ("symbol", "side", "reason")
        trades.add_column(column, justify="left" if left else "right", no_wrap=True)
    for t in shown:
        tick = units.get(t.symbol, {}).get("tick_size")
        trades.add_row(
            *([t.symbol] if several else []),
            *([t.side] if not one_side else []),
            _short_time(t.entry_time),
            _short_time(t.exit_time),
            to_unit(t.entry_price, tick),
            to_unit(t.exit_price, tick),
            money(t.pnl),
            _reason(t.exit_reason),
        )
    return trades


def render_scorecard(card: dict[str, Any]) -> Group:
    """Does the model earn its keep: the runs side by side with their intervals, the veto
    ledger, the calibration."""
    parts: list[Any] = [
        _plain_table(
            "scorecard: the same bars through the same gate and fills",
            RESULT_COLUMNS,
            result_rows(card),
            "\n".join(result_na_lines(card)) or None,
        ),
        _plain_table(
            "95% intervals",
            INTERVAL_COLUMNS,
            interval_rows(card),
            "\n".join([*interval_na_lines(card), *result_notes(card)]),
        ),
        render_ledger(card["veto_ledger"]),
    ]
    if card["calibration"]["groups"]:
        parts.append(
            _plain_table(
                "calibration by stated confidence",
                CALIBRATION_COLUMNS,
                calibration_rows(card),
                calibration_line(card),
            )
        )
    else:
        parts.append(calibration_line(card))
    return Group(*parts)


def render_ledger(ledger: dict[str, Any]) -> Table:
    """The veto ledger by reason code, as the scorecard and `agent-trade ledger` show it."""
    card = {"veto_ledger": ledger}
    return _plain_table(
        "veto ledger: what each gate rule saved (+) or cost (−) [$]",
        ledger_columns(card),
        ledger_rows(card),
        "counterfactual: " + ledger["basis"],
    )


def _plain_table(
    title: str, columns: Sequence[str], rows: list[list[str]], caption: str | None = None
) -> Table:
    """The first column never wraps; the others right-aligned."""
    table = Table(title=title, caption=caption, caption_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        table.add_row(*row)
    return table
