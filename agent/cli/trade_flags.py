"""`agent-trade`'s flags, apart from what runs them: `--help`, a mistyped flag, a run's flags
that contradict each other or the settings, and the server's check of a loop's flags load
neither the store's tables nor the loop's stack."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli.common import OneLineParser, add_common_args, settings_from
from agent.cli.equity import add_equity_args
from agent.cli.flags import account_name, finite, flag, given
from agent.cli.strategy_flags import add_param_args
from core.errors import UserError
from core.security import loose_env_file
from execution.signed_access import check_live_allowed

if TYPE_CHECKING:
    from config import Settings
    from config.settings import TradingSettings

COMMANDS = ("run", "status", "fills", "ledger", "halt", "resume", "reset-drawdown")
DEFAULT_REASONS = {
    "halt": "halted by a person",
    "resume": "cleared by a person",
    "reset-drawdown": "drawdown accepted by a person",
}
AGENT = "agent"
PAPER = "paper"


def parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="agent-trade",
        description="Trade unattended on a paper account; `status`, `halt` and `resume` steer it.",
    )
    parser.add_argument("command", nargs="?", default="run", choices=COMMANDS)
    parser.add_argument(
        "--account", type=account_name, help="account name (setting trading.account: paper)"
    )
    add_common_args(parser)
    loop = parser.add_argument_group("the loop (run)")
    loop.add_argument("--feed", choices=("replay", "binance", "bybit", "alpaca"), default="replay")
    loop.add_argument(
        "--speed", default="600", help="replay speed × real time, or max (as fast as it steps)"
    )
    loop.add_argument(
        "--data", type=Path, help="replay: a CSV of your own bars (1m; a stock's any) for --symbol"
    )
    loop.add_argument(
        "--exchange",
        help="replay a stock's stored bars: whose (alpaca, the one stock venue, holds what "
        "agent-data import and download stored)",
    )
    loop.add_argument("--symbol", help="comma-separated (setting trading.symbols)")
    loop.add_argument("--strategy", default=AGENT, help=f"{AGENT} (default) or a classic strategy")
    loop.add_argument(
        "--decide-every",
        type=int,
        help="the agent: minutes between decisions (setting trading.decide_every: 15)",
    )
    loop.add_argument("--size", help="a classic strategy: per entry, 'all' (default) or a percent")
    loop.add_argument(
        "--stop-loss",
        type=finite,
        help="stop-loss percent from the entry (the agent: where its own is looser or unset)",
    )
    loop.add_argument(
        "--take-profit",
        type=finite,
        help="take-profit percent from the entry (the agent: where its own is looser or unset)",
    )
    loop.add_argument(
        "--trailing-stop", type=finite, help="trailing stop percent below a long's highest high"
    )
    loop.add_argument(
        "--fee-bps", type=finite, help="paper: maker and taker fee (setting trading.paper_fee_bps)"
    )
    loop.add_argument(
        "--slippage-bps", type=finite, help="paper: slippage (setting trading.paper_slippage_bps)"
    )
    loop.add_argument("--mode", help="paper, testnet or live (setting trading.mode: paper)")
    loop.add_argument(
        "--shadow",
        metavar="STRATEGY",
        help="also run this rule strategy (default parameters) through the same gate on the same "
        "bars, into the paper account <account>-shadow, to compare with",
    )
    loop.add_argument(
        "--cash",
        type=finite,
        help="a new account's cash in its quote currency, USDT or USD (setting trading.cash)",
    )
    loop.add_argument("--max-bars", type=int, help="stop after this many bars")
    loop.add_argument("--drop-every", type=int, help="replay: drop the socket every N messages")
    loop.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on 127.0.0.1")
    loop.add_argument(
        "--budget-usd", type=finite, help="a paid model's spend cap; then safe mode (exits only)"
    )
    loop.add_argument("--yes", action="store_true", help="accept a paid model's cost estimate")
    add_equity_args(parser)
    out = parser.add_argument_group("status, fills and ledger")
    out.add_argument("--json", action="store_true", help="as JSON")
    steer = parser.add_argument_group("halt, resume and reset-drawdown (recorded)")
    steer.add_argument("--reason", help="why; kept on record with who did it")
    steer.add_argument("--by", help="who (default: the login name)")
    steer.add_argument(
        "--chat", action="store_true", help="resume or reset-drawdown: the UI chat's desk"
    )
    add_param_args(parser.add_argument_group("classic strategy parameters (as agent-backtest)"))
    return parser


_EVERY_COMMAND = frozenset({"account", "profile", "log_json", "data_dir"})
_COMMAND_FLAGS = {
    "status": {"json"},
    "fills": {"json"},
    "ledger": {"json"},
    "halt": {"reason", "by", "chat"},
    "resume": {"reason", "by", "chat"},
    "reset-drawdown": {"reason", "by", "chat"},
}


def only_its_flags(args: argparse.Namespace, argv: list[str]) -> None:
    """A command that reads or steers the store takes no loop flag (`status --mode live`, a
    `resume --fee-bps 5`): refused by name rather than ignored; a run takes no --json."""
    typed = given(parser, argv)
    if args.command == "run":
        if "json" in typed:
            raise UserError("--json is for status, fills and ledger, not for running the loop")
        return
    other = sorted(typed - _EVERY_COMMAND - _COMMAND_FLAGS[args.command])
    if other:
        raise UserError(
            f"{', '.join(flag(d) for d in other)}: not for `agent-trade {args.command}`"
            + (
                " (only for running the loop)"
                if set(other) - {"json", "reason", "by", "chat"}
                else ""
            )
        )


def no_steering(args: argparse.Namespace) -> None:
    if args.chat or args.by or args.reason:
        flag = "--chat" if args.chat else "--by" if args.by else "--reason"
        raise UserError(f"{flag} is for halt, resume and reset-drawdown")


def run_args(argv: list[str], host: str) -> argparse.Namespace:
    """`agent-trade`'s run flags for a loop that `host` runs; its other commands are refused."""
    args = parser().parse_args(argv)
    if args.command != "run":
        raise UserError(f"{host} runs the loop; `{args.command}` is for agent-trade")
    no_steering(args)
    return args


