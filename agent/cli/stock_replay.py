"""`agent-trade --symbol <stock>` with no --data: a replay of the store's bars of the stocks,
those `agent-data import` or `agent-data download --exchange alpaca` stored (under alpaca,
the stock venue), with the splits and dividends recorded beside them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from core.errors import UserError
from market.corporate import CorporateActions
from market.models import INTERVAL_MS
from store import Store
from store.candles import load_candles, summarize
from store.corporate import load_actions


@dataclass(frozen=True)
class StoredStocks:
    exchange: str
    interval: str
    frames: dict[str, pd.DataFrame]
    actions: CorporateActions

    def line(self) -> str:
        symbols = ", ".join(self.frames)
        return f"the store's {self.exchange} {self.interval} bars of {symbols}"


def stored_stocks(store: Store, symbols: Sequence[str], exchange: str) -> StoredStocks:
    """Every stock's stored bars at the finest interval all of them have under `exchange`, at
    the open times all of them have (the replay steps every symbol together)."""
    common: set[str] | None = None
    for symbol in symbols:
        held = {s.interval for s in summarize(store, symbol) if s.exchange == exchange}
        if not held:
            raise UserError(
                f"no {symbol} bars stored under {exchange}: import a file with `agent-data import "
                f"FILE --symbol {symbol}`, download with `agent-data download --exchange alpaca "
                f"--symbol {symbol}`, or replay a file with --data FILE"
            )
        common = held if common is None else common & held
    if not common:
        raise UserError(f"the stored bars of {', '.join(symbols)} share no interval")
    interval = min(common, key=INTERVAL_MS.__getitem__)
    frames = {s: load_candles(store, s, interval, exchange=exchange) for s in symbols}
    shared = set.intersection(*(set(f["open_time"].tolist()) for f in frames.values()))
    frames = {s: f[f["open_time"].isin(shared)].reset_index(drop=True) for s, f in frames.items()}
    if not shared:
        raise UserError(f"the stored {interval} bars of {', '.join(symbols)} share no open time")
    actions = CorporateActions({s: load_actions(store, s, interval) for s in symbols})
    return StoredStocks(exchange, interval, frames, actions)
