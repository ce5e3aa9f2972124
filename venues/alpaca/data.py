"""Alpaca's market-data API (data.alpaca.markets/v2/stocks) and its trading clock and calendar:
bars with `next_page_token` paging, snapshots, latest quote and trade. Keys come from the
environment; the free `iex` feed is the default. A crossed quote (bid above ask, as pre-market
books often are) is flagged and gives no price."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from core.errors import UserError, VenueError
from market.calendar import dated
from market.instruments import equity_rules
from market.models import CANDLE_COLUMNS, INTERVAL_MS, SymbolRules
from market.rest_client import RestClient, progress, reads_reply

DATA_URL = "https://data.alpaca.markets"
PAPER_URL = "https://paper-api.alpaca.markets"
FEED = "iex"  # the free feed; "sip" needs a paid plan
BARS_LIMIT = 10_000  # Alpaca's maximum rows per page


_TIMEFRAMES = {
    "1m": "1Min",
    "5m": "5Min",
    "15m": "15Min",
    "30m": "30Min",
    "1h": "1Hour",
    "4h": "4Hour",
    "1d": "1Day",
    "1w": "1Week",
}


class AlpacaError(VenueError):
    """Alpaca refused a request or could not be reached."""


class AlpacaKeys(BaseModel):
    """The key pair, read from APCA_API_KEY_ID and APCA_API_SECRET_KEY; never printed."""

    model_config = ConfigDict(frozen=True)

    key_id: str = Field(repr=False)
    secret: str = Field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> AlpacaKeys:
        missing = [n for n in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY") if not env.get(n)]
        if missing:
            raise UserError(f"Alpaca needs {' and '.join(missing)} in the environment")
        return cls(key_id=env["APCA_API_KEY_ID"], secret=env["APCA_API_SECRET_KEY"])

    def headers(self) -> dict[str, str]:
        return {"APCA-API-KEY-ID": self.key_id, "APCA-API-SECRET-KEY": self.secret}


class Quote(BaseModel):
    """The best bid and ask. `mid` is None when the book is crossed or one side is empty:
    such a quote is shown, never used as a price."""

    time: pd.Timestamp
    bid: float
    ask: float
    bid_size: float
    ask_size: float

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    @property
    def crossed(self) -> bool:
        return self.bid > 0 and self.ask > 0 and self.bid > self.ask

    @property
    def mid(self) -> float | None:
        if self.crossed or self.bid <= 0 or self.ask <= 0:
            return None
        return (self.bid + self.ask) / 2


class Trade(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    time: pd.Timestamp
    price: float
    size: float
    exchange: str


class Clock(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    time: pd.Timestamp
    is_open: bool
    next_open: pd.Timestamp
    next_close: pd.Timestamp


class Session(BaseModel):
    """One trading day in New York time: regular open and close, and the extended day."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    open: pd.Timestamp
    close: pd.Timestamp
    session_open: pd.Timestamp | None = None
    session_close: pd.Timestamp | None = None


