"""`agent-backtest`'s flags and the checks that need no data, apart from what runs them:
`--help`, a mistyped flag or a strategy's bad parameters load neither pandas nor the store, and
`agent-trade` and the UI reuse the strategy, sizing, fill and rules checks."""

from __future__ import annotations

import argparse
import os
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agent.cli.agent_flags import add_agent_args
from agent.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OUTAGE,
    EXIT_RUNTIME,
    EXIT_USER,
    OneLineParser,
    add_common_args,
    notify,
)
from agent.cli.equity import add_equity_args
from agent.cli.flags import finite, positive_int
from agent.cli.strategy_flags import add_param_args, param_flags
from backtest.strategies import STRATEGIES
from core.errors import UserError
from market.instruments import STOCK_EXCHANGE, AssetClass
from market.models import EXCHANGE, INTERVAL_MS, SymbolRules
from runtime.strategy import Strategy
from venues.names import listed_symbols, parse_exchange

if TYPE_CHECKING:  # for annotations: BacktestConfig's metrics load pandas
    from backtest.config import BacktestConfig
    from config.settings import BacktestSettings

DEFAULT_DAYS = 3.0
_NO_MAX_QTY = Decimal(10**30)  # SymbolRules takes no infinity: this bound no order reaches
MIN_BARS = 2  # a run compares each bar with the one before: fewer can only fail on the data
DESCRIPTION = """`agent-backtest`: replay a classic strategy over historical bars through the
risk gate and the simulated executor, print the report, write JSON/HTML, sweep parameters,
check for look-ahead."""
AGENT = "agent"
EPILOG = (
    f"exit codes: 0 done; {EXIT_RUNTIME} look-ahead found (--check-lookahead); {EXIT_USER} a "
    f"usage, config or data mistake, or an LLM endpoint that refuses the key or the request "
    f"(nothing saved); {EXIT_OUTAGE} the LLM endpoint failed llm.breaker_failures decisions in a "
    f'row (timeouts, 5xx, empty replies): a partial report, marked "partial": true; '
    f"{EXIT_INTERRUPTED} interrupted (Ctrl-C). Ctrl-C while the "
    "agent decides lets the decisions in flight finish, then still prints and writes the report, "
    f'marked "partial": true, before exiting with {EXIT_INTERRUPTED}.'
)


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="agent-backtest", description=DESCRIPTION, epilog=EPILOG)
    add_common_args(parser)
    parser.add_argument(
        "--strategy", default=AGENT, help=f"{AGENT} (default) or one of {', '.join(STRATEGIES)}"
    )
    parser.add_argument("--symbol", default="BTCUSDT", help="e.g. BTCUSDT or BTCUSDT,ETHUSDT")
    parser.add_argument("--interval", default="1m", help=f"one of {', '.join(INTERVAL_MS)}")
    span = parser.add_mutually_exclusive_group()
    span.add_argument("--days", type=finite, help=f"the last N days (default {DEFAULT_DAYS:g})")
    span.add_argument("--start", help="UTC start, YYYY-MM-DD[THH:MM] (needs --end)")
    parser.add_argument("--end", help="UTC end, exclusive")
    parser.add_argument("--data", type=Path, help="a CSV of your own bars for --symbol")
    parser.add_argument(
        "--exchange",
        help="whose stored bars and rules: binance (a coin's default) or bybit; alpaca (a US "
        "stock's)",
    )

    add_param_args(parser.add_argument_group("strategy parameters"))

    account = parser.add_argument_group("account and fills (docs/fills.md)")
    account.add_argument("--cash", type=finite, help="starting USDT (setting backtest.cash)")
    account.add_argument(
        "--size", default="all", help="per entry: 'all' equity (default) or a percent, e.g. 25"
    )
    account.add_argument(
        "--allow-short", action="store_true", help="propose shorts (the gate decides)"
    )
    account.add_argument("--stop-loss", type=finite, help="stop-loss percent below/above the entry")
    account.add_argument("--take-profit", type=finite, help="take-profit percent from the entry")
    account.add_argument(
        "--trailing-stop", type=finite, help="trailing stop percent below a long's highest high"
    )
    account.add_argument(
        "--fee-bps", type=finite, help="maker and taker fee, 10 = 0.1%% (setting backtest.fee_bps)"
    )
    account.add_argument("--maker-bps", type=finite, help="maker fee, if different from --fee-bps")
    account.add_argument(
        "--slippage-bps", type=finite, help="taker slippage (setting backtest.slippage_bps)"
    )
    account.add_argument(
        "--max-participation",
        type=finite,
        help="volume model: fill at most this fraction of a bar's volume, impact 0.1 x share²",
    )
    account.add_argument("--limit-on-touch", action="store_true", help="a touch fills a limit")

    out = parser.add_argument_group("output")
    out.add_argument("--json", type=Path, help="write the report as JSON")
    out.add_argument(
        "--html",
        type=Path,
        help="write an HTML report, and plotly.min.js beside it (the page loads it from its folder, "
        "so it opens offline)",
    )
    out.add_argument("--check-lookahead", action="store_true", help="recompute on truncated data")

    add_agent_args(parser)
    add_equity_args(parser)

    sweep = parser.add_argument_group("sweeps")
    sweep.add_argument(
        "--sweep", action="append", default=[], help="NAME=START:STOP:STEP, repeatable"
    )
    sweep.add_argument("--rank-by", default="return", help="metric to rank a sweep by (return)")
    sweep.add_argument("--executor", choices=("process", "ray"), default="process")
    sweep.add_argument(
        "--workers", type=positive_int, help="parallel processes (default: all cores)"
    )
    sweep.add_argument("--top", type=positive_int, default=10, help="rows of the ranking to print")
    return parser


