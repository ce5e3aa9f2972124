"""The report as an HTML page: plotly candles with volume and trade markers, the equity curve
and the drawdown, then the metrics (with their annualisation basis) and every trade.

Charts carry at most `MAX_POINTS` points per series (a screen shows no more), so 3 days of two
symbols stay well under 1.5 MB. plotly.js (3.5 MB) is either inlined, for a single file to
download, or written once beside the reports as plotly.min.js and shared by all of them."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from backtest import scorecard_view as view
from backtest.engine import BacktestResult
from backtest.report import BacktestReport
from backtest.terminal import (
    TRADE_COLUMNS,
    basis_lines,
    fmt,
    metric_cell,
    order_rows,
    trade_cells,
)

MAX_POINTS = 1_500  # per series: about a screen's width in pixels; longer runs are bucketed
PLOTLY_JS = "plotly.min.js"


def _buckets(n: int) -> np.ndarray:
    """Start index of each display bucket (every bar when the run is short)."""
    return np.arange(0, n, max(1, -(-n // MAX_POINTS)))


def _times(ms: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(ms, unit="ms", utc=True)


def figure(report: BacktestReport, result: BacktestResult) -> go.Figure:
    bars = result.bars
    symbols = list(bars.symbols)
    starts = _buckets(len(bars))
    ends = np.r_[starts[1:], len(bars)] - 1
    x = _times(bars.open_time[starts])
    rows = 2 * len(symbols) + 2
    share = 0.6 / len(symbols)
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.02,
        row_heights=[share * 0.75, share * 0.25] * len(symbols) + [0.25, 0.15],
        subplot_titles=[
            *(t for s in symbols for t in (s, f"{s} volume")),
            "Equity [$]",
            "Drawdown [%]",
        ],
    )
    for index, symbol in enumerate(symbols):
        row = 2 * index + 1
        b = bars.symbols[symbol]
        fig.add_trace(
            go.Bar(
                x=x,
                y=np.add.reduceat(b.volume, starts),
                name=f"{symbol} volume",
                marker={"color": "silver"},
                showlegend=False,
            ),
            row=row + 1,
            col=1,
        )
        fig.add_trace(
            go.Candlestick(
                x=x,
                open=b.open[starts],
                high=np.maximum.reduceat(b.high, starts),
                low=np.minimum.reduceat(b.low, starts),
                close=b.close[ends],
                name=symbol,
                showlegend=False,
            ),
            row=row,
            col=1,
        )
        trades = [t for t in report.trades if t.symbol == symbol]
        fig.add_trace(
            go.Scatter(
                x=pd.to_datetime([t.entry_time for t in trades]),
                y=[t.entry_price for t in trades],
                mode="markers",
                name=f"{symbol} entries",
                marker={
                    "symbol": [
                        "triangle-up" if t.side == "long" else "triangle-down" for t in trades
                    ],
                    "size": 10,
                    "color": "royalblue",
                },
                text=[f"{t.side} {t.size:.6g} @ {t.entry_price:,.2f}" for t in trades],
            ),
            row=row,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=pd.to_datetime([t.exit_time for t in trades]),
                y=[t.exit_price for t in trades],
                mode="markers",
                name=f"{symbol} exits",
                marker={
                    "symbol": "x",
                    "size": 9,
                    "color": ["seagreen" if t.pnl > 0 else "crimson" for t in trades],
                },
                text=[f"{t.exit_reason}: PnL {t.pnl:,.2f}" for t in trades],
            ),
            row=row,
            col=1,
        )
        _decision_markers(fig, report, symbol, row)
    equity = np.asarray(report.equity.equity)
    fig.add_trace(
        go.Scatter(x=x, y=equity[ends], name="equity", line={"color": "black"}),
        row=rows - 1,
        col=1,
    )
    dd = np.minimum.reduceat(np.asarray(report.equity.drawdown_pct), starts)
    fig.add_trace(
        go.Scatter(x=x, y=dd, name="drawdown", fill="tozeroy", line={"color": "crimson"}),
        row=rows,
        col=1,
    )
    fig.update_layout(height=300 * rows, xaxis_rangeslider_visible=False, hovermode="x unified")
    for row in range(1, rows + 1):
        fig.update_xaxes(rangeslider_visible=False, row=row, col=1)
    return fig


_DECISION_COLOURS = {"approved": "seagreen", "vetoed": "darkorange", "abstain": "crimson"}


def _decision_markers(fig: go.Figure, report: BacktestReport, symbol: str, row: int) -> None:
    """The agent's decisions on the price chart, coloured by verdict, the rationale on hover."""
    if report.agent is None:
        return
    log = [d for d in report.agent["decision_log"] if d["symbol"] == symbol]
    times = pd.to_datetime([d["time"] for d in log])
    fig.add_trace(
        go.Scatter(
            x=times,
            y=[d["price"] for d in log],
            mode="markers",
            name=f"{symbol} decisions",
            marker={
                "symbol": "diamond",
                "size": 7,
                "color": [_DECISION_COLOURS.get(d["verdict"], "grey") for d in log],
            },
            text=[
                f"{d['verdict']}: {d['action'] or 'no signal'} "
                f"{d['order'] or ''}<br>{escape(d['rationale'])}"
                for d in log
            ],
            hoverinfo="text",
        ),
        row=row,
        col=1,
    )


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fact(value: Any) -> Any:
    """A figure the run could not compute (None) reads n/a; its reason is on its own row."""
    if value is None:
        return "n/a"
    if isinstance(value, dict):
        return ", ".join(f"{a} {b}" for a, b in value.items())
    return value


