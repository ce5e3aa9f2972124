"""`agent-server`: one process serving the REST API (OpenAPI at /docs), the chat UI at /ui and
Prometheus metrics at /metrics. Who may reach it is settled before anything is imported or
bound, so a refused start is one quick line."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
from typing import TYPE_CHECKING

from agent.cli.common import OneLineParser, add_common_args, notify, run, settings_from
from agent.cli.serve_args import AUTH_HELP, add_serve_args, ui_launch_options, ui_login
from core.errors import UserError
from core.security import is_loopback
from server.auth import TOKEN_ENV, server_token
from store import Store, open_store

if TYPE_CHECKING:
    from fastapi import FastAPI

    from config import Settings


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="agent-server",
        description="The REST API (docs at /docs), the chat UI (/ui) and metrics (/metrics) "
        "in one process.",
    )
    add_common_args(parser)
    add_serve_args(
        parser,
        port=8000,
        auth_help=f"the UI's login: {AUTH_HELP}. The API's changing routes need {TOKEN_ENV} there.",
    )
    parser.add_argument("--no-ui", action="store_true", help="serve the API without the chat UI")
    parser.add_argument(
        "--trade",
        nargs=argparse.REMAINDER,
        metavar="FLAG",
        help="run the trading loop in this process with agent-trade's flags (paper accounts; "
        "last on the line): /orderbook serves its live book, /health its state",
    )
    return parser


def _main(argv: list[str] | None) -> int:
    args: argparse.Namespace = build_parser().parse_args(argv)
    if args.no_ui and args.auth:
        raise UserError("--auth is the UI's login, and --no-ui serves no UI: drop one")
    if not 0 < args.port < 65536:
        raise UserError(f"invalid --port {args.port}: expected 1 to 65535")
    settings = settings_from(args)
    public = tuple(args.public_origin)
    token = server_token(args.host, os.environ, public)
    if token is not None and not args.no_ui and ui_login(args) is None:
        raise UserError(
            f"refusing to serve the UI at /ui without a login while {TOKEN_ENV} guards the API: "
            "it can halt and resume accounts; pass --auth user:password (or --auth token), "
            "or --no-ui"
        )
    hosted = None
    if args.trade is not None:  # every loop flag is checked before anything binds
        from server.trade import HostedLoop, hosted_argv

        hosted = HostedLoop(hosted_argv(args.trade, args), settings)
    store = open_store(settings.resolved_database_url)
    try:
        import uvicorn  # the web stack loads only once serving is allowed

        from core.web_guard import SameOriginGuard
        from server.app import create_app
        from server.jobs import BacktestJobs

        jobs = BacktestJobs(_backtest_args(args), os.environ)
        app = create_app(settings, store, jobs, token=token, hosted=hosted)
        app.add_middleware(SameOriginGuard, loopback=is_loopback(args.host), public=public)
        if not args.no_ui:
            _mount_ui(app, args, settings, store)
        where = f"http://{args.host}:{args.port}"
        ui = "" if args.no_ui else f", the UI at {where}/ui"
        notify(f"serving the API at {where} (docs at {where}/docs){ui}, metrics at {where}/metrics")
        signal.signal(signal.SIGTERM, _stopped)
        with contextlib.suppress(_Stopped):  # a service manager's stop: the store closes below
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        store.close()
    return 0


class _Stopped(Exception):
    """SIGTERM (docker stop, systemd)."""


def _stopped(_signum: int, _frame: object) -> None:
    """uvicorn shuts down gracefully on SIGTERM, then puts back the handler it found and raises
    the signal again: with Python's default there, the process died before the store was
    closed. This one ends the serve, as it does a SIGTERM before uvicorn took over."""
    raise _Stopped


def _backtest_args(args: argparse.Namespace) -> list[str]:
    """The server's own --profile and --data-dir, so a job reads and writes the same store."""
    extra = ["--profile", args.profile] if args.profile else []
    return extra + (["--data-dir", args.data_dir] if args.data_dir else [])


def _mount_ui(app: FastAPI, args: argparse.Namespace, settings: Settings, store: Store) -> None:
    options = ui_launch_options(args, settings, store)
    from agent.ui import build_app  # gradio and the graph: only once serving is allowed

    # isort: split
    import gradio as gr  # after agent.ui, which prepares Gradio's loading

    gr.mount_gradio_app(app, build_app(settings, store, notify=notify), path="/ui", **options)


def main(argv: list[str] | None = None) -> int:
    return run(_main, argv)
