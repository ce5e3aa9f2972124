"""What `agent-trade --feed alpaca` adds to a run: Alpaca's clock as the loop's time, the bars
before the first polled one, the stocks' order rules, and the poller that feeds the loop
(venues/alpaca/polling.py says why it polls)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from agent.loop_state import LoopState
from config import Settings
from core.errors import UserError
from execution.paper_records import load_account
from market.models import INTERVAL_MS, SymbolRules, iso_ms
from store import Store
from venues.alpaca.data import AlpacaData, AlpacaError
from venues.alpaca.polling import AlpacaBarPoller, AlpacaClockTime, last_closed_open
from venues.registry import alpaca_data

HISTORY_DAYS = 7  # a week of bars before the first polled one: five sessions for indicators
DAY_MS = 86_400_000


@dataclass
class AlpacaFeed:
    """The run's Alpaca client and clock, its history, and the stocks' rules."""

    client: AlpacaData
    time: AlpacaClockTime
    interval: str
    history: dict[str, pd.DataFrame]
    rules: dict[str, SymbolRules]
    settle_s: float
    max_wait_s: float

    def poller(self, symbols: list[str], after_ms: int | None) -> AlpacaBarPoller:
        return AlpacaBarPoller(
            self.client,
            symbols,
            self.interval,
            after_ms=after_ms,
            settle_s=self.settle_s,
            max_wait_s=self.max_wait_s,
            time=self.time,
        )


def alpaca_feed(
    settings: Settings, store: Store, account: str, symbols: list[str], mode: str
) -> AlpacaFeed:
    """Ask Alpaca the time, then the week of bars up to the newest closed one; a restarted
    account's history ends at its last bar, so its indicators read what an uninterrupted run
    read."""
    alpaca = settings.alpaca
    client = alpaca_data(settings, live=mode == "live")
    time = AlpacaClockTime()
    stored = load_account(store, account).state_json
    last = None if stored is None else LoopState.model_validate_json(stored).paper.last_open_time
    try:
        now = time.sync(client.clock())
        step, settle = INTERVAL_MS[alpaca.interval], int(alpaca.settle_s * 1000)
        end = last if last is not None else last_closed_open(now, step, settle)
        history = {
            s: client.klines(s, alpaca.interval, end - HISTORY_DAYS * DAY_MS, end) for s in symbols
        }
        rules = client.rules(symbols)
    except AlpacaError as exc:
        raise UserError(f"--feed alpaca cannot start: {exc}") from None
    return AlpacaFeed(
        client=client,
        time=time,
        interval=alpaca.interval,
        history=history,
        rules=rules,
        settle_s=alpaca.settle_s,
        max_wait_s=alpaca.max_wait_s,
    )


def feed_line(feed: AlpacaFeed, symbols: list[str]) -> str:
    bars = sum(len(f) for f in feed.history.values())
    return (
        f"feed: Alpaca {feed.client.feed} {feed.interval} bars of {', '.join(symbols)}, polled "
        f"over REST after each bar closes (Alpaca's clock: {iso_ms(feed.time.now_ms())} UTC; "
        f"{bars:,} bars of history)"
    )
