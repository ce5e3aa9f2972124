"""Binance spot public REST: closed klines, depth, symbol rules and server time, fetched so that
the request-weight budget, Retry-After and IP bans are respected and failures have a type."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Unpack

import diskcache
import httpx
import pandas as pd
from pydantic import BaseModel, ConfigDict
from tenacity import RetryCallState, wait_exponential, wait_random

from config.settings import BinanceSettings
from core.errors import UserError, VenueError
from market.models import CANDLE_COLUMNS, SymbolRules, parse_symbol
from market.rest_client import (
    ClientHooks,
    OnPage,
    PublicClient,
    Transient,
    kline_window,
    progress,
    reads_reply,
)

log = logging.getLogger(__name__)

KLINES_LIMIT = 1000  # Binance's maximum rows per /api/v3/klines call
DAY_MS = 86_400_000
_KLINES_WEIGHT = 2
_EXCHANGE_INFO_WEIGHT = 20
_TIME_WEIGHT = 1
# /api/v3/depth weight by limit, per Binance's spot API docs: (highest limit, weight).
_DEPTH_WEIGHTS: tuple[tuple[int, int], ...] = ((100, 5), (500, 25), (1000, 50), (5000, 250))
_DEFAULT_BAN_S = 120.0  # Binance's shortest IP ban, for a 418 that lacks Retry-After
_INVALID_SYMBOL = -1121
_FLOAT_COLUMNS = [c for c in CANDLE_COLUMNS if c not in ("open_time", "close_time", "trades")]
_CANDLE_DTYPES = {"open_time": "int64", "close_time": "int64", "trades": "int64"} | dict.fromkeys(
    _FLOAT_COLUMNS, "float64"
)


class BinanceError(VenueError):
    """Anything that went wrong talking to Binance."""


class BinanceUnavailable(BinanceError):
    """Binance cannot be used right now; callers fall back to local data."""


class BinanceBanned(BinanceUnavailable):
    """Binance banned this IP (HTTP 418): sending more requests would only extend the ban."""


class BinanceRequestError(BinanceError):
    """Binance refused the request (4xx); retrying the same request cannot help."""

    def __init__(self, status: int, code: int | None, msg: str, path: str) -> None:
        self.status, self.code, self.msg, self.path = status, code, msg, path
        super().__init__(f"Binance refused GET {path}: HTTP {status}, code {code}: {msg}")


class UnknownSymbolError(UserError, BinanceRequestError):
    """The user asked for a symbol Binance spot does not list."""

    def __init__(
        self, symbols: list[str], status: int, code: int | None, msg: str, path: str
    ) -> None:
        BinanceRequestError.__init__(self, status, code, msg, path)
        self.symbols = symbols
        named = symbols[0] if len(symbols) == 1 else f"among {', '.join(symbols)}"
        self.args = (
            f"unknown symbol {named}: Binance spot does not list it "
            f"(Binance says {msg!r}, code {code}); use a spot symbol such as BTCUSDT",
        )


class DepthSnapshot(BaseModel):
    """One order-book snapshot; `last_update_id` anchors a diff-depth stream to it."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    last_update_id: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


def depth_weight(limit: int) -> int:
    """Request weight of /api/v3/depth, which grows with the number of levels asked for."""
    return next(weight for top, weight in _DEPTH_WEIGHTS if limit <= top)


