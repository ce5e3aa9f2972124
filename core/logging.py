"""Logging set-up: readable or JSON lines, and secrets scrubbed from every line before output."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

REDACTED = "***"
# Key-like names followed by a value, in query strings, JSON, headers and key=value text.
_SECRET_FIELD = re.compile(
    r"(?i)(api[_-]?key|api[_-]?secret|secret|signature|authorization|x-mbx-apikey|password|token)"
    r"(\"?\s*[:=]\s*\"?(?:bearer\s+)?)([^\s&\"',;}]+)"
)
_OPENAI_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")
# In a run of non-blank text: from the ':' after its user (after `://` when it has one) to its
# last '@'. No scheme is needed, so a typo'd one (`postgresql//`, `postgresql:/`) or none hides
# the password too, and one holding '/' or '@' is not shown in part.
_URL_PASSWORD = re.compile(r"((?:\S*?://)?[^\s:@]*:)\S*@")


def masked_url(text: str) -> str:
    """`text` with the password of every URL in it masked (`http://user:***@host`), even of a
    URL no parser accepts: the one form in which a URL is shown, logged or stored."""
    return _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)


class Redactor:
    """Scrubs known secret values and anything shaped like a key, whatever the logger."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = _SECRET_FIELD.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
        return masked_url(_OPENAI_KEY.sub(f"sk-{REDACTED}", text))


class HumanFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers; extra fields passed via `extra=` are kept."""

    _STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return self._redact(json.dumps(payload, default=str))


def setup_logging(
    level: str = "INFO", *, json_lines: bool = False, secrets: Iterable[str] = ()
) -> None:
    """Configure the root logger once per process; logs go to stderr so stdout stays data."""
    redact = Redactor(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(redact) if json_lines else HumanFormatter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