def settings_for(args: argparse.Namespace, **extra: object) -> Settings:
    """Settings with the flags on top; the account is the flag's, else `trading.account`."""
    if getattr(args, "chat", False) and args.account:
        raise UserError(
            f"--chat steers the UI chat's desk and --account {args.account!r} names another "
            "account: give one of them"
        )
    settings = settings_from(args, **extra)
    args.account = args.account or settings.trading.account
    return settings


def run_settings(args: argparse.Namespace) -> Settings:
    """A run's settings, its flags checked against them and each other, before the loop's stack
    (pandas, the store's tables, the feeds) is loaded: a refused run exits at once."""
    settings = settings_for(args, llm={"max_usd": args.budget_usd} if args.budget_usd else {})
    _check_run_args(args, settings.trading)
    if settings.risk.size_by_agreement:
        raise UserError(
            "risk.size_by_agreement has nothing to act on in agent-trade: the loop asks the "
            "model once per decision, so there is no agreement (it applies to agent-backtest "
            "--samples K)"
        )
    return settings


def _speed(raw: str) -> float:
    if raw.strip().lower() in ("max", "inf"):
        return math.inf
    try:
        speed = float(raw)
    except ValueError:
        speed = math.nan
    if not speed > 0:
        raise UserError(f"invalid --speed {raw}: a multiple of real time above 0, or max")
    return speed


def _check_run_args(args: argparse.Namespace, trading: TradingSettings) -> None:
    args.mode = args.mode or trading.mode
    check_live_allowed(args.mode, os.environ)
    args.cash = trading.cash if args.cash is None else args.cash
    args.symbol = ",".join(trading.symbols) if args.symbol is None else args.symbol
    if args.mode == "live" and (loose := loose_env_file()):
        raise UserError(f"live trading refused: {loose}")
    if args.mode == "live" and args.feed == "replay":
        raise UserError(
            "--mode live needs --feed binance, bybit or alpaca: replayed sample bars must never "
            "drive real orders"
        )
    args.speed = _speed(args.speed)
    if args.metrics_port is not None and not 0 < args.metrics_port < 65_536:
        raise UserError(f"invalid --metrics-port {args.metrics_port}: a port is 1 to 65535")
    if args.fee_bps is not None and args.fee_bps < 0:
        raise UserError(f"invalid --fee-bps {args.fee_bps:g}: a fee cannot be negative")
    if args.data is not None and args.feed != "replay":
        raise UserError("--data is replayed: it needs --feed replay")
    if args.mode != PAPER:
        given = [f for f in ("fee_bps", "slippage_bps") if getattr(args, f) is not None]
        if given:
            raise UserError(
                f"--{given[0].replace('_', '-')} is for paper accounts: on the exchange ({args.mode}) "
                "the exchange charges its own fees and fills at its own prices"
            )
    if args.strategy == AGENT:
        if args.size is not None:
            raise UserError(
                "--size does not apply to the agent: it proposes its own size, which the risk "
                "gate bounds"
            )
        if args.decide_every is None:
            args.decide_every = trading.decide_every
    elif args.decide_every is not None:
        raise UserError(
            f"--decide-every does not apply to {args.strategy}: a classic strategy decides on "
            "the bars where its signal fires"
        )
    if args.decide_every is not None and not 1 <= args.decide_every <= 1_440:
        raise UserError(f"invalid --decide-every {args.decide_every}: 1 to 1440 minutes")
    if not args.cash > 0:
        raise UserError(f"invalid --cash {args.cash:g}: must be above 0")
    if args.max_bars is not None and args.max_bars < 1:
        raise UserError(f"invalid --max-bars {args.max_bars}: at least 1")
    if args.budget_usd is not None and not args.budget_usd > 0:
        raise UserError(f"invalid --budget-usd {args.budget_usd:g}: must be above 0")
    if args.drop_every is not None and args.drop_every < 1:
        raise UserError(f"invalid --drop-every {args.drop_every}: at least 1")
