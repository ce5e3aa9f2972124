"""The veto ledger of a trading loop's account (paper, shadow or live): every decision the gate
vetoed or clamped is stored with what it blocked (`DecisionRecord.blocked`) and is priced here
from the bars after it, as `agent-backtest` prices a backtest's, so `agent-trade ledger` and the
UI show what each rule of the gate saved or cost while the account traded. Bars come from the
store (a live loop keeps its bars there), else the bundled sample a replay played; nothing is
fetched. A horizon whose bars are not there yet counts as still open and is filled in later."""

from __future__ import annotations

from collections.abc import Sequence

from agent.records import DecisionRecord, load_decisions, loop_run_id
from backtest.data import to_bar_arrays
from backtest.veto_ledger import Blocked, Counterfactual, VetoLedger, tally
from core.clock import SystemClock
from execution.feed import BarArrays
from market.source import CandleSource, Notify
from store.db import Store

MINUTE_MS = 60_000


def counterfactuals(records: Sequence[DecisionRecord]) -> list[Counterfactual]:
    return [
        Counterfactual(r.symbol, r.decided_ms, Blocked.model_validate(r.blocked))
        for r in records
        if r.blocked is not None
    ]


def account_ledger(
    store: Store, account: str, horizons_min: Sequence[int], notify: Notify
) -> VetoLedger:
    """The account's ledger from its stored decisions and the 1m bars from the bar each was
    made on to the end of its longest horizon (or the newest bar there is)."""
    found = counterfactuals(load_decisions(store, run_id=loop_run_id(account)))
    clock = SystemClock()
    source = CandleSource(store, clock, notify)
    arrays: dict[str, BarArrays] = {}
    for symbol in sorted({c.symbol for c in found}):
        times = [c.decided_ms for c in found if c.symbol == symbol]
        first = min(times) - MINUTE_MS + 1  # the open of the bar that closed at the decision
        last = min(max(times) + max(horizons_min) * MINUTE_MS, clock.now_ms())
        frame = source.get(symbol, "1m", start_ms=first, end_ms=last)
        arrays[symbol] = to_bar_arrays({symbol: frame})[0]
    return tally(found, arrays.__getitem__, horizons_min)
