"""Bybit v5 spot public REST: closed klines (paged), instruments-info as SymbolRules, the time.
Bybit answers HTTP 200 with a `retCode`; a rate limit (10006) waits for the reset time it
names, server trouble is retried with backoff, a refused request never is."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Unpack

import httpx
import pandas as pd
from tenacity import RetryCallState
from tenacity import wait_exponential as backoff

from config.venues import BybitSettings
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

EXCHANGE = "bybit"
CATEGORY = "spot"
KLINES_LIMIT = 1000  # Bybit's maximum rows per /v5/market/kline call
_RATE_LIMITED = 10006  # "Too many visits": wait for X-Bapi-Limit-Reset-Timestamp
_SERVER_BUSY = (10000, 10016)  # server timeout, server error: another attempt may succeed
_AUTH = (10003, 10004, 10005, 10007, 10009, 10010, 33004)  # key, signature, permission, IP
_INTERVALS = {
    "1m": "1",
    "3m": "3",
    "5m": "5",
    "15m": "15",
    "30m": "30",
    "1h": "60",
    "2h": "120",
    "4h": "240",
    "6h": "360",
    "12h": "720",
    "1d": "D",
    "1w": "W",
}
_FLOATS = ("open", "high", "low", "close", "volume", "quote_volume")


class BybitError(VenueError):
    """Anything that went wrong talking to Bybit: a venue catches it as it catches Binance's."""


class BybitUnavailable(BybitError):
    """Bybit cannot be used right now (down, unreachable, rate limit outlasting the retries)."""


class BybitRequestError(BybitError):
    """Bybit refused the request (a retCode retrying cannot cure)."""

    def __init__(self, code: int, msg: str, path: str) -> None:
        self.code, self.msg, self.path = code, msg, path
        super().__init__(f"Bybit refused GET {path}: retCode {code}: {msg}")


class BybitAuthError(UserError, BybitRequestError):
    """The key, its signature or its permissions were refused: fix the key, never retry."""


class UnknownSymbolError(UserError, BybitRequestError):
    """The user asked for a symbol Bybit spot does not list."""

    def __init__(self, symbol: str, code: int, msg: str, path: str) -> None:
        BybitRequestError.__init__(self, code, msg, path)
        self.args = (
            f"unknown symbol {symbol}: Bybit spot does not list it (Bybit says {msg!r}, "
            f"retCode {code}); use a spot symbol such as BTCUSDT",
        )


def bybit_interval(interval: str) -> str:
    """Our interval names (`1m`, `1h`, `1d`) in Bybit's (`1`, `60`, `D`)."""
    try:
        return _INTERVALS[interval]
    except KeyError:
        raise UserError(
            f"invalid interval {interval} for Bybit: one of {', '.join(_INTERVALS)}"
        ) from None


def rules_from_instrument(entry: dict[str, Any]) -> SymbolRules:
    """One instruments-info entry as the filters an order must satisfy: basePrecision is the
    quantity step, minOrderAmt/maxOrderAmt the notional bounds (in the quote coin)."""
    lot, price = entry["lotSizeFilter"], entry["priceFilter"]
    return SymbolRules(
        symbol=entry["symbol"],
        base_asset=entry["baseCoin"],
        quote_asset=entry["quoteCoin"],
        status="TRADING" if entry.get("status") == "Trading" else str(entry.get("status")),
        tick_size=Decimal(price["tickSize"]),
        step_size=Decimal(lot["basePrecision"]),
        min_qty=Decimal(lot["minOrderQty"]),
        max_qty=Decimal(lot["maxOrderQty"]),
        min_notional=Decimal(lot["minOrderAmt"]),
        max_notional=Decimal(lot["maxOrderAmt"]) if lot.get("maxOrderAmt") else None,
    )


