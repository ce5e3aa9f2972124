"""Prometheus metrics for the trading loop (`agent-trade --metrics-port`), on 127.0.0.1 unless
told otherwise; a registry of its own so nothing else leaks into the scrape."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from agent.loop_state import stalled_since, wall_now_ms
from agent.records import DecisionRecord

if TYPE_CHECKING:
    from agent.trading_loop import TradingLoop


class LoopMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.equity = Gauge(
            "agent_equity_usdt", "account equity at the last close", registry=self.registry
        )
        self.decisions = Counter(
            "agent_decisions", "decisions by outcome", ["outcome"], registry=self.registry
        )
        self.vetoes = Counter(
            "agent_vetoes", "gate vetoes by reason code", ["reason"], registry=self.registry
        )
        self.llm_latency = Histogram(
            "agent_llm_latency_seconds",
            "model call latency (cached calls included)",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
        self.feed_lag = Gauge(
            "agent_feed_lag_seconds",
            "from a bar's arrival to its step being committed",
            registry=self.registry,
        )
        self.bars = Counter("agent_bars", "bars processed", registry=self.registry)
        self.stalled = Gauge(
            "agent_stalled_seconds",
            "seconds since the loop last made progress, once that exceeds a bar plus the "
            "margin (0 while it moves)",
            registry=self.registry,
        )
        self.stalled.set_function(self._stalled)  # computed at each scrape: it rises while stuck
        self._loop: TradingLoop | None = None

    def _stalled(self) -> float:
        if self._loop is None:
            return 0.0
        now = wall_now_ms()
        since = stalled_since(self._loop.state, now)
        return 0.0 if since is None else (now - since) / 1000

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def on_bar(self, loop: TradingLoop, seconds: float) -> None:
        self._loop = loop
        self.bars.inc()
        self.equity.set(loop.venue.equity())
        self.feed_lag.set(seconds)

    def on_decision(self, record: DecisionRecord) -> None:
        self.decisions.labels(record.outcome).inc()
        for reason in (record.verdict or {}).get("reasons", []):
            if reason["code"] != "HOLD":
                self.vetoes.labels(reason["code"]).inc()
        for call in record.llm_calls:
            self.llm_latency.observe(call.latency_ms / 1000)
