"""`agent-server --trade ...`: the trading loop inside the server process, on a thread of its
own with its own event loop. Its account lives in the store like `agent-trade`'s (so /health,
/accounts and halt/resume act on it as on any loop), and its order book is shared in memory,
the same object the loop's gate reads, so /orderbook serves what the loop sees."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import threading
from typing import TYPE_CHECKING

from agent.cli.trade_flags import run_args, run_settings
from agent.cli.trade_run import PreparedRun, prepare_run
from config import Settings
from core.errors import UserError

if TYPE_CHECKING:
    from market.books import BookQuote

log = logging.getLogger(__name__)
HOST = "agent-server --trade"


def hosted_argv(trade: list[str], server: argparse.Namespace) -> list[str]:
    """The loop's flags with the server's --profile and --data-dir, so both use one store."""
    shared = [f for f in ("--profile", "--data-dir") if f in trade]
    if shared:
        raise UserError(f"give {shared[0]} before --trade: the server and its loop share it")
    extra = ["--profile", server.profile] if server.profile else []
    return [*extra, *(["--data-dir", server.data_dir] if server.data_dir else []), *trade]


class HostedLoop:
    """Built (and every flag checked) before the server binds; started and stopped with it."""

    def __init__(self, argv: list[str], settings: Settings) -> None:
        args = run_args(argv, HOST)
        if args.metrics_port is not None:
            raise UserError(f"--metrics-port does not apply to {HOST}: the server's /metrics")
        mode = args.mode or settings.trading.mode
        if mode != "paper":
            raise UserError(
                f"{HOST} trades paper accounts only; run --mode {mode} with agent-trade"
            )
        self.prepared: PreparedRun = prepare_run(args, run_settings(args))
        self.account = self.prepared.loop.account
        self.reason: str | None = None  # why it ended, once it has
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trading-loop", daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the current step, record the stop, and wait for the thread to end."""
        self._stop.set()
        self._thread.join(timeout=120)

    def quote(self, symbol: str, levels: int) -> BookQuote | None:
        """The loop's live book of `symbol`, or None when it keeps none or it is not synced."""
        books = self.prepared.loop.books
        return None if books is None else books.quote(symbol, levels=levels)

    def _run(self) -> None:
        try:
            self.reason = asyncio.run(self._until_stopped())
        except Exception as exc:  # recorded with the account; the server keeps serving
            self.prepared.failed(exc)
            self.reason = f"failed: {exc}"
            return
        self.prepared.finish(self.reason)

    async def _until_stopped(self) -> str:
        stop = asyncio.Event()
        threading.Thread(
            target=self._relay, args=(asyncio.get_running_loop(), stop), daemon=True
        ).start()
        return await self.prepared.run(stop)

    def _relay(self, running: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        self._stop.wait()
        with contextlib.suppress(RuntimeError):  # the loop ended by itself first
            running.call_soon_threadsafe(stop.set)
