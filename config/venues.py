"""Settings of the venues beside Binance: where they answer and what they charge."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from core.config_model import ConfigModel


class BybitSettings(ConfigModel):
    """Bybit v5 spot: public REST and stream URLs (a loopback server in tests), limits, fees."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    base_url: str = Field("https://api.bybit.com", pattern=r"^https?://\S+$")
    stream_url: str = Field(
        "wss://stream.bybit.com/v5/public/spot",
        pattern=r"^wss?://\S+$",
        description="public spot WebSocket (orderbook, publicTrade, kline)",
    )
    trade_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="signed trading REST; default api-testnet.bybit.com, or the live API with "
        "--mode live",
    )
    timeout_s: float = Field(10.0, gt=0, le=120)
    max_retries: int = Field(4, ge=0, le=20)
    max_retry_after_s: float = Field(60.0, gt=0)
    taker_fee_bps: float = Field(10.0, ge=0, le=100, description="spot taker fee, 10 = 0.1%")
    stream_silence_s: float = Field(
        45.0,
        gt=0,
        le=600,
        description="--feed bybit: a stream quiet this long is reopened and the bars it missed "
        "fetched over REST (our ping every 20 s draws a pong, so a live socket is never quieter)",
    )


class AlpacaSettings(ConfigModel):
    """Alpaca (US stocks): market data, paper trading (`--mode testnet`) and the live API; keys
    come from APCA_API_KEY_ID and APCA_API_SECRET_KEY, never from a profile."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    data_url: str = Field("https://data.alpaca.markets", pattern=r"^https?://\S+$")
    paper_url: str = Field(
        "https://paper-api.alpaca.markets",
        pattern=r"^https?://\S+$",
        description="paper trading (--mode testnet), and the clock and calendar otherwise",
    )
    live_url: str = Field("https://api.alpaca.markets", pattern=r"^https?://\S+$")
    feed: str = Field("iex", pattern=r"^(iex|sip|otc)$", description="iex is the free feed")
    interval: str = Field(
        "1m",
        pattern=r"^(1m|5m|15m|30m|1h)$",
        description="--feed alpaca: the bars polled, each asked for once it has closed",
    )
    timeout_s: float = Field(10.0, gt=0, le=120)
    settle_s: float = Field(
        3.0,
        ge=0,
        le=60,
        description="--feed alpaca: seconds after a bar's close before it is asked for (Alpaca "
        "publishes a minute bar a moment after the minute ends)",
    )
    max_wait_s: float = Field(
        60.0, gt=0, le=3600, description="--feed alpaca: the longest sleep between two polls"
    )
    fill_wait_s: float = Field(
        2.0,
        ge=0,
        le=60,
        description="testnet and live: how long a sent market order is watched for its fill "
        "before the loop settles it on a later bar",
    )