def check_outputs(args: argparse.Namespace) -> None:
    """--json and --html, refused before the run rather than after it (a paid model's calls
    spent, a JSON written and the run unsaved): two flags naming one file, where the second
    would overwrite the first, or a file whose folder is missing or read-only."""
    outputs = {f"--{name}": getattr(args, name) for name in ("json", "html")}
    outputs = {flag: path for flag, path in outputs.items() if path is not None}
    if len({path.resolve() for path in outputs.values()}) < len(outputs):
        raise UserError(f"--json and --html name the same file {args.json}: give each its own")
    for flag, path in outputs.items():
        folder = path.parent
        if path.is_dir():
            raise UserError(f"cannot write {flag} {path}: it is a folder")
        if not folder.is_dir():
            raise UserError(f"cannot write {flag} {path}: no such folder {folder}")
        if not os.access(folder, os.W_OK | os.X_OK) or (
            path.exists() and not os.access(path, os.W_OK)
        ):
            raise UserError(f"cannot write {flag} {path}: permission denied")


def _strategy_params(args: argparse.Namespace) -> tuple[type[Strategy] | None, dict[str, Any]]:
    """The classic strategy and its given parameters; (None, {}) for the agent."""
    given = {f: getattr(args, f) for f in param_flags() if getattr(args, f) is not None}
    if args.strategy == AGENT:
        if given or args.sweep:
            flags = ", ".join(f"--{f.replace('_', '-')}" for f in given) or "--sweep"
            raise UserError(f"{flags} does not apply to the agent: pick --strategy sma_cross etc.")
        return None, {}
    cls = STRATEGIES.get(args.strategy)
    if cls is None:
        raise UserError(
            f"unknown strategy {args.strategy!r}: choose {AGENT} or one of {', '.join(STRATEGIES)}"
        )
    foreign = [f for f in given if f not in cls.Params.model_fields]
    if foreign:
        flags = ", ".join(f"--{f.replace('_', '-')}" for f in foreign)
        raise UserError(f"{flags} does not apply to {cls.name}")
    return cls, given