class Snapshot(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    trade: Trade | None
    quote: Quote | None
    minute_bar: dict[str, Any] | None
    daily_bar: dict[str, Any] | None
    prev_daily_bar: dict[str, Any] | None


class AlpacaData(RestClient):
    """Market data at `data_url`, the clock and calendar at `trading_url` (paper by default).
    `klines` and `rules` make it a venue's MarketData (venues/base.py)."""

    exchange = "alpaca"
    venue_label = "Alpaca"
    unavailable = AlpacaError

    def __init__(
        self,
        keys: AlpacaKeys,
        *,
        data_url: str = DATA_URL,
        trading_url: str = PAPER_URL,
        feed: str = FEED,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(data_url, timeout_s, transport=transport)
        self._http.headers.update(keys.headers())
        self.trading_url = trading_url.rstrip("/")
        self.feed = feed

    def _get(self, url: str, params: Mapping[str, Any] | None = None) -> Any:
        try:
            response = self._http.get(url, params=params)
        except httpx.TransportError as exc:
            raise AlpacaError(f"Alpaca unreachable at {url}: {exc}") from exc
        if response.status_code in (401, 403):
            raise UserError(f"Alpaca refused the keys ({response.status_code}) for {url}")
        if response.status_code != 200:
            raise AlpacaError(f"Alpaca answered {response.status_code} for {url}: {response.text}")
        return response.json()

    @reads_reply
    def bars(
        self, symbols: Sequence[str], timeframe: str, start: str, end: str | None = None
    ) -> dict[str, pd.DataFrame]:
        """Every bar in [start, end], page after page until no `next_page_token` is left; one
        frame per symbol (open_time in epoch ms, OHLCV, trades, vwap), oldest first."""
        params: dict[str, Any] = {
            "symbols": ",".join(symbols),
            "timeframe": timeframe,
            "start": start,
            "limit": BARS_LIMIT,
            "feed": self.feed,
            "adjustment": "raw",
        }
        if end is not None:
            params["end"] = end
        rows: dict[str, list[dict[str, Any]]] = {s: [] for s in symbols}
        while True:
            body = self._get("/v2/stocks/bars", params)
            for symbol, bars in (body.get("bars") or {}).items():
                rows.setdefault(symbol, []).extend(bars)
            token = body.get("next_page_token")
            if not token:
                break
            params = {**params, "page_token": token}
        return {s: _bar_frame(r) for s, r in rows.items()}

    @reads_reply
    def klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int,
        end_ms: int,
        *,
        on_page: Callable[[int], None] | None = None,
    ) -> pd.DataFrame:
        """Closed bars in [start_ms, end_ms] in CANDLE_COLUMNS; a daily bar is a session, dated
        at midnight UTC of its New York date, as an imported file's are (`dated`)."""
        timeframe = _TIMEFRAMES.get(interval)
        if timeframe is None:
            raise UserError(f"Alpaca has no {interval} bars; use one of {', '.join(_TIMEFRAMES)}")
        start, end = (pd.Timestamp(t, unit="ms", tz="UTC").isoformat() for t in (start_ms, end_ms))
        frame = self.bars([symbol], timeframe, start, end)[symbol]
        report = progress(on_page)
        if report is not None:
            report(len(frame))
        step = INTERVAL_MS[interval]
        opens = dated(frame["open_time"].to_numpy(), step)
        out = frame.assign(
            open_time=opens,
            close_time=opens + step - 1,
            quote_volume=frame["vwap"] * frame["volume"],
            taker_buy_volume=0.0,
            taker_buy_quote_volume=0.0,
        )
        return out.loc[out["open_time"].between(start_ms, end_ms), list(CANDLE_COLUMNS)]

    @reads_reply
    def rules(self, symbols: list[str] | None = None) -> dict[str, SymbolRules]:
        """Whole-share US-equity rules at each symbol's latest trade (the tick depends on it)."""
        return {s: equity_rules(s, self.latest_trade(s).price) for s in symbols or []}

    @reads_reply
    def latest_quote(self, symbol: str) -> Quote:
        body = self._get("/v2/stocks/quotes/latest", {"symbols": symbol, "feed": self.feed})
        return _quote(body["quotes"][symbol])

    @reads_reply
    def quotes(self, symbol: str, start: str, end: str | None = None) -> list[Quote]:
        params = {"symbols": symbol, "start": start, "feed": self.feed}
        if end is not None:
            params["end"] = end
        body = self._get("/v2/stocks/quotes", params)
        return [_quote(q) for q in (body.get("quotes") or {}).get(symbol, [])]

    @reads_reply
    def latest_trade(self, symbol: str) -> Trade:
        body = self._get("/v2/stocks/trades/latest", {"symbols": symbol, "feed": self.feed})
        return _trade(body["trades"][symbol])

    @reads_reply
    def snapshot(self, symbol: str) -> Snapshot:
        body = self._get("/v2/stocks/snapshots", {"symbols": symbol, "feed": self.feed})[symbol]
        return Snapshot(
            trade=_trade(body["latestTrade"]) if body.get("latestTrade") else None,
            quote=_quote(body["latestQuote"]) if body.get("latestQuote") else None,
            minute_bar=body.get("minuteBar"),
            daily_bar=body.get("dailyBar"),
            prev_daily_bar=body.get("prevDailyBar"),
        )

    @reads_reply
    def clock(self) -> Clock:
        return parse_clock(self._get(f"{self.trading_url}/v2/clock"))

    @reads_reply
    def calendar(self, start: str, end: str) -> list[Session]:
        body = self._get(f"{self.trading_url}/v2/calendar", {"start": start, "end": end})
        return [_session(day) for day in body]


def parse_clock(body: Mapping[str, Any]) -> Clock:
    """Alpaca's /v2/clock (the market data and the trading client both ask it)."""
    return Clock(
        time=_ts(body["timestamp"]),
        is_open=bool(body["is_open"]),
        next_open=_ts(body["next_open"]),
        next_close=_ts(body["next_close"]),
    )


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC")


def _bar_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["t", "o", "h", "l", "c", "v", "n", "vw"])
    out = pd.DataFrame(
        {
            "open_time": pd.to_datetime(frame["t"], utc=True).astype("datetime64[ms, UTC]"),
            "open": frame["o"].astype(float),
            "high": frame["h"].astype(float),
            "low": frame["l"].astype(float),
            "close": frame["c"].astype(float),
            "volume": frame["v"].astype(float),
            "trades": frame["n"].fillna(0).astype("int64"),
            "vwap": frame["vw"].astype(float),
        }
    )
    out["open_time"] = out["open_time"].astype("int64")
    return out.sort_values("open_time", kind="stable").reset_index(drop=True)


def _quote(row: Mapping[str, Any]) -> Quote:
    return Quote(
        time=_ts(row["t"]),
        bid=float(row["bp"]),
        ask=float(row["ap"]),
        bid_size=float(row["bs"]),
        ask_size=float(row["as"]),
    )


def _trade(row: Mapping[str, Any]) -> Trade:
    return Trade(time=_ts(row["t"]), price=float(row["p"]), size=float(row["s"]), exchange=row["x"])


def _session(day: Mapping[str, str]) -> Session:
    """Alpaca's calendar gives wall-clock times in New York ("09:30", extended "0400")."""

    def at(hhmm: str | None) -> pd.Timestamp | None:
        if not hhmm:
            return None
        clock = hhmm if ":" in hhmm else f"{hhmm[:2]}:{hhmm[2:]}"
        return pd.Timestamp(f"{day['date']} {clock}", tz="America/New_York").tz_convert("UTC")

    return Session(
        open=at(day["open"]),
        close=at(day["close"]),
        session_open=at(day.get("session_open")),
        session_close=at(day.get("session_close")),
    )
