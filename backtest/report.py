"""The backtest report as one pydantic model: metrics (backtesting.py names and units), trades,
the equity and drawdown curves, order counts and the full config. Deterministic: the same run
serialises to the same bytes."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, TypeAdapter, field_serializer

from backtest.annualise import Basis
from backtest.engine import BacktestResult
from backtest.fills import FillOut, iso
from backtest.metrics import (
    METRIC_ORDER,
    buy_and_hold,
    drawdown,
    equity_metrics,
    exposure,
    trade_metrics,
    unavailable,
    warmup_shortfall,
)
from execution.ledger import TradeRecord
from execution.orders import ExitReason, Fill
from market.models import SymbolRules, interval_ms
from runtime.hours import TradingHours

END = ExitReason.END_OF_DATA
FILL_MODEL = (
    "signals at bar t's close are gated on that close and fill at bar t+1's open or later; "
    "market orders at the open plus slippage (a buy the open outran fills what the cash "
    "affords); limits when price trades through (touch optional); stops at the stop or "
    "the open if gapped; SL and TP both in one bar: stop first; see docs/fills.md"
)


class TradeOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    symbol: str
    side: str
    entry_time: str
    exit_time: str
    entry_price: float
    exit_price: float
    size: float
    pnl: float
    fees: float
    return_pct: float
    exit_reason: str
    dividends: float = 0.0  # received (a short: paid) while open, in pnl and return_pct


_JSON_CHUNK = 65_536  # values per piece of the streamed equity curve
_FLOATS = TypeAdapter(list[float])
_CURVES = (("time", TypeAdapter(list[int])), ("equity", _FLOATS), ("drawdown_pct", _FLOATS))


class EquityOut(BaseModel):
    """Columnar: one entry per bar, times in epoch ms (the bar's open time). Kept as numpy
    arrays: a million bars as Python lists take ~100 MB, and the JSON streams them in chunks."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    time: np.ndarray
    equity: np.ndarray
    drawdown_pct: np.ndarray

    @field_serializer("time", "equity", "drawdown_pct")
    def _listed(self, values: np.ndarray) -> list[Any]:
        return values.tolist()

    def json_chunks(self) -> Iterator[bytes]:
        """This section exactly as the report's `model_dump_json(indent=1)` writes it (two
        levels deep), a chunk of values at a time, so no whole-curve list or text is built."""
        yield b"{"
        for index, (name, adapter) in enumerate(_CURVES):
            values: np.ndarray = getattr(self, name)
            yield f'{"," if index else ""}\n  "{name}": '.encode()
            if not len(values):
                yield b"[]"
                continue
            yield b"["
            for start in range(0, len(values), _JSON_CHUNK):
                text = adapter.dump_json(values[start : start + _JSON_CHUNK].tolist(), indent=1)
                yield (b"," if start else b"") + text[1:-2].replace(b"\n ", b"\n   ")
            yield b"\n  ]"
        yield b"\n }"


class HaltOut(BaseModel):
    """Decision bars one halt skipped: no signal was asked for or gated while it held."""

    codes: list[str]
    message: str
    decision_bars: int
    first: str  # the first and last skipped bar's close (UTC)
    last: str


class OpenOut(BaseModel):
    """Trades still open on the last bar, marked at its close (a stock's: its last mark) with no
    exit fee: in the equity, not in the trade statistics."""

    trades: int = 0
    unrealised_pnl: float = 0.0  # net of the entry fee, before the exit fee
    unrealised_pct: float | None = None  # of the capital they tie up; None: nothing open


class OrdersOut(BaseModel):
    """What happened to the signals: vetoes and adjustments by the gate, rejections by the
    venue, each by reason code, plus bars where SL and TP were both reachable. Every count is
    broken down: signals by action, fills into entries and exits by reason (a stop or target
    fills without a signal; an order too big for a bar's volume fills in parts), closed
    trades by exit reason, and the trades still open at the end (marked, without a fill)."""

    signals: int
    signals_by_action: dict[str, int]
    approved: int
    vetoed: dict[str, int]
    adjusted: dict[str, int]
    rejected: dict[str, int]
    fills: int
    entry_fills: dict[str, int]
    exit_fills: dict[str, int]
    trades_by_exit: dict[str, int]
    ambiguous_sl_tp_bars: int
    open_orders_at_end: int
    open_at_end: OpenOut = OpenOut()
    halted: list[HaltOut] = []


class RunSummary(BaseModel):
    metrics: dict[str, Any]
    annualisation: Basis
    trades: list[TradeOut]
    orders: OrdersOut
    config: dict[str, Any]

    def sha256(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


class SweepRow(BaseModel):
    """One sweep point as a worker sends it back: the figures, and its trades already as the
    JSON the store keeps, so one string crosses the process boundary instead of a model per
    trade; `sha256` is its RunSummary's."""

    metrics: dict[str, Any]
    annualisation: Basis
    orders: OrdersOut
    config: dict[str, Any]
    trades_json: str
    summary_sha256: str

    @classmethod
    def of(cls, run: RunSummary) -> SweepRow:
        return cls(
            metrics=run.metrics,
            annualisation=run.annualisation,
            orders=run.orders,
            config=run.config,
            trades_json=json.dumps([t.model_dump() for t in run.trades]),
            summary_sha256=run.sha256(),
        )

    def sha256(self) -> str:
        return self.summary_sha256


class BacktestReport(BaseModel):
    metrics: dict[str, Any]
    annualisation: Basis
    trades: list[TradeOut]
    fills: list[FillOut]
    equity: EquityOut
    orders: OrdersOut
    config: dict[str, Any]
    agent: dict[str, Any] | None = None  # the LLM agent's section (agent.report), if it ran
    scorecard: dict[str, Any] | None = None  # its baselines and uncertainty (backtest.scorecard)

    def to_json(self) -> str:
        return b"".join(self.json_chunks()).decode()

    def json_chunks(self) -> Iterator[bytes]:
        """`model_dump_json(indent=1)` without the absent sections, the equity curve streamed
        in place: the rest is dumped whole and cut where the curve goes (before "orders", the
        only key at that depth: nested keys are indented deeper, text escapes its newlines)."""
        absent = {k for k in ("agent", "scorecard") if getattr(self, k) is None}
        rest = self.model_dump_json(indent=1, exclude={"equity", *absent}).encode()
        head, tail = rest.split(b'\n "orders": ', 1)
        yield head + b'\n "equity": '
        yield from self.equity.json_chunks()
        yield b',\n "orders": ' + tail

    def sha256(self) -> str:
        """The hash of `to_json()`, fed a chunk at a time."""
        digest = hashlib.sha256()
        for chunk in self.json_chunks():
            digest.update(chunk)
        return digest.hexdigest()


def _fill_kinds(fills: list[Fill]) -> tuple[dict[str, int], dict[str, int]]:
    """Fills that open or add to a position, and fills that reduce one, by reason."""
    held: dict[str, float] = {}
    entries: Counter[str] = Counter()
    exits: Counter[str] = Counter()
    for fill in fills:
        before = held.get(fill.symbol, 0.0)
        (exits if before * fill.side < 0 else entries)[fill.reason.value] += 1
        held[fill.symbol] = before + fill.side * fill.quantity
    return dict(sorted(entries.items())), dict(sorted(exits.items()))


def _open(trades: list[TradeRecord]) -> OpenOut:
    if not trades:
        return OpenOut()
    pnl = sum(t.pnl for t in trades)
    tied = sum(t.entry_price * t.size for t in trades)
    return OpenOut(trades=len(trades), unrealised_pnl=pnl, unrealised_pct=pnl / tied * 100)


def _by(values: list[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def _plain(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, times become ISO strings, numpy scalars Python ones."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, pd.Timedelta):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def compute_report_metrics(result: BacktestResult) -> dict[str, Any]:
    """All metrics in backtesting.py's order, plus Fees [$], Turnover [$], Rejected Orders."""
    return report_figures(result)[0]


def report_figures(result: BacktestResult) -> tuple[dict[str, Any], Basis]:
    """The metrics and the basis their annualised figures stand on (NaN where n/a)."""
    bars, trades, config = result.bars, result.trades, result.config
    step = interval_ms(config.interval)
    closed = [t for t in trades if t.exit_reason is not END]
    pnl = np.array([t.pnl for t in closed], dtype=np.float64)
    returns = np.array([t.return_pct for t in closed], dtype=np.float64)
    durations = np.array([t.exit_time - t.entry_time for t in closed], dtype=np.float64)
    entries = np.array([t.entry_bar for t in trades], dtype=np.int64)  # open ones are exposed
    exits = np.array([t.exit_bar for t in trades], dtype=np.int64)
    first, actions = result.first_tradable(), result.actions
    closes = [  # Buy & Hold at the run's marks, through its splits and dividends
        actions.held(s, bars.open_time, m, first) if actions else m for s, m in result.marks.items()
    ]
    equity, basis = equity_metrics(
        result.equity, bars.open_time, step, config.periods_per_year, config.bars_per_session
    )
    values = {
        **equity,
        **trade_metrics(pnl, returns, durations, step),
        "Exposure Time [%]": float(exposure(entries, exits, len(bars)).mean() * 100),
        "Buy & Hold Return [%]": buy_and_hold(closes, first),
        "Fees [$]": result.fees,
        "Turnover [$]": result.turnover,
        "Rejected Orders": len(result.rejections),
    }
    reasons = unavailable(values, pnl, len(trades) - len(closed))
    shortfall = warmup_shortfall(result.strategy.name, result.warmup_left, len(bars))
    if shortfall:
        reasons["Buy & Hold Return [%]"] = shortfall
    elif first >= len(bars) - 1:
        reasons["Buy & Hold Return [%]"] = (
            "no bar in market hours after the warm-up, before the last, to buy at"
        )
    basis.not_available = {**basis.not_available, **reasons}
    ordered = {name: values[name] for name in METRIC_ORDER}
    if actions and result.venue is not None:  # a stock's dividends, in the trades' PnL
        ordered = _after(ordered, "Fees [$]", "Dividends [$]", result.venue.ledger.dividends)
    return ordered, basis


def _after(values: dict[str, Any], name: str, new: str, value: Any) -> dict[str, Any]:
    """`values` with `new` inserted right after `name`."""
    items = list(values.items())
    at = [k for k, _ in items].index(name) + 1
    return dict([*items[:at], (new, value), *items[at:]])


def market_hours(hours: TradingHours | None) -> dict[str, Any]:
    """An equity run says which hours it filled in and that its prices are raw (as imported:
    splits and dividends are not applied to them); a crypto run has no hours to state."""
    if hours is None:
        return {}
    return {
        "asset_class": "us_equity",
        "market_hours": {
            "calendar": "XNYS",
            "fills": "extended hours" if hours.config.extended_hours else "regular hours",
            "when_closed": hours.config.when_closed.value,
        },
        "prices": "raw",
    }


def corporate_actions(result: BacktestResult) -> dict[str, Any]:
    """On raw prices, the splits and dividends the account followed and the cash they paid
    (dividends, and fractions of a share paid in lieu)."""
    if not result.actions or result.venue is None:
        return {}
    return {
        "corporate_actions": {
            **result.actions.counts(),
            "cash": round(result.venue.ledger.corporate_cash, 2),
            "dividend_cash": round(result.venue.ledger.dividends, 2),
            "indicators": "adjusted",
        }
    }


def filters(rules: Mapping[str, SymbolRules] | None) -> dict[str, dict[str, str]]:
    """Each symbol's tick and step, so reports show prices to the tick, sizes to the step."""
    return {
        s: {"tick_size": str(r.tick_size.normalize()), "step_size": str(r.step_size.normalize())}
        for s, r in sorted((rules or {}).items())
    }


def summary(
    result: BacktestResult,
    data_notes: list[str] | None = None,
    rules: Mapping[str, SymbolRules] | None = None,
    window: dict[str, Any] | None = None,
) -> RunSummary:
    """Everything but the per-bar curves: what sweeps ship back and what the store keeps."""
    bars, strategy, config = result.bars, result.strategy, result.config
    rejected: dict[str, int] = {}
    for rejection in result.rejections:
        rejected[rejection.code] = rejected.get(rejection.code, 0) + 1
    metrics, basis = report_figures(result)
    entry_fills, exit_fills = _fill_kinds(result.fills)
    return RunSummary(
        metrics={k: _plain(v) for k, v in metrics.items()},
        annualisation=basis,
        trades=[
            TradeOut(
                symbol=t.symbol,
                side=t.side,
                entry_time=iso(t.entry_time),
                exit_time=iso(t.exit_time),
                entry_price=t.entry_price,
                exit_price=t.exit_price,
                size=t.size,
                pnl=t.pnl,
                fees=t.fees,
                return_pct=t.return_pct * 100,
                exit_reason=t.exit_reason.value,
                dividends=t.dividends,
            )
            for t in result.trades
        ],
        orders=OrdersOut(
            signals=sum(result.signals_by_action.values()),
            signals_by_action=dict(
                sorted((a.value, n) for a, n in result.signals_by_action.items())
            ),
            approved=result.approved,
            vetoed=dict(sorted(result.vetoes.items())),
            adjusted=dict(sorted(result.adjustments.items())),
            rejected=dict(sorted(rejected.items())),
            fills=len(result.fills),
            entry_fills=entry_fills,
            exit_fills=exit_fills,
            trades_by_exit=_by(
                [t.exit_reason.value for t in result.trades if t.exit_reason is not END]
            ),
            ambiguous_sl_tp_bars=result.ambiguous_bars,
            open_orders_at_end=result.open_orders,
            open_at_end=_open([t for t in result.trades if t.exit_reason is END]),
            halted=[
                HaltOut(
                    codes=h.codes,
                    message=h.message,
                    decision_bars=h.bars,
                    first=iso(h.first_ms + 1),
                    last=iso(h.last_ms + 1),
                )
                for h in result.halted
            ],
        ),
        config={
            "strategy": strategy.name,
            "params": strategy.params.model_dump(),
            "symbols": list(bars.symbols),
            "interval": config.interval,
            "bars": len(bars),
            "first_bar": iso(int(bars.open_time[0])),
            "last_bar": iso(int(bars.open_time[-1])),
            "periods_per_year": config.periods_per_year,
            "fill_model": FILL_MODEL,
            "backtest": config.model_dump(mode="json"),
            "fee_function": result.fee_function,
            "filters": filters(rules),
            "risk_limits": result.limits.model_dump(mode="json"),
            "data": data_notes or [],
            "window": window,
            **market_hours(result.hours),
            **corporate_actions(result),
        },
    )


def _percent_down(drawdown: np.ndarray) -> np.ndarray:
    """The drawdown as a negative percent, in its own array (no two more copies of the curve);
    at a peak 0, not the -0 that negating 0 gives (JSON readers print it as "-0.0")."""
    np.negative(drawdown, out=drawdown)
    drawdown *= 100
    drawdown += 0.0  # -0.0 + 0.0 is 0.0; every other value stays as it is
    return drawdown


def build_report(
    result: BacktestResult,
    data_notes: list[str] | None = None,
    rules: Mapping[str, SymbolRules] | None = None,
    window: dict[str, Any] | None = None,
) -> BacktestReport:
    """The summary plus the equity and drawdown curves, one value per bar."""
    equity = EquityOut(
        time=result.bars.open_time.astype(np.int64, copy=False),
        equity=result.equity.astype(np.float64, copy=False),
        drawdown_pct=_percent_down(drawdown(result.equity)),
    )
    fills = [FillOut.of(fill) for fill in result.fills]
    summed = summary(result, data_notes, rules, window)
    return BacktestReport(**dict(summed), fills=fills, equity=equity)