def _build_strategy(cls: type[Strategy], params: dict[str, Any]) -> Strategy:
    try:
        return cls(cls.Params(**params))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise UserError(
            f"invalid {cls.name} parameters: {where + ': ' if where else ''}{message}"
        ) from None


def check_days(days: float, interval: str, flag: str = "--days") -> float:
    """`days` as a window that can hold a run's bars, or a UserError naming `flag`: a window
    shorter than two bars fails only once the data is loaded, in words about the data."""
    if not days > 0:
        raise UserError(f"invalid {flag} {days:g}: must be greater than 0")
    least = MIN_BARS * INTERVAL_MS[interval] / 86_400_000
    if days < least:
        raise UserError(
            f"invalid {flag} {days:g}: shorter than {MIN_BARS} {interval} bars ({least:g} days)"
        )
    return days


def check_range(start_ms: int, end_ms: int, interval: str, start: str, end: str) -> None:
    """`start` (inclusive) to `end` (exclusive), as given, hold at least two bars; else a
    UserError that begins with how `end` was named (a flag, or the API's field)."""
    if end_ms <= start_ms:
        raise UserError(f"{end} is not after {start}")
    if end_ms - start_ms < MIN_BARS * INTERVAL_MS[interval]:
        raise UserError(f"{end} is less than {MIN_BARS} {interval} bars after {start}")


def _size(raw: str) -> float:
    if raw.strip().lower() == "all":
        return 1.0
    try:
        pct = float(raw.strip().rstrip("%"))
    except ValueError:
        pct = float("nan")
    if not 0 < pct <= 100:
        raise UserError(f"invalid --size {raw!r}: 'all' or a percent of equity in (0, 100]")
    return pct / 100


def _percent(value: float | None) -> float | None:
    """A percent flag as a fraction; the config's bounds then name a bad one."""
    return None if value is None else value / 100


def _config(args: argparse.Namespace, interval: str, defaults: BacktestSettings) -> BacktestConfig:
    """The run's account and fills: each flag given, else its setting."""
    from backtest.config import BacktestConfig  # its metrics load pandas: not for the flags

    fee_bps = defaults.fee_bps if args.fee_bps is None else args.fee_bps
    if fee_bps < 0:
        raise UserError(
            f"invalid --fee-bps {fee_bps:g}: a fee cannot be negative (a maker rebate "
            "goes in --maker-bps)"
        )
    maker_bps = args.maker_bps if args.maker_bps is not None else defaults.maker_bps
    slippage_bps = defaults.slippage_bps if args.slippage_bps is None else args.slippage_bps
    taker = fee_bps / 10_000
    maker = (fee_bps if maker_bps is None else maker_bps) / 10_000
    # Validated as the config's own fields, so a bad value is named where it sits
    # (slippage.fixed.bps, fees.maker), and inside the try, so it is one line, not a traceback.
    slippage: dict[str, object] = {"kind": "fixed", "bps": slippage_bps}
    if args.max_participation is not None:
        slippage |= {"kind": "volume", "max_participation": args.max_participation}
    try:
        return BacktestConfig.model_validate(
            {
                "cash": defaults.cash if args.cash is None else args.cash,
                "size_pct": _size(args.size),
                "allow_short": args.allow_short,
                "fees": {"maker": maker, "taker": taker},
                "slippage": slippage,
                "limit_on_touch": args.limit_on_touch,
                "stop_loss_pct": _percent(args.stop_loss),
                "take_profit_pct": _percent(args.take_profit),
                "trailing_stop_pct": _percent(args.trailing_stop),
                "interval": interval,
            }
        )
    except ValidationError as exc:
        raise flag_error(exc, args, "backtest setting") from None


