"""`agent-trade`'s flags, apart from what runs them: `--help`, a mistyped flag and the
server's check of a loop's flags load neither the store's tables nor the loop's stack."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.cli.common import OneLineParser, add_common_args
from agent.cli.equity import add_equity_args
from agent.cli.strategy_flags import add_param_args
from core.errors import UserError

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
    parser.add_argument("--account", help="account name (setting trading.account: paper)")
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
    loop.add_argument("--stop-loss", type=float, help="a classic strategy: stop-loss percent")
    loop.add_argument("--take-profit", type=float, help="a classic strategy: take-profit percent")
    loop.add_argument(
        "--trailing-stop",
        type=float,
        help="a classic strategy: trailing stop percent below the high",
    )
    loop.add_argument(
        "--fee-bps", type=float, help="paper: maker and taker fee (setting trading.paper_fee_bps)"
    )
    loop.add_argument(
        "--slippage-bps", type=float, help="paper: slippage (setting trading.paper_slippage_bps)"
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
        type=float,
        help="a new account's cash in its quote currency, USDT or USD (setting trading.cash)",
    )
    loop.add_argument("--max-bars", type=int, help="stop after this many bars")
    loop.add_argument("--drop-every", type=int, help="replay: drop the socket every N messages")
    loop.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on 127.0.0.1")
    loop.add_argument(
        "--budget-usd", type=float, help="a paid model's spend cap; then safe mode (exits only)"
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
