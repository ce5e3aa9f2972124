"""What `agent-ui` and `agent-server` both take: where to listen and the UI's login, settled
from the flags before Gradio is imported or a port bound, so a refused start is one quick line."""

from __future__ import annotations

import argparse
import os
from typing import Any

from agent.cli.common import notify
from agent.loop_state import live_accounts
from agent.ui_access import WHAT, launch_options
from config import Settings
from core.security import public_origin, resolve_access
from store import Store

AUTH_HELP = "user:password, or token for a generated one (or AGENT_UI_AUTH); required off loopback"


def add_serve_args(parser: argparse.ArgumentParser, *, port: int, auth_help: str) -> None:
    """--host, --port, --auth and --public-origin."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=port, help=f"port ({port})")
    parser.add_argument("--auth", help=auth_help)
    parser.add_argument(
        "--public-origin",
        action="append",
        type=public_origin,
        default=[],
        metavar="URL",
        help="the address a reverse proxy serves this at (e.g. https://trader.example.com; "
        "repeatable): its pages may use it, and a login is required as off loopback",
    )


def ui_login(args: argparse.Namespace) -> str | None:
    """The UI's login as given: --auth, else AGENT_UI_AUTH. A blank one is no login, so
    `--auth ""` cannot pass for one where a login is required."""
    login = args.auth or os.environ.get("AGENT_UI_AUTH")
    return login if login and login.strip() else None


def ui_launch_options(
    args: argparse.Namespace, settings: Settings, store: Store, *, insecure_no_auth: bool = False
) -> dict[str, Any]:
    """Gradio's login wall for the flags, or UserError when the UI may not be served so."""
    public = tuple(args.public_origin)
    access = resolve_access(
        args.host,
        ui_login(args),
        insecure_no_auth=insecure_no_auth,
        live_accounts=live_accounts(store),
        what=WHAT,
        public=public,
    )
    return launch_options(access, args.host, settings, notify, public=public)
