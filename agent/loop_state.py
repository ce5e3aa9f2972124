"""The trading loop's stored state, readable without importing the agent (status, halt, UI)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from execution.paper import PaperCheckpoint

LoopStatus = Literal["running", "stopped", "finished"]


class LastDecision(BaseModel):
    time: str
    symbol: str
    outcome: str
    action: str | None = None
    rationale: str | None = None
    order: str | None = None


class LoopState(BaseModel):
    """The loop's checkpoint: stored with every bar's orders and fills in one transaction."""

    account: str
    mode: str = "paper"
    status: LoopStatus = "running"
    pid: int | None = None
    initial_cash: float
    paper: PaperCheckpoint = Field(default_factory=PaperCheckpoint)
    decisions: int = 0
    outcomes: dict[str, int] = Field(default_factory=dict)
    vetoes: dict[str, int] = Field(default_factory=dict)
    last_decision: LastDecision | None = None
    last_error: str | None = None
    stop_reason: str | None = None
    feed: dict[str, int] = Field(default_factory=dict)
    wall_updated_ms: int = 0


def kill_switch_path(data_dir: Path, account: str) -> Path:
    """Touch this file (or run `agent-trade halt`) to halt the loop within one bar."""
    return data_dir / f"KILL-{account}"