class BybitRestClient(PublicClient):
    """One connection pool and rate-limit state per process talking to Bybit's public API."""

    exchange = EXCHANGE
    venue = "Bybit"
    unavailable = BybitUnavailable

    def __init__(self, settings: BybitSettings, **hooks: Unpack[ClientHooks]) -> None:
        super().__init__(settings, **hooks)
        self.limit_status: dict[str, int] = {}  # X-Bapi-Limit* of the last answer that had them

    @reads_reply
    def klines(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, *, on_page: OnPage = None
    ) -> pd.DataFrame:
        """Closed bars with open_time in [start_ms, end_ms], oldest first. Bybit pages newest
        first, so each next page ends just before the oldest bar of the last one."""
        symbol, step = kline_window(symbol, interval, start_ms, end_ms)
        rows: dict[int, list[str]] = {}
        on_page = progress(on_page)
        cursor = end_ms
        while cursor >= start_ms:
            params = {
                "category": CATEGORY,
                "symbol": symbol,
                "interval": bybit_interval(interval),
                "start": start_ms,
                "end": cursor,
                "limit": KLINES_LIMIT,
            }
            page = self._get("/v5/market/kline", params, symbol)["list"]
            rows.update((int(row[0]), row) for row in page if start_ms <= int(row[0]) <= end_ms)
            if on_page is not None:
                on_page(len(rows))
            if len(page) < KLINES_LIMIT:
                break
            cursor = min(int(row[0]) for row in page) - 1
        now_ms = self._closed_before()
        closed = [rows[t] for t in sorted(rows) if t + step - 1 < now_ms]
        return _candles_frame(closed, step)

    @reads_reply
    def rules(self, symbols: list[str] | None = None) -> dict[str, SymbolRules]:
        """Order filters by symbol (every spot symbol when none given), following the cursor."""
        wanted = [parse_symbol(s) for s in symbols or []]
        params: dict[str, Any] = {"category": CATEGORY, "limit": 1000}
        if len(wanted) == 1:
            params["symbol"] = wanted[0]
        rules: dict[str, SymbolRules] = {}
        while True:
            result = self._get("/v5/market/instruments-info", params, wanted[0] if wanted else "")
            for entry in result["list"]:
                try:
                    rules[entry["symbol"]] = rules_from_instrument(entry)
                except (KeyError, ArithmeticError) as exc:
                    log.warning("skipping %s: unusable instruments-info (%s)", entry, exc)
            cursor = result.get("nextPageCursor")
            if not cursor:
                break
            params["cursor"] = cursor
        if wanted:
            missing = [s for s in wanted if s not in rules]
            if missing:
                raise UnknownSymbolError(missing[0], 0, "not in instruments-info", "instruments")
            return {s: rules[s] for s in wanted}
        return rules

    @reads_reply
    def server_time(self) -> int:
        """Bybit's clock in epoch ms (/v5/market/time), to measure this machine's skew."""
        return int(self._get("/v5/market/time", {}, "")["timeNano"]) // 1_000_000

    def _get(self, path: str, params: dict[str, Any], symbol: str) -> Any:
        return self._get_retried(lambda: self._attempt(path, params, symbol), path, self._wait)

    def _attempt(self, path: str, params: dict[str, Any], symbol: str) -> Any:
        response = self._http_get(path, params)
        self._note_limits(response)
        if response.status_code == 403:  # Bybit's IP rate limit: the ban lasts minutes
            raise BybitUnavailable(
                f"Bybit at {self.base_url} refused this IP (HTTP 403, access too frequent)"
            )
        if response.status_code >= 500 or response.status_code == 429:
            raise Transient(f"HTTP {response.status_code}")
        try:
            body = response.json()
            code, msg = int(body["retCode"]), str(body.get("retMsg", ""))
        except (ValueError, KeyError, TypeError):
            raise BybitUnavailable(
                f"Bybit at {self.base_url} answered GET {path} with HTTP "
                f"{response.status_code} but not a v5 body: {response.text[:120]!r}"
            ) from None
        if code == 0:
            return body["result"]
        if code == _RATE_LIMITED:
            raise Transient(f"retCode {code} ({msg})", self._until_reset())
        if code in _SERVER_BUSY:
            raise Transient(f"retCode {code} ({msg})")
        if code in _AUTH:
            raise BybitAuthError(code, msg, path)
        if symbol and "symbol" in msg.lower():
            raise UnknownSymbolError(symbol, code, msg, path)
        raise BybitRequestError(code, msg, path)

    def _note_limits(self, response: httpx.Response) -> None:
        found = {
            name.removeprefix("x-bapi-"): int(value)
            for name, value in response.headers.items()
            if name.startswith("x-bapi-limit") and value.strip().isdigit()
        }
        if found:
            self.limit_status = found

    def _until_reset(self) -> float | None:
        reset_ms = self.limit_status.get("limit-reset-timestamp")
        if reset_ms is None:
            return None
        return max(0.0, reset_ms / 1000 - self._clock())

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        cap = self._settings.max_retry_after_s
        if isinstance(exc, Transient) and exc.wait_s is not None:
            return min(exc.wait_s, cap)
        wait = backoff(multiplier=0.5, max=min(30.0, cap))(state)
        log.warning("Bybit %s: %s; retry in %.1f s", self.base_url, exc, wait)
        return wait


def _candles_frame(rows: list[list[str]], step: int) -> pd.DataFrame:
    """Bybit's 7-field kline arrays (start, OHLC, volume, turnover) in CANDLE_COLUMNS; Bybit
    gives no trade count or taker volumes, so those are 0."""
    frame = pd.DataFrame(
        [row[:7] for row in rows],
        columns=["open_time", "open", "high", "low", "close", "volume", "quote_volume"],
    )
    frame = frame.astype({"open_time": "int64"} | dict.fromkeys(_FLOATS, "float64"))
    frame["close_time"] = frame["open_time"] + step - 1
    frame["trades"] = 0
    frame["taker_buy_volume"] = 0.0
    frame["taker_buy_quote_volume"] = 0.0
    return frame[list(CANDLE_COLUMNS)]
