"""A fill as a backtest report and `agent-trade fills` both list it, and the reports' UTC time
format, without pandas: `agent-trade fills` loads neither the report nor the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from execution.orders import Fill

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(ms: int) -> str:
    """Epoch milliseconds as UTC `YYYY-MM-DDTHH:MM:SSZ`."""
    return (_EPOCH + timedelta(milliseconds=int(ms))).strftime("%Y-%m-%dT%H:%M:%SZ")


class FillOut(BaseModel):
    """One fill, as a backtest report and `agent-trade fills` both list it."""

    model_config = ConfigDict(frozen=True)

    time: str
    time_ms: int
    symbol: str
    side: str
    quantity: float
    price: float
    fee: float
    reason: str
    client_order_id: str

    @classmethod
    def of(cls, fill: Fill) -> FillOut:
        return cls(
            time=iso(fill.time_ms),
            time_ms=fill.time_ms,
            symbol=fill.symbol,
            side="buy" if fill.side > 0 else "sell",
            quantity=fill.quantity,
            price=fill.price,
            fee=fill.fee,
            reason=fill.reason.value,
            client_order_id=fill.order_id,
        )
