"""What the trader is told without asking: each fill, halt, safe mode, stop and error of every
paper account in the store (the chat's and each `agent-trade` loop's), found by comparing what
`agent-trade status` shows now with what was seen at the last look; and, from the records, each
large veto and each account's daily summary (agent.alert_digest)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from pydantic import BaseModel
from sqlalchemy import select

from agent.alert_digest import Digest
from agent.alert_types import Alert, AlertKind
from agent.loop_state import account_status
from config import Settings
from execution.paper_records import accounts
from market.models import iso_ms
from store.db import Store
from store.tables import PaperFillRow

log = logging.getLogger(__name__)

FEED_SIZE = 50


class _Seen(BaseModel):
    fills: int
    trading_state: str
    status: str
    stop_reason: str | None = None
    last_error: str | None = None


def _seen(status: dict) -> _Seen:
    return _Seen(
        fills=status["fills"],
        trading_state=status["trading_state"],
        status=status["status"],
        stop_reason=status["stop_reason"],
        last_error=status["last_error"],
    )


class AlertWatch:
    """Call `poll` as often as you like (the UI's timer does); each change is reported once.
    What the store held when the watch started is the baseline, not news."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        channels: Sequence[Callable[[Alert], None]] = (),
    ) -> None:
        self.store, self.settings, self.channels = store, settings, list(channels)
        self.feed: list[Alert] = []  # newest last, at most FEED_SIZE
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._seen = {a: _seen(self._status(a)) for a in accounts(store)}
        self.digest = Digest(store, settings)

    def start(self, every_s: float) -> None:
        """Poll on a daemon thread until `stop`, so channels hear of news with no page open."""
        self._stop = threading.Event()

        def run() -> None:
            while not self._stop.wait(every_s):
                try:
                    self.poll()
                except Exception:  # a bad poll must not end the watch
                    log.exception("looking for alerts failed")

        threading.Thread(target=run, name="alert-watch", daemon=True).start()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def _status(self, account: str) -> dict:
        return account_status(self.store, account, self.settings)

    def poll(self) -> list[Alert]:
        with self._lock:
            news: list[Alert] = []
            for account in accounts(self.store):
                status = self._status(account)
                now = _seen(status)
                before = self._seen.get(account) or _Seen(
                    fills=0, trading_state="ACTIVE", status="running"
                )
                news += self._fills(account, before.fills, now.fills)
                news += _changes(account, before, now)
                news += self.digest.daily(account, status["last_open_time"], status["initial_cash"])
                self._seen[account] = now
            news += self.digest.large_vetoes()
            self.feed = (self.feed + news)[-FEED_SIZE:]
        for alert in news:
            for channel in self.channels:
                channel(alert)
        return news

    def _fills(self, account: str, seen: int, now: int) -> list[Alert]:
        if now <= seen:
            return []
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(PaperFillRow)
                .where(PaperFillRow.account == account, PaperFillRow.seq >= seen)
                .order_by(PaperFillRow.seq)
            ).mappings()
            return [
                Alert(
                    account=account,
                    kind="fill",
                    text=f"{account}: {'bought' if row['side'] > 0 else 'sold'} "
                    f"{row['quantity']:g} {row['symbol']} at {row['price']:,.2f} "
                    f"(fee {row['fee']:,.4f} USDT, {row['reason']}, {iso_ms(row['time_ms'])} UTC)",
                )
                for row in rows
            ]

    def markdown(self) -> str:
        if not self.feed:
            return "### Notifications\nNothing yet: fills, halts and loop errors appear here."
        lines = [f"- {a.text}" for a in reversed(self.feed)]
        return "### Notifications (newest first)\n" + "\n".join(lines)


def _changes(account: str, before: _Seen, now: _Seen) -> list[Alert]:
    out = []
    if now.trading_state != before.trading_state:
        kind: AlertKind = {"HALTED": "halt", "REDUCING": "safe_mode"}.get(
            now.trading_state, "active"
        )  # type: ignore[assignment]
        out.append(Alert(account=account, kind=kind, text=f"{account}: {now.trading_state}"))
    if now.status != before.status and now.status.startswith("stalled"):
        out.append(Alert(account=account, kind="stalled", text=f"{account}: {now.status}"))
    elif now.status != before.status and now.status != "running":
        why = f" ({now.stop_reason})" if now.stop_reason else ""
        out.append(Alert(account=account, kind="stopped", text=f"{account}: {now.status}{why}"))
    if now.last_error and now.last_error != before.last_error:
        out.append(Alert(account=account, kind="error", text=f"{account}: {now.last_error}"))
    return out
