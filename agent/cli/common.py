"""What every command shares: common flags, settings, logging and the error-to-exit-code map."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from core.collector import imports_frozen
from core.errors import UserError
from core.logging import setup_logging
from core.security import loose_env_file, private_dir
from market.models import moment_ms

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger(__name__)
EXIT_RUNTIME, EXIT_USER, EXIT_OUTAGE, EXIT_INTERRUPTED = 1, 2, 3, 130


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming the problem, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER, f"{self.prog}: error: {message} (see --help)\n")


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", help="config profile: default, production or a .toml path")
    parser.add_argument("--log-json", action="store_true", help="log JSON lines to stderr")
    parser.add_argument("--data-dir", help="where the SQLite store and caches live")


def settings_from(args: argparse.Namespace, **extra: object) -> Settings:
    """Settings with the command's flags on top; `extra` nested sections are merged in."""
    with imports_frozen():  # ~0.1 s of pydantic models: not for --help or a mistyped flag
        from config import load_settings

    overrides: dict[str, object] = {}
    if args.data_dir is not None:
        if not args.data_dir.strip():  # not ignored: the user meant some folder
            raise UserError("--data-dir is empty: name a folder, or leave it out for the default")
        overrides["data_dir"] = args.data_dir
    if args.log_json:
        overrides["log_json"] = True
    settings = load_settings(args.profile, **overrides)
    for section, values in extra.items():
        if values:
            merged = getattr(settings, section).model_copy(update=values)
            settings = settings.model_copy(update={section: merged})
    setup_logging(
        settings.log_level, json_lines=settings.log_json, secrets=settings.secret_values()
    )
    loose_env = loose_env_file()
    for warning in (_data_dir(settings.data_dir), loose_env and f"warning: {loose_env}"):
        if warning:
            notify(warning)
    return settings


def _data_dir(path: Path) -> str | None:
    """The data directory, made private; a warning line, or a UserError if it cannot be one."""
    fix = "pass --data-dir (or set AGENT_DATA_DIR to) a folder you can write"
    if path.exists() and not path.is_dir():
        raise UserError(f"data directory {path} is a file, not a folder; {fix}")
    try:
        return private_dir(path)
    except OSError as exc:
        raise UserError(f"data directory {path} cannot be created: {exc.strerror}; {fix}") from None


def parse_utc(text: str, flag: str) -> int:
    """`2025-10-29` or `2025-10-29T04:00` (UTC) to epoch ms, or a UserError naming the flag."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"invalid {flag} {text!r}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment_ms(moment, flag)


def write_file(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def write_chunks(path: Path, chunks: Iterable[bytes]) -> None:
    """A file written a chunk at a time, as UTF-8: a million-bar report's JSON is never held
    whole as bytes and again as text."""
    try:
        with path.open("wb") as out:
            out.writelines(chunks)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def notify(line: str) -> None:
    """Notices go to stderr so stdout stays clean for tables and JSON."""
    print(line, file=sys.stderr)


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a command; user errors and Ctrl-C become one line and an exit code, never a traceback.
    Everything the command writes (store, caches, records, reports) is private to the user."""
    os.umask(0o077)
    try:
        return main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        store = sys.modules.get("store.db")
        if store is not None:  # a store opened before the refusal: none is left behind
            store.discard_created_empty()
        return EXIT_USER
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `agent-trade status | head`: the reader left early, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