def _agent_html(report: BacktestReport) -> str:
    agent = report.agent
    if agent is None:
        return ""
    llm = agent["llm"]
    facts = [[k, _fact(v)] for k, v in {**llm, **agent.get("run", {})}.items()]
    log = [
        [
            d["time"],
            d["symbol"],
            d["action"],
            d["confidence"],
            d["verdict"],
            ", ".join(d["codes"]),
            d["order"],
            d["rationale"],
        ]
        for d in agent["decision_log"]
    ]
    return f"""<h2>Agent: {escape(agent["model"])}, every {agent["decide_every_min"]} min</h2>
{_table(["what", "value"], facts)}
{_scorecard_html(report)}
<h2>Decision log</h2>
{_table(["time", "symbol", "action", "confidence", "verdict", "codes", "order", "rationale"], log)}"""


def _scorecard_html(report: BacktestReport) -> str:
    card = report.scorecard
    if card is None:
        return ""
    notes = _items([*view.interval_na_lines(card), *view.result_notes(card)])
    calibrated = ""
    if card["calibration"]["groups"]:
        calibrated = _table(
            list(view.CALIBRATION_COLUMNS), view.calibration_rows(card)
        ) + _reliability(card["calibration"]["groups"])
    return f"""<h2>Scorecard: the same bars through the same gate and fills</h2>
{_table(list(view.RESULT_COLUMNS), view.result_rows(card))}
<ul>{_items(view.result_na_lines(card))}</ul>
{_table(list(view.INTERVAL_COLUMNS), view.interval_rows(card))}
<ul>{notes}</ul>
{_comparison_html(card.get("compare"))}
<h2>Veto ledger: what each gate rule saved (+) or cost (−) [$]</h2>
{_table(view.ledger_columns(card), view.ledger_rows(card))}
<p>Counterfactual: {escape(card["veto_ledger"]["basis"])}.</p>
<h2>Calibration by stated confidence</h2>
<p>{escape(view.calibration_line(card))}</p>
{calibrated}"""


def _comparison_html(paired: dict[str, Any] | None) -> str:
    """`--compare`'s paired A/B, as the terminal shows it."""
    if paired is None:
        return ""
    title = view.comparison_title(paired)
    return f"<h2>{escape(title[0].upper() + title[1:])}</h2>\n" + _table(
        ["what", "value"], view.comparison_rows(paired)
    )


def _items(lines: list[str]) -> str:
    return "".join(f"<li>{escape(line)}</li>" for line in lines)


def _reliability(groups: list[dict[str, Any]], size: int = 240) -> str:
    """A reliability plot: hit rate against mean stated confidence per group, dot area by count;
    on the diagonal a model's confidence means what it says."""
    pad, span = 30, size - 40
    most = max(g["decisions"] for g in groups)

    def x(v: float) -> float:
        return pad + v * span

    def y(v: float) -> float:
        return size - pad - v * span

    dots = "".join(
        f'<circle cx="{x(g["mean_confidence"]):.1f}" cy="{y(g["hit_rate"]):.1f}" '
        f'r="{3 + 7 * (g["decisions"] / most) ** 0.5:.1f}" fill="#1f77b4">'
        f"<title>{g['decisions']} decisions: confidence {g['mean_confidence']:.2f}, "
        f"hit rate {g['hit_rate']:.2f}</title></circle>"
        for g in groups
    )
    return f"""<svg class="reliability" width="{size}" height="{size}" role="img"
aria-label="reliability plot"><rect x="{pad}" y="{pad - 10}" width="{span}" height="{span}"
fill="none" stroke="#ccc"/><line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}"
stroke="#999" stroke-dasharray="4"/>{dots}
<text x="{size / 2}" y="{size - 4}" text-anchor="middle" font-size="11">stated confidence</text>
<text x="10" y="{size / 2}" font-size="11" transform="rotate(-90 10 {size / 2})"
text-anchor="middle">hit rate</text></svg>"""


def page_files(path: Path, report: BacktestReport, result: BacktestResult) -> dict[Path, str]:
    """The page, and plotly.min.js beside it unless an earlier report already put this
    version there: it opens offline, and ten reports load one copy of plotly.js. Another
    version (an older install's, anyone's) is replaced: the page is drawn for this one."""
    files = {path: page(report, result, include_plotlyjs="directory")}
    script = path.parent / PLOTLY_JS
    bundled = get_plotlyjs()
    if not (script.is_file() and script.read_text(errors="replace") == bundled):
        files[script] = bundled
    return files


def page(
    report: BacktestReport, result: BacktestResult, include_plotlyjs: bool | str = True
) -> str:
    """A full HTML document; plotly.js inlined by default, so it opens without a network."""
    config = report.config
    params = ", ".join(f"{k}={v}" for k, v in config["params"].items())
    title = f"{config['strategy']}({params}) on {', '.join(config['symbols'])} {config['interval']}"
    trade_rows = [list(row.values()) for row in trade_cells(report)]
    plot = pio.to_html(figure(report, result), full_html=False, include_plotlyjs=include_plotlyjs)
    basis = report.annualisation
    metric_rows = [[k, metric_cell(k, v, basis)] for k, v in report.metrics.items()]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}td:first-child{{text-align:left}}</style>
</head><body>
<h1>{escape(title)}</h1>
<p>{escape(config["first_bar"])} → {escape(config["last_bar"])} UTC, {config["bars"]:,} bars.
Fills: {escape(config["fill_model"])}.</p>
{plot}
<h2>Metrics</h2>
{_table(["metric", "value"], metric_rows)}
<ul>{"".join(f"<li>{escape(line)}</li>" for line in basis_lines(basis))}</ul>
<h2>Orders</h2>
{_table(["what", "count"], [list(row) for row in order_rows(report.orders)])}
{_agent_html(report)}
<h2>Trades</h2>
{_table(list(TRADE_COLUMNS), trade_rows)}
</body></html>
"""
