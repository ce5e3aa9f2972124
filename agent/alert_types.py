"""An alert as every channel receives it; its own module so the watch and what feeds it share it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

AlertKind = Literal[
    "fill",
    "halt",
    "safe_mode",
    "active",
    "stalled",
    "stopped",
    "error",
    "large_veto",
    "daily_summary",
]


class Alert(BaseModel):
    account: str
    kind: AlertKind
    text: str