def flag_error(exc: ValidationError, args: argparse.Namespace, what: str) -> UserError:
    """A fill model's field refused, as the flag that set it, in its units (bps, percent)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    flag = _flag_of(where, args)
    bound = _bound(first.get("ctx") or {}, flag[1]) if flag else None
    if flag is None or bound is None:
        return UserError(f"invalid {what} {where}: {first['msg']}")
    return UserError(f"invalid {flag[0]} {first['input'] * flag[1]:g}: {bound}")


_FLAG_SCALES = {  # a config field, as the flag that sets it and its units per field unit
    "fees.taker": ("--fee-bps", 10_000),
    "slippage.fixed.bps": ("--slippage-bps", 1),
    "slippage.volume.max_participation": ("--max-participation", 1),
    "stop_loss_pct": ("--stop-loss", 100),
    "take_profit_pct": ("--take-profit", 100),
    "trailing_stop_pct": ("--trailing-stop", 100),
    "cash": ("--cash", 1),
}


_BARE = {"maker": "fees.maker", "taker": "fees.taker", "bps": "slippage.fixed.bps"}


def _flag_of(where: str, args: argparse.Namespace) -> tuple[str, float] | None:
    """The flag behind a config field, so its error speaks the flag's units (bps, percent)."""
    where = _BARE.get(where, where)  # a fee or slippage model built on its own (agent-trade)
    if where == "fees.maker":
        maker = getattr(args, "maker_bps", None)  # agent-trade has none: its fee is both
        return ("--maker-bps" if maker is not None else "--fee-bps", 10_000)
    return _FLAG_SCALES.get(where)


def _bound(ctx: dict[str, object], scale: float) -> str | None:
    """A numeric bound pydantic reports, in the flag's units."""
    words = {"le": "at most", "lt": "below", "ge": "at least", "gt": "above"}
    for key, word in words.items():
        limit = ctx.get(key)
        if isinstance(limit, int | float):
            value = limit * scale
            shown = f"{value:,.0f}" if float(value).is_integer() else f"{value:,g}"
            return f"must be {word} {shown}"
    return None


def _rules(
    symbols: list[str], notes: list[str], known: dict[str, SymbolRules] | None = None
) -> dict[str, SymbolRules]:
    """Real Binance filters (`known`: the venue's, else the bundled capture's); symbols with
    none trade unchecked, said once: no grid (a step of 0 rounds nothing), no minimum and a
    maximum no order reaches, so a coin priced at 1e-9 trades at its own prices."""
    if known is None:
        from market.sample import sample_rules  # pandas: only when no venue's rules are known

        known = sample_rules()
    rules: dict[str, SymbolRules] = {}
    for symbol in symbols:
        if symbol in known:
            rules[symbol] = known[symbol]
            continue
        _note(
            notes,
            f"notice: no exchange filters known for {symbol}; orders are not checked "
            "against tickSize, stepSize, minQty, maxQty or minNotional",
        )
        rules[symbol] = SymbolRules(
            symbol=symbol,
            base_asset=symbol,
            quote_asset="USDT",
            tick_size=Decimal(0),
            step_size=Decimal(0),
            min_qty=Decimal(0),
            max_qty=_NO_MAX_QTY,
            min_notional=Decimal(0),
        )
    return rules


def check_exchange(args: argparse.Namespace, kind: AssetClass) -> str:
    """The venue whose stored bars the run reads (a stock's, imported or downloaded, are
    Alpaca's; a coin's Binance's unless named); one that cannot apply exits 2."""
    if args.exchange is None:
        return STOCK_EXCHANGE if kind is AssetClass.EQUITY else EXCHANGE
    if args.data is not None:
        raise UserError("--exchange picks the store's bars of a venue: --data reads your own file")
    exchange = parse_exchange(args.exchange)
    listed_symbols(exchange, args.symbol)  # a stock on a crypto venue, or a coin on Alpaca: exit 2
    return exchange


def _note(notes: list[str], line: str) -> None:
    notes.append(line)
    notify(line)
