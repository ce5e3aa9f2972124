"""What every venue's market data offers, so the store, the CLIs and the scanner name an
exchange instead of importing its client: closed klines and the exchange's order rules."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Protocol

import pandas as pd

from market.models import SymbolRules


class MarketData(Protocol):
    """A venue's public REST client (Binance's and Bybit's fit)."""

    exchange: str

    def klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int,
        end_ms: int,
        *,
        on_page: Callable[[int], None] | None = None,
    ) -> pd.DataFrame:
        """Closed bars with open_time in [start_ms, end_ms], oldest first, in CANDLE_COLUMNS."""

    def rules(self, symbols: list[str] | None = None) -> dict[str, SymbolRules]:
        """The exchange's order filters by symbol."""

    def __enter__(self) -> MarketData: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
