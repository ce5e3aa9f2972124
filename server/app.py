"""The REST API: market data, accounts, decisions, backtest jobs and the loop's health, read
from the same store the commands write, through the same functions they call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from sqlalchemy import text

from agent.cli.common import parse_utc
from agent.cli.window import candle_source, stored_bars
from agent.loop_state import (
    MINUTE_MS,
    LoopState,
    account_status,
    clear_account,
    halt_account,
    risk_scope,
)
from agent.records import load_decisions, loop_run_id
from backtest.report import FillOut
from config import Settings
from core.errors import UserError
from execution.paper_records import accounts, load_account
from market.binance_rest import BinanceRequestError, BinanceRestClient, BinanceUnavailable
from market.models import INTERVAL_MS, iso_ms, parse_interval, parse_symbol
from market.source import DAY_MS
from risk.records import last_limits
from server import errors
from server.auth import bearer_guard
from server.errors import BadField, checked
from server.jobs import BacktestJobs, BacktestRequest, Job, QueueFull
from server.metrics import ServerMetrics
from server.models import (
    AccountHealth,
    AccountOut,
    DecisionOut,
    HaltOut,
    HaltRequest,
    Health,
    Kline,
    Klines,
    Limits,
    OrderBookOut,
    OrderOut,
    Problem,
    ResumeRequest,
    ServerLoop,
)
from store import Store

if TYPE_CHECKING:
    from server.trade import HostedLoop

ERRORS = {404: {"model": Problem}, 422: {"model": Problem}}
GUARDED = {401: {"model": Problem}, 429: {"model": Problem}}
API_CALLER = "the REST API"  # who a halt or resume through the API is recorded as


def _now_ms() -> int:
    return int(time.time() * 1000)


def create_app(
    settings: Settings,
    store: Store,
    jobs: BacktestJobs,
    *,
    token: str | None,
    hosted: HostedLoop | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """A loop run inside the server starts with it and finishes its step before it ends."""
        if hosted is not None:
            hosted.start()
        yield
        if hosted is not None:
            await asyncio.to_thread(hosted.stop)

    app = FastAPI(
        title="agent-trader",
        summary="Market data, paper and live accounts, decisions and backtests over HTTP.",
        version="0.1.0",
        lifespan=lifespan,
    )
    errors.install(app)
    metrics = ServerMetrics(store, jobs)
    metrics.install(app)
    guard = [Depends(bearer_guard(token)), Depends(json_only)]

    def known_account(name: str, field: str = "name") -> LoopState:
        """The account's state, or a 404 naming the parameter that named it."""
        raw = load_account(store, name).state_json
        if raw is None:
            raise BadField(field, f"no trading account {name!r} in this store", status=404)
        return LoopState.model_validate_json(raw)

    @app.get("/health", response_model=Health, tags=["health"])
    def health() -> Health:
        """The store, and each account's loop: its state, last error and feed lag."""
        try:
            with store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # the store's driver decides what a failure looks like
            return Health(
                status="degraded", store="unreachable", store_error=str(exc)[:300], accounts=[]
            )
        rows = [_account_health(store, settings, name) for name in accounts(store)]
        bad = any(r.last_error or r.status.startswith("not running") for r in rows)
        inside = None
        if hosted is not None:
            inside = ServerLoop(account=hosted.account, alive=hosted.alive, ended=hosted.reason)
            bad = bad or not hosted.alive
        return Health(
            status="degraded" if bad else "ok",
            store="reachable",
            accounts=rows,
            server_loop=inside,
        )

    @app.get("/klines", response_model=Klines, responses=ERRORS, tags=["market"])
    def klines(
        symbol: str,
        interval: str = "1m",
        start: Annotated[str | None, Query(description="UTC, YYYY-MM-DD[THH:MM]")] = None,
        end: Annotated[str | None, Query(description="UTC, exclusive")] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    ) -> Klines:
        """Closed bars as `agent-backtest` resolves them: the store, Binance (unless offline),
        the bundled sample (with a notice), coarser intervals resampled from 1m."""
        symbol = checked("symbol", parse_symbol, symbol)
        interval = checked("interval", parse_interval, interval)
        step = INTERVAL_MS[interval]
        start_ms = None if start is None else checked("start", parse_utc, start, "start")
        end_ms = None if end is None else checked("end", parse_utc, end, "end")
        if start_ms is not None and end_ms is not None and end_ms <= start_ms:
            raise BadField("end", f"end {end} is not after start {start}")
        if start_ms is not None:
            span = {"start_ms": start_ms, "end_ms": (end_ms or start_ms + limit * step) - step}
        elif end_ms is not None:
            span = {"start_ms": end_ms - limit * step, "end_ms": end_ms - step}
        else:  # two bars more: the window's first and last buckets may be partial
            span = {"days": (limit + 2) * step / DAY_MS}
        notices: list[str] = []
        source = candle_source(settings, store, notices.append)
        try:
            frame = stored_bars(source, store, symbol, interval, span, notices.append)
        except UserError as exc:
            raise HTTPException(404, str(exc)) from None
        frame = frame.iloc[:limit] if start_ms is not None else frame.iloc[-limit:]
        bars = [
            Kline(
                open_time=int(row.open_time),
                time=iso_ms(int(row.open_time)),
                open=row.open,
                high=row.high,
                low=row.low,
                close=row.close,
                volume=row.volume,
            )
            for row in frame.itertuples()
        ]
        return Klines(symbol=symbol, interval=interval, bars=bars, notices=notices)

    @app.get("/orderbook", response_model=OrderBookOut, responses=ERRORS, tags=["market"])
    def orderbook(symbol: str, limit: Annotated[int, Query(ge=1, le=5000)] = 100) -> OrderBookOut:
        """The live book of the loop this server runs, when it keeps one for `symbol`; else a
        REST snapshot of the exchange's book (the configured Binance endpoint)."""
        symbol = checked("symbol", parse_symbol, symbol)
        live = None if hosted is None else hosted.quote(symbol, limit)
        if live is not None:
            return OrderBookOut(
                symbol=symbol,
                kind="live",
                source=f"the depth stream of account {hosted.account!r}'s loop in this server",
                last_update_id=None,
                event_time_ms=live.event_time_ms,
                bids=[(level.price, level.quantity) for level in live.bids],
                asks=[(level.price, level.quantity) for level in live.asks],
                best_bid=live.best_bid,
                best_ask=live.best_ask,
                spread_bps=round(live.spread_bps, 3),
            )
        try:
            with BinanceRestClient(settings.binance) as client:
                book = client.depth(symbol, limit)
        except BinanceUnavailable as exc:
            raise HTTPException(
                503, f"no book for {symbol}: the exchange is unreachable ({exc})"
            ) from None
        except UserError as exc:
            raise BadField("symbol", str(exc)) from None
        except BinanceRequestError as exc:
            raise HTTPException(404, f"no book for {symbol}: {exc}") from None
        bid = book.bids[0][0] if book.bids else None
        ask = book.asks[0][0] if book.asks else None
        spread = None if bid is None or ask is None else (ask - bid) / ((ask + bid) / 2) * 1e4
        return OrderBookOut(
            symbol=symbol,
            kind="snapshot",
            source=f"REST snapshot from {settings.binance.base_url}",
            last_update_id=book.last_update_id,
            bids=book.bids,
            asks=book.asks,
            best_bid=bid,
            best_ask=ask,
            spread_bps=None if spread is None else round(spread, 3),
        )

    @app.get("/accounts/{name}", response_model=AccountOut, responses=ERRORS, tags=["accounts"])
    def account(name: str) -> AccountOut:
        """What `agent-trade status` shows, with the limits the gate last applied."""
        known_account(name)
        limits = last_limits(store, risk_scope(name))
        note = None if limits else "the gate has not been called for this account yet"
        status = account_status(store, name, settings)
        return AccountOut.model_validate({**status, "limits": Limits(in_force=limits, note=note)})

    @app.get(
        "/accounts/{name}/orders",
        response_model=list[OrderOut],
        responses=ERRORS,
        tags=["accounts"],
    )
    def orders(name: str) -> list[OrderOut]:
        known_account(name)
        return [OrderOut.model_validate(o.model_dump()) for o in load_account(store, name).orders]

    @app.get(
        "/accounts/{name}/fills", response_model=list[FillOut], responses=ERRORS, tags=["accounts"]
    )
    def fills(name: str) -> list[FillOut]:
        """Every fill, oldest first, as `agent-trade fills --json` lists them."""
        known_account(name)
        return [FillOut.of(f) for f in load_account(store, name).fills]

    @app.post(
        "/accounts/{name}/halt",
        response_model=HaltOut,
        responses={**ERRORS, **GUARDED},
        dependencies=guard,
        tags=["accounts"],
    )
    def halt(name: str, body: Annotated[HaltRequest | None, Body()] = None) -> HaltOut:
        """HALTED in the store and the kill-switch file: a running loop stops within a bar."""
        known_account(name)
        reason = (body or HaltRequest()).reason
        halt_account(store, settings.data_dir, name, reason, _now_ms(), API_CALLER)
        return _halt_out(store, settings, name, f"halted: {reason}")

    @app.post(
        "/accounts/{name}/resume",
        response_model=HaltOut,
        responses={**ERRORS, **GUARDED},
        dependencies=guard,
        tags=["accounts"],
    )
    def resume(name: str, body: Annotated[ResumeRequest | None, Body()] = None) -> HaltOut:
        known_account(name)
        reason = (body or ResumeRequest()).reason
        clear_account(store, settings, name, "resume", API_CALLER, reason, _now_ms())
        return _halt_out(store, settings, name, "kill switch cleared; the next bar trades again")

    @app.get("/decisions", response_model=list[DecisionOut], responses=ERRORS, tags=["decisions"])
    def decisions(
        account: str | None = None,
        run: str | None = None,
        since: Annotated[str | None, Query(description="UTC, YYYY-MM-DD[THH:MM]")] = None,
        until: Annotated[str | None, Query(description="UTC, exclusive")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[DecisionOut]:
        """Recorded decisions, newest last, each with its verdict and reasons."""
        if account is not None and run is not None:
            raise BadField("run", "give account or run, not both (an account is one run)")
        if account is not None:
            known_account(account, "account")
            run = loop_run_id(account)
        since_ms = None if since is None else checked("since", parse_utc, since, "since")
        until_ms = None if until is None else checked("until", parse_utc, until, "until")
        if since_ms is not None and until_ms is not None and until_ms <= since_ms:
            raise BadField("until", f"until {until} is not after since {since}")
        records = load_decisions(store, run, limit, since_ms=since_ms, until_ms=until_ms)
        return [DecisionOut.model_validate(r.model_dump()) for r in records]

    @app.post(
        "/backtests",
        response_model=Job,
        status_code=202,
        responses={422: {"model": Problem}, 429: {"model": Problem}, **GUARDED},
        dependencies=guard,
        tags=["backtests"],
    )
    def submit(request: BacktestRequest) -> Job:
        """Starts `agent-backtest` as a job; poll GET /backtests/{id} for progress and report."""
        try:
            return jobs.submit(request)
        except QueueFull as exc:
            raise HTTPException(429, str(exc), headers={"Retry-After": "30"}) from None

    @app.get("/backtests", response_model=list[Job], tags=["backtests"])
    def all_jobs() -> list[Job]:
        return jobs.all()

    @app.get("/backtests/{job_id}", response_model=Job, responses=ERRORS, tags=["backtests"])
    def job(job_id: str) -> Job:
        found = jobs.get(job_id)
        if found is None:
            raise BadField("job_id", f"no backtest job {job_id!r} (jobs end with the server)", 404)
        return found

    return app


def json_only(request: Request) -> None:
    """A changing request's Content-Type, when it has one, must be JSON: a form or text/plain
    is what a web page can send cross-site without the browser first asking the server (a CORS
    preflight, which this server never grants)."""
    kind = request.headers.get("content-type")
    media = (kind or "").partition(";")[0].strip().lower()
    if kind is not None and media != "application/json" and not media.endswith("+json"):
        raise BadField(
            "body", f"send Content-Type: application/json (the body is optional), not {kind}", 415
        )


def _account_health(store: Store, settings: Settings, name: str) -> AccountHealth:
    status = account_status(store, name, settings)
    state = LoopState.model_validate_json(load_account(store, name).state_json or "{}")
    last = state.paper.last_open_time
    lag = None if last is None else round((_now_ms() - last - MINUTE_MS) / 1000, 1)
    return AccountHealth(
        account=name,
        status=status["status"],
        trading_state=status["trading_state"],
        last_bar=status["last_bar"],
        feed_lag_s=lag,
        last_error=status["last_error"],
    )


def _halt_out(store: Store, settings: Settings, name: str, message: str) -> HaltOut:
    status = account_status(store, name, settings)
    return HaltOut(
        account=name,
        trading_state=status["trading_state"],
        kill_switch_file=status["kill_switch_file"],
        message=message,
    )
