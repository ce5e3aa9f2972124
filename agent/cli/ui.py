"""`agent-ui`: the chat in a browser. Who may reach it, and whether a testnet chat has the live
bars it trades at, is settled before Gradio is even imported, so a refused start is one quick
line."""

from __future__ import annotations

import argparse
import signal

from agent.chat_market import open_chat_market
from agent.chat_venue import CHAT_MODES, require_live
from agent.cli.common import OneLineParser, add_common_args, notify, run, settings_from
from agent.cli.flags import account_name
from agent.cli.serve_args import AUTH_HELP, add_serve_args, ui_launch_options
from core.clock import SystemClock
from store import open_store


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="agent-ui",
        description="The assistant in a browser: chat with order approval, market charts, "
        "backtests and the trading loop's state.",
    )
    add_common_args(parser)
    add_serve_args(parser, port=7860, auth_help=AUTH_HELP)
    parser.add_argument(
        "--account",
        type=account_name,
        default="chat",
        help="the paper account the chat trades (chat); kept in the store like agent-trade's",
    )
    parser.add_argument(
        "--mode",
        choices=CHAT_MODES,
        default="paper",
        help="where approved chat orders go: paper (default) or testnet, Binance's spot "
        "testnet (BINANCE_API_KEY and BINANCE_API_SECRET from the environment)",
    )
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve off loopback with no login (warned at every start; refused with a live account)",
    )
    return parser


def _main(argv: list[str] | None) -> int:
    args: argparse.Namespace = build_parser().parse_args(argv)
    settings = settings_from(args)
    store = open_store(settings.resolved_database_url, settings.timescaledb)
    try:
        options = ui_launch_options(args, settings, store, insecure_no_auth=args.insecure_no_auth)
        source = None
        if args.mode != "paper":  # without Binance's live bars it stops here, before Gradio
            source = open_chat_market(settings, store, SystemClock(), notify)
            require_live(args.mode, source)
        from agent.ui import build_app  # gradio and the graph: only once serving is allowed

        app = build_app(
            settings, store, notify=notify, account=args.account, mode=args.mode, source=source
        )
        # A service manager's stop (SIGTERM: docker stop, systemd) ends the UI as Ctrl-C does:
        # Gradio closes its server and the store is closed below, not left to a kill.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        app.launch(server_name=args.host, server_port=args.port, **options)
    finally:
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_main, argv)
