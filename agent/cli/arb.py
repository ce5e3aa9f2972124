"""`agent-arb`: the cross-exchange spread and a dry-run arbitrage loop between Binance and Bybit.

    agent-arb scan --symbol BTCUSDT --exchanges binance,bybit   the spread, net of both fees
    agent-arb scan --books --size 0.05 --seconds 30             ... from both live order books
    agent-arb run --mode paper --quantity 0.05                  pairs on paper, journaled
    agent-arb run --mode paper --rebalance-at 0.5               ... moving inventory when it drifts
    agent-arb run --books --quantity 0.01 --seconds 60          pairs off both live order books
    agent-arb run --books --mode testnet --max-pairs 1          ... signed, on both testnets

Both read same-minute 1m bars: the store's (after `agent-data download --exchange ...` for
each venue) or, when the store lacks them, the bundled real day, and say which. `--books`
reads both venues' live order books instead (it needs both streams, so it is opt-in); testnet
and live decide from them only.
"""

from __future__ import annotations

import argparse

from agent.cli.common import OneLineParser, add_common_args, run, settings_from
from agent.cli.flags import account_name, finite, non_negative
from core.collector import imports_frozen
from store import open_store


def _parser() -> OneLineParser:
    parser = OneLineParser(prog="agent-arb", description=__doc__.splitlines()[0])
    add_common_args(parser)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name, text in (
        ("scan", "the cross-venue spread per minute, net of fees and slippage"),
        ("run", "a dry-run arbitrage loop over the bars: pairs, lone legs, inventory, PnL"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--symbol", default="BTCUSDT")
        cmd.add_argument("--exchanges", default="binance,bybit", help="two, comma-separated")
        cmd.add_argument("--fee-bps", help="taker fee per venue, e.g. 10,10 (default: config)")
        cmd.add_argument(
            "--slippage-bps", type=non_negative, default=0.0, help="extra per leg, >= 0"
        )
        cmd.add_argument(
            "--threshold-bps", type=non_negative, default=0.0, help="net edge to clear, >= 0"
        )
        cmd.add_argument("--json", action="store_true", help="as JSON")
    add_book_args(sub.choices["scan"])
    run_cmd = sub.choices["run"]
    add_book_args(run_cmd, size=False)
    run_cmd.add_argument(
        "--max-pairs", type=int, help="--books: stop after this many new pairs (default: none)"
    )
    run_cmd.add_argument(
        "--mode",
        default="paper",
        help="paper, testnet or live (both signed venues; live needs LIVE_TRADING_CONFIRM=yes)",
    )
    run_cmd.add_argument("--account", type=account_name, default="arb")
    run_cmd.add_argument("--quantity", type=finite, default=0.05, help="base per pair")
    run_cmd.add_argument("--max-notional", type=finite, default=2_000.0, help="quote per leg")
    run_cmd.add_argument(
        "--max-imbalance", type=finite, default=0.8, help="0-1, base across venues"
    )
    run_cmd.add_argument(
        "--daily-loss",
        type=finite,
        default=100.0,
        help="quote lost today, transfer fees included; stops new pairs and transfers",
    )
    run_cmd.add_argument("--base", type=finite, help="paper: starting base per venue (0.5)")
    run_cmd.add_argument("--quote", type=finite, help="paper: starting quote per venue (10000)")
    run_cmd.add_argument(
        "--rebalance-at",
        type=finite,
        help="0-1: move an asset between venues when |A-B|/(A+B) passes this (paper: executed)",
    )
    run_cmd.add_argument(
        "--transfer-fee",
        type=transfer_fees,
        help="with --rebalance-at: network fee per transfer, base coin, quote coin "
        "(default 0.0002,1)",
    )
    run_cmd.add_argument(
        "--fail-every", type=int, help="paper: every Nth pair's second leg fails (lone-leg drill)"
    )
    return parser


def transfer_fees(text: str) -> tuple[float, float]:
    """`BASE,QUOTE`: two finite fees >= 0, refused while parsing (before the store opens)."""
    parts = text.split(",")
    try:
        fees = tuple(non_negative(part) for part in parts)
    except argparse.ArgumentTypeError:
        fees = ()
    if len(fees) != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: two fees >= 0, base and quote, e.g. 0.0002,1")
    return fees[0], fees[1]


def add_book_args(cmd: argparse.ArgumentParser | OneLineParser, *, size: bool = True) -> None:
    """The live-book flags; `size` off for `run`, whose --quantity is the size."""
    cmd.add_argument("--books", action="store_true", help="from both live order books")
    if size:
        cmd.add_argument(
            "--size", type=finite, help="--books: base quantity per leg (default 0.01)"
        )
    cmd.add_argument("--seconds", type=finite, help="--books: how long to watch (default 30)")
    cmd.add_argument("--every", type=finite, help="--books: seconds between looks (default 1)")
    cmd.add_argument("--max-age-ms", type=int, help="--books: refuse older books (default 2000)")


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    settings = settings_from(args)
    with imports_frozen():  # the bars, pandas and the venues' streams: after the parser
        from agent.cli.arb_commands import check_flags, run_pairs, scan

    check_flags(args, settings)  # a refused command leaves no empty store behind
    store = open_store(settings.resolved_database_url)
    try:
        return (
            scan(args, settings, store)
            if args.command == "scan"
            else run_pairs(args, settings, store)
        )
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