class BinanceRestClient(PublicClient):
    """One connection pool, weight budget and ban state per process talking to Binance."""

    venue = "Binance"
    unavailable = BinanceUnavailable
    _settings: BinanceSettings

    def __init__(
        self,
        settings: BinanceSettings,
        *,
        cache_dir: Path | None = None,
        **hooks: Unpack[ClientHooks],
    ) -> None:
        super().__init__(settings, **hooks)
        self._cache = (
            diskcache.Cache(str(cache_dir), disk=diskcache.JSONDisk) if cache_dir else None
        )
        self.used_weights: dict[str, int] = {}
        self._weight_minute = -1
        self._banned_until: float | None = None
        self._backoff = wait_exponential(
            multiplier=0.5, max=min(30.0, settings.max_retry_after_s)
        ) + wait_random(0, 0.5)

    def close(self) -> None:
        super().close()
        if self._cache is not None:
            self._cache.close()

    @property
    def used_weight(self) -> int:
        """Weight Binance says this IP used in the current minute (0 once the minute is over)."""
        if self._weight_minute != self._minute():
            return 0
        return self.used_weights.get("1m", 0)

    @reads_reply
    def klines(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, *, on_page: OnPage = None
    ) -> pd.DataFrame:
        """Closed bars with open_time in [start_ms, end_ms]; a bar still forming is left out,
        because its values would change after we stored them."""
        symbol, step = kline_window(symbol, interval, start_ms, end_ms)
        rows: dict[int, list[Any]] = {}
        on_page = progress(on_page)
        cursor = start_ms
        while cursor <= end_ms:
            page = self._klines_page(symbol, interval, cursor, end_ms, step)
            now_ms = self._closed_before()
            closed = [row for row in page if int(row[6]) < now_ms]
            rows.update((int(row[0]), row) for row in closed)
            if on_page is not None:
                on_page(len(rows))
            if not page or len(page) < KLINES_LIMIT:
                break
            last_open = int(page[-1][0])
            if last_open < cursor:
                break
            cursor = last_open + step
        return _candles_frame([rows[key] for key in sorted(rows)])

    def klines_for_days(
        self,
        symbol: str,
        interval: str,
        days: float,
        *,
        end_ms: int | None = None,
        on_page: OnPage = None,
    ) -> pd.DataFrame:
        """The closed bars that opened in the `days` before end_ms (default: now)."""
        if not days > 0:
            raise UserError(f"invalid days {days:g}: must be greater than 0")
        end = self._now_ms() if end_ms is None else end_ms
        return self.klines(symbol, interval, end - int(days * DAY_MS), end - 1, on_page=on_page)

    @reads_reply
    def depth(self, symbol: str, limit: int = 100) -> DepthSnapshot:
        """An order-book snapshot, the starting point for a diff-depth stream."""
        symbol = parse_symbol(symbol)
        if not 1 <= limit <= 5000:
            raise UserError(f"invalid depth limit {limit}: Binance allows 1 to 5000")
        data = self._get(
            "/api/v3/depth", {"symbol": symbol, "limit": limit}, depth_weight(limit), [symbol]
        )
        return DepthSnapshot(
            symbol=symbol, last_update_id=data["lastUpdateId"], bids=data["bids"], asks=data["asks"]
        )

    @reads_reply
    def exchange_info(self, symbols: list[str] | None = None) -> dict[str, SymbolRules]:
        """Live order filters (tick, step, notional) by symbol; all symbols when none given."""
        params: dict[str, str] = {}
        wanted = [parse_symbol(s) for s in symbols or []]
        if wanted:
            params["symbols"] = json.dumps(wanted, separators=(",", ":"))
        data = self._get("/api/v3/exchangeInfo", params, _EXCHANGE_INFO_WEIGHT, wanted)
        rules: dict[str, SymbolRules] = {}
        for entry in data["symbols"]:
            try:
                rules[entry["symbol"]] = SymbolRules.from_exchange_info(entry)
            except ValueError as exc:
                log.warning("skipping a symbol with unusable exchangeInfo filters: %s", exc)
        return rules

    @reads_reply
    def server_time(self) -> int:
        """Binance's clock in epoch ms, to measure local clock skew."""
        return int(self._get("/api/v3/time", {}, _TIME_WEIGHT, [])["serverTime"])

    def _klines_page(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, step: int
    ) -> list[list[Any]]:
        params = {
            "symbol": symbol,
            "interval": interval,
            "startTime": start_ms,
            "endTime": end_ms,
            "limit": KLINES_LIMIT,
        }
        key = f"klines|{self.base_url}|{symbol}|{interval}|{start_ms}|{end_ms}|{KLINES_LIMIT}"
        if self._cache is not None:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
        page: list[list[Any]] = self._get("/api/v3/klines", params, _KLINES_WEIGHT, [symbol])
        now_ms = self._closed_before()
        every_bar_closed = all(int(row[6]) < now_ms for row in page)
        # A short page of a window still open would miss bars that close later.
        window_over = len(page) == KLINES_LIMIT or end_ms + step - 1 < now_ms
        if self._cache is not None and every_bar_closed and window_over:
            self._cache.set(key, page)
        return page

    def _get(self, path: str, params: dict[str, Any], weight: int, symbols: list[str]) -> Any:
        return self._get_retried(
            lambda: self._attempt(path, params, weight, symbols),
            path,
            self._wait,
            lambda state: self._log_retry(state, path),
        )

    def _attempt(self, path: str, params: dict[str, Any], weight: int, symbols: list[str]) -> Any:
        self._refuse_while_banned()
        self._respect_weight_budget(weight)
        log.debug("GET %s %s (weight %d)", path, params, weight)
        response = self._http_get(path, params)
        self._record_weight(response, weight)
        status = response.status_code
        if status == 418:
            self._banned_until = self._clock() + (retry_after_s(response) or _DEFAULT_BAN_S)
            raise BinanceBanned(self._ban_message())
        if status == 429:
            raise Transient("HTTP 429 (too many requests)", retry_after_s(response))
        if status >= 500:
            raise Transient(f"HTTP {status}")
        if status >= 400:
            raise _request_error(response, path, symbols)
        try:
            return response.json()
        except ValueError:
            raise BinanceUnavailable(
                f"Binance at {self.base_url} answered GET {path} with HTTP {status} but not "
                "JSON (a proxy or captive portal in the way?)"
            ) from None

    def _wait(self, state: RetryCallState) -> float:
        """Retry-After when the server gave one (capped), else jittered exponential backoff."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Transient) and exc.wait_s is not None:
            return min(exc.wait_s, self._settings.max_retry_after_s)
        return self._backoff(state)

    def _log_retry(self, state: RetryCallState, path: str) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "Binance %s GET %s: %s; retry %d/%d in %.1f s",
            self.base_url,
            path,
            exc,
            state.attempt_number,
            self._settings.max_retries,
            wait,
        )

    def _refuse_while_banned(self) -> None:
        if self._banned_until is None:
            return
        if self._clock() < self._banned_until:
            raise BinanceBanned(self._ban_message())
        self._banned_until = None

    def _ban_message(self) -> str:
        until = self._banned_until or 0.0
        ends = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%d %H:%M:%S")
        left = max(0.0, until - self._clock())
        return (
            f"Binance at {self.base_url} banned this IP for too many requests (HTTP 418); "
            f"the ban ends at {ends} UTC (in {left:.0f} s), no request is sent before then"
        )

    def _respect_weight_budget(self, weight: int) -> None:
        """Wait for the next minute rather than push Binance into a 429 (and then a ban)."""
        budget = self._settings.weight_limit_per_minute * self._settings.weight_budget_fraction
        used = self.used_weight
        if used + weight <= budget:
            return
        now = self._clock()
        wait = 60.0 - now % 60.0
        log.warning(
            "Binance request weight %d of %d used this minute (budget %.0f): waiting %.1f s "
            "for the next minute",
            used,
            self._settings.weight_limit_per_minute,
            budget,
            wait,
        )
        self._sleep(wait)
        self.used_weights.clear()
        self._weight_minute = self._minute()

    def _record_weight(self, response: httpx.Response, weight: int) -> None:
        minute = self._minute()
        if minute != self._weight_minute:
            self.used_weights.clear()
            self._weight_minute = minute
        reported = {  # httpx gives lower-case names: x-mbx-used-weight-1m -> "1m"
            name.removeprefix("x-mbx-used-weight-"): int(value)
            for name, value in response.headers.items()
            if name.startswith("x-mbx-used-weight-") and value.strip().isdigit()
        }
        if reported:
            self.used_weights.update(reported)
        else:
            self.used_weights["1m"] = self.used_weights.get("1m", 0) + weight

    def _minute(self) -> int:
        return int(self._clock() // 60)


def retry_after_s(response: httpx.Response) -> float | None:
    """Binance's `Retry-After` in seconds, if it sent a usable one."""
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def error_body(response: httpx.Response) -> tuple[int | None, str]:
    """Binance's `{"code", "msg"}` error body, or the start of whatever else came back."""
    try:
        body = response.json()
        return body.get("code"), str(body.get("msg", ""))
    except (ValueError, AttributeError):
        return None, response.text[:200]


def _request_error(response: httpx.Response, path: str, symbols: list[str]) -> BinanceRequestError:
    code, msg = error_body(response)
    if code == _INVALID_SYMBOL and symbols:
        return UnknownSymbolError(symbols, response.status_code, code, msg, path)
    return BinanceRequestError(response.status_code, code, msg, path)


def _candles_frame(rows: list[list[Any]]) -> pd.DataFrame:
    """Binance's 12-field kline arrays (decimals as strings) to CANDLE_COLUMNS, typed."""
    frame = pd.DataFrame([row[: len(CANDLE_COLUMNS)] for row in rows], columns=list(CANDLE_COLUMNS))
    return frame.astype(_CANDLE_DTYPES)
