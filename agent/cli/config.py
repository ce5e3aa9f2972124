"""`agent-config`: see the settings in force and where each came from, or check a profile.

agent-config show [--profile P] [--json]   every key, its value and its source
agent-config validate FILE.toml            exit 2 naming the first problem
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agent.cli.common import OneLineParser, run
from config.effective import effective
from config.settings import Settings, load_settings, profile_file
from config.strict import check_toml
from core.errors import UserError


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="agent-config", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    show = commands.add_parser("show", help="the settings in force, with their source")
    show.add_argument("--profile", help="default, production or a .toml path")
    show.add_argument("--json", action="store_true", help="as JSON")
    validate = commands.add_parser("validate", help="check a profile; exit 2 on a problem")
    validate.add_argument("file", help="a .toml file, or a bundled profile's name")
    return parser


def _show(args: argparse.Namespace) -> int:
    entries = effective(args.profile)
    if args.json:
        print(json.dumps({e.key: {"value": e.value, "source": e.source} for e in entries}))
        return 0
    width = max(len(e.key) for e in entries)
    for e in entries:
        print(f"{e.key:<{width}}  {json.dumps(e.value):<24}  {e.source}")
    return 0


def _validate(given: str) -> int:
    """A .toml file, or a bundled profile by name; exit 2 naming its first problem."""
    path = profile_file(given) if not given.endswith(".toml") else Path(given)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    keys = check_toml(Settings, path)
    load_settings(str(path))
    sections = ", ".join(keys) or "empty"
    print(f"ok: {path} is a valid profile ({sections})")
    return 0


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "show":
        return _show(args)
    return _validate(args.file)


def main(argv: list[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
