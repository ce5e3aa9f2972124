"""Settings of the venues beside Binance: where they answer and what they charge."""

from __future__ import annotations

from pydantic import BaseModel, Field


class BybitSettings(BaseModel):
    """Bybit v5 spot: public REST and stream URLs (a loopback server in tests), limits, fees."""

    model_config = {"extra": "forbid"}

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
