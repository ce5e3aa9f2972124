"""Prometheus metrics at /metrics: requests by route template (never by account name, so the
series stay few), backtest jobs by state, and each stored account's equity and halt state read
at scrape time, so a loop running beside the server shows up too."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.loop_state import risk_scope
from execution.paper_records import accounts, load_equity
from risk.models import ReasonCode
from risk.records import load_state
from store import Store

if TYPE_CHECKING:
    from server.jobs import BacktestJobs


class _StoreCollector(Collector):
    def __init__(self, store: Store, jobs: BacktestJobs) -> None:
        self.store, self.jobs = store, jobs

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("agent_server_backtest_jobs", "jobs by state", labels=["state"])
        for state, count in self.jobs.counts().items():
            jobs.add_metric([state], count)
        yield jobs
        equity = GaugeMetricFamily(
            "agent_account_equity_usdt", "equity at the last processed bar", labels=["account"]
        )
        halted = GaugeMetricFamily(
            "agent_account_halted", "1 when the account's kill switch is on", labels=["account"]
        )
        for name in accounts(self.store):
            points = load_equity(self.store, name)
            if points:
                equity.add_metric([name], points[-1][1])
            locks = load_state(self.store, risk_scope(name)).locks
            killed = any(lock.code == ReasonCode.KILL_SWITCH for lock in locks)
            halted.add_metric([name], 1.0 if killed else 0.0)
        yield equity
        yield halted


class ServerMetrics:
    def __init__(self, store: Store, jobs: BacktestJobs) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "agent_server_requests",
            "requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "agent_server_request_seconds",
            "request latency by route",
            ["route"],
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(store, jobs))

    def install(self, app: FastAPI) -> None:
        app.mount("/metrics", make_asgi_app(self.registry))

        @app.middleware("http")
        async def count(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            started = time.perf_counter()
            response = await call_next(request)
            route = getattr(request.scope.get("route"), "path", None) or _prefix(request)
            self.requests.labels(route, request.method, str(response.status_code)).inc()
            self.latency.labels(route).observe(time.perf_counter() - started)
            return response


OWN_PATHS = ("ui", "metrics", "docs", "redoc", "openapi.json")


def _prefix(request: Request) -> str:
    """Mounted apps and the API's own docs by their first segment; anything else unmatched."""
    first = request.url.path.strip("/").split("/", 1)[0]
    return f"/{first}" if first in OWN_PATHS else "unmatched"
