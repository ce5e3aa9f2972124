"""Backtests as background jobs: each runs the real `agent-backtest` in a subprocess (the same
code path, flags, data resolution and stored run as the command line), one at a time, and the
job shows the command's own notice lines while it runs and its JSON report when it is done.
Jobs live in this process's memory: a restarted server starts with none (the runs themselves
stay in the store)."""

from __future__ import annotations

import json
import logging
import queue
import subprocess  # nosec B404  # the fixed agent-backtest module with argv built from validated fields
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from agent.cli.backtest_flags import check_days, check_range
from agent.cli.common import parse_utc
from agent.cli.equity import parse_symbols
from backtest.strategies import STRATEGIES
from core.amounts import MAX_CASH
from core.errors import UserError
from market.models import parse_interval

AGENT = "agent"
log = logging.getLogger(__name__)
JobState = Literal["queued", "running", "done", "failed"]
Param = float | int | bool | str
T = TypeVar("T")
SERVER_VALUE = "unset: the server's configured value (its profile's backtest section)"


def _valid(parse: Callable[..., T], *args: Any) -> T:
    """A parser's UserError as the ValueError pydantic reports against the field."""
    try:
        return parse(*args)
    except UserError as exc:
        raise ValueError(str(exc)) from None


class BacktestRequest(BaseModel):
    """What `agent-backtest` is asked; each field is its flag of the same name. Checked here
    as the command checks its flags, so a request that can only fail is a 422, not a job."""

    # Python's JSON reader takes Infinity and NaN: refused here, as the flags refuse them; an
    # unknown field is refused as an unknown flag is, not dropped.
    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    strategy: str = AGENT
    symbol: str = "BTCUSDT"
    interval: str = "1m"
    days: float | None = Field(None, gt=0, le=3650)
    start: str | None = None
    end: str | None = Field(None, validate_default=True)
    cash: float | None = Field(None, gt=0, le=MAX_CASH, description=SERVER_VALUE)
    fee_bps: float | None = Field(None, ge=0, le=1000, description=SERVER_VALUE)
    slippage_bps: float | None = Field(None, ge=0, le=1000, description=SERVER_VALUE)
    params: dict[str, Param] = Field(
        default_factory=dict, description="a classic strategy's parameters, e.g. {'fast': 10}"
    )
    budget_usd: float | None = Field(
        None,
        gt=0,
        le=MAX_CASH,
        description="the agent's spend cap in USD: a paid model runs only with one",
    )
    yes: bool = Field(
        False,
        description="accept the cost estimate without a cap: for a model whose cost is n/a "
        "(a local server such as Ollama), which no budget can cap",
    )

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value != AGENT and value not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {value!r}: {AGENT} or one of {', '.join(STRATEGIES)}"
            )
        return value

    @field_validator("symbol")
    @classmethod
    def _symbols(cls, value: str) -> str:
        if not value.replace(",", "").strip():  # the command's message names its flag
            raise ValueError(f"{value!r} names no symbol: give one such as BTCUSDT, or a list")
        symbols, _ = _valid(parse_symbols, value)
        return ",".join(symbols)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        return _valid(parse_interval, value)

    @field_validator("days")
    @classmethod
    def _days_hold_bars(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None or "interval" not in info.data:  # a bad interval is named already
            return value
        return _valid(check_days, value, info.data["interval"], "days")

    @field_validator("start")
    @classmethod
    def _one_span(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if info.data.get("days") is not None:
            raise ValueError("days and start exclude each other: give one")
        _valid(parse_utc, value, "start")
        return value

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "start" not in info.data or "interval" not in info.data:  # named already
            return value
        start = info.data["start"]
        if (value is None) != (start is None):
            raise ValueError("start and end go together")
        if value is not None and start is not None:
            end_ms = _valid(parse_utc, value, "end")
            start_ms = parse_utc(start, "start")
            span = (start_ms, end_ms, info.data["interval"], f"start {start}", f"end {value}")
            _valid(check_range, *span)
        return value

    @field_validator("params")
    @classmethod
    def _params_apply(cls, value: dict[str, Param], info: ValidationInfo) -> dict[str, Param]:
        """The strategy's own Params model checks the values, strictly: a string, a boolean or
        a fraction where the flag takes a whole number would fail only in the job."""
        strategy = info.data.get("strategy", AGENT)
        known = set(STRATEGIES[strategy].Params.model_fields) if strategy in STRATEGIES else set()
        unknown = sorted(set(value) - known)
        if unknown:
            takes = f" (it takes {', '.join(sorted(known))})" if known else ""
            raise ValueError(f"{', '.join(unknown)} do not apply to {strategy}{takes}")
        if not value:
            return value
        try:
            checked = STRATEGIES[strategy].Params.model_validate(value, strict=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ValueError(f"{where + ': ' if where else ''}{message}") from None
        return {name: getattr(checked, name) for name in value}

    @field_validator("budget_usd", "yes")
    @classmethod
    def _for_the_agent(cls, value: T, info: ValidationInfo) -> T:
        """A spend cap and a cost's consent are the model's: refused, not ignored, elsewhere."""
        strategy = info.data.get("strategy", AGENT)
        if value and strategy != AGENT:
            what = "budget to spend" if info.field_name == "budget_usd" else "cost to accept"
            raise ValueError(f"{strategy} asks no model, so there is no {what}")
        return value

    def argv(self, report: Path) -> list[str]:
        args = ["--strategy", self.strategy, "--symbol", self.symbol, "--interval", self.interval]
        args += ["--json", str(report)]
        # Only what the request sets: the rest is the server's profile's, as on its command line.
        for flag, value in (
            ("--cash", self.cash),
            ("--fee-bps", self.fee_bps),
            ("--slippage-bps", self.slippage_bps),
        ):
            if value is not None:
                args += [flag, repr(value)]
        if self.days is not None:
            args += ["--days", repr(self.days)]
        if self.start is not None and self.end is not None:
            args += ["--start", self.start, "--end", self.end]
        for name, value in sorted(self.params.items()):
            args += [f"--{name.replace('_', '-')}", str(value)]
        if self.budget_usd is not None:  # the command's consent: it stops once that is spent
            args += ["--budget-usd", repr(self.budget_usd)]
        if self.yes:
            args.append("--yes")
        return args


class Job(BaseModel):
    id: str
    state: JobState
    request: BacktestRequest
    submitted_ms: int
    elapsed_s: float | None = None
    progress: list[str] = Field(
        default_factory=list, description="the command's notice lines so far, oldest first"
    )
    error: str | None = None
    exit_code: int | None = None
    report: dict[str, Any] | None = None


def _failure(lines: list[str], code: int) -> str:
    """The command's own one-line reason: its `error:` line, or argparse's
    `agent-backtest: error:` one; else its last line, with the exit code."""
    errors = [line for line in lines if line.startswith(("error:", "agent-backtest: error:"))]
    if errors:
        return errors[-1]
    said = f": {lines[-1]}" if lines else ""
    return f"agent-backtest exited with code {code}{said}"


MAX_WAITING = 32
"""Backtests that may wait behind the running one: each runs for seconds to minutes, so a
longer line only grows the wait (and, once, a thread per job) for work a client will poll."""


class QueueFull(Exception):
    """As many backtests wait as the server takes: the client retries after one has run."""


class BacktestJobs:
    """Runs submitted backtests one after another on one worker thread, at most MAX_WAITING
    of them waiting."""

    def __init__(
        self, base_args: list[str], env: Mapping[str, str], *, max_waiting: int = MAX_WAITING
    ) -> None:
        self._base_args, self._env = base_args, dict(env)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._waiting: queue.Queue[str] = queue.Queue(maxsize=max_waiting)
        self._worker: threading.Thread | None = None

    def submit(self, request: BacktestRequest) -> Job:
        job = Job(
            id=uuid.uuid4().hex[:12],
            state="queued",
            request=request,
            submitted_ms=int(time.time() * 1000),
        )
        with self._lock:
            try:
                self._waiting.put_nowait(job.id)
            except queue.Full:
                raise QueueFull(
                    f"{self._waiting.maxsize} backtests are waiting already: submit again once "
                    "one has run (GET /backtests shows them)"
                ) from None
            self._jobs[job.id] = job
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, daemon=True)
                self._worker.start()
        return job

    def _work(self) -> None:
        while True:
            job_id = self._waiting.get()
            try:
                self._run(job_id)
            except Exception as exc:  # one job that cannot run never stops the queue
                log.exception("backtest job %s could not run", job_id)
                self._update(job_id, state="failed", error=f"the job could not run: {exc}")

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else job.model_copy(deep=True)

    def all(self) -> list[Job]:
        with self._lock:
            return [j.model_copy(deep=True) for j in self._jobs.values()]

    def counts(self) -> dict[str, int]:
        with self._lock:
            states = [j.state for j in self._jobs.values()]
        return {s: states.count(s) for s in ("queued", "running", "done", "failed")}

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._lock:
            job = self._jobs[job_id]
            self._jobs[job_id] = job.model_copy(update=changes)

    def _progress(self, job_id: str, line: str) -> None:
        with self._lock:
            self._jobs[job_id].progress.append(line)

    def _run(self, job_id: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.monotonic()
            self._update(job_id, state="running")
            report = Path(tmp) / "report.json"
            request = self._jobs[job_id].request  # never replaced while the job runs
            command = [sys.executable, "-m", "agent.cli.backtest", *request.argv(report)]
            proc = subprocess.Popen(  # nosec B603  # argv from a validated request, no shell
                [*command, *self._base_args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=self._env,
            )
            lines: list[str] = []
            for raw in proc.stderr or ():
                line = raw.strip()
                if line:
                    lines.append(line)
                    self._progress(job_id, line)
            code = proc.wait()
            elapsed = round(time.monotonic() - started, 3)
            if code == 0 and report.exists():
                body = json.loads(report.read_text())
                self._update(job_id, state="done", exit_code=0, elapsed_s=elapsed, report=body)
                return
            error = _failure(lines, code)
            self._update(job_id, state="failed", exit_code=code, elapsed_s=elapsed, error=error)
