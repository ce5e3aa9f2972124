"""Alerts leave the machine here: Telegram's Bot API and a generic JSON webhook, over httpx. A
queue and one worker thread deliver them, retrying with backoff, so a slow or failing channel
never holds up trading or the UI; the bot token is never written to a log."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import httpx

from agent.alerts import Alert
from config.settings import AlertSettings

log = logging.getLogger(__name__)

Channel = Callable[[Alert], None]
BACKOFF_S = 1.0  # doubled after each failed attempt


class ChannelError(Exception):
    """A channel refused or could not take an alert; the message names no secret."""


def webhook(url: str, timeout_s: float) -> Channel:
    """POST the alert as JSON: {"account", "kind", "text"}."""

    def send(alert: Alert) -> None:
        try:
            response = httpx.post(url, json=alert.model_dump(), timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise ChannelError(f"webhook: {type(exc).__name__}") from None
        if response.status_code >= 300:
            raise ChannelError(f"webhook: HTTP {response.status_code}")

    return send


def telegram(base_url: str, token: str, chat_id: str, timeout_s: float) -> Channel:
    """sendMessage to one chat; Telegram answers {"ok": true, ...} when it took the message."""

    def send(alert: Alert) -> None:
        url = f"{base_url.rstrip('/')}/bot{token}/sendMessage"
        try:
            response = httpx.post(
                url, json={"chat_id": chat_id, "text": alert.text}, timeout=timeout_s
            )
            ok = response.json().get("ok") is True
        except (httpx.HTTPError, ValueError) as exc:
            raise ChannelError(f"telegram: {type(exc).__name__}") from None
        if not ok:
            raise ChannelError(f"telegram: HTTP {response.status_code}")

    return send


def channels_from(settings: AlertSettings) -> list[Channel]:
    channels = []
    if settings.webhook_url is not None:
        channels.append(webhook(settings.webhook_url.get_secret_value(), settings.timeout_s))
    if settings.telegram_bot_token is not None and settings.telegram_chat_id is not None:
        token = settings.telegram_bot_token.get_secret_value()
        channels.append(
            telegram(settings.telegram_url, token, settings.telegram_chat_id, settings.timeout_s)
        )
    return channels


class Courier:
    """Takes alerts at once (`__call__`) and delivers them in order on its own thread."""

    def __init__(
        self,
        channels: list[Channel],
        *,
        attempts: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.channels, self.attempts, self.sleep = channels, attempts, sleep
        self.failed = 0  # alerts a channel never took, after every attempt
        self._queue: queue.Queue[Alert | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def __call__(self, alert: Alert) -> None:
        self._queue.put(alert)

    def close(self) -> None:
        """Deliver what is queued, then stop."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            for channel in self.channels:
                self._deliver(channel, alert)

    def _deliver(self, channel: Channel, alert: Alert) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                channel(alert)
                return
            except ChannelError as exc:
                if attempt == self.attempts:
                    self.failed += 1
                    log.warning("alert not delivered after %d attempts: %s", attempt, exc)
                    return
                self.sleep(BACKOFF_S * 2 ** (attempt - 1))
