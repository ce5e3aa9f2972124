"""A paper account stopped and restarted around a 2:1 split: the split it took is in the store
with the bar, so the restarted account holds the split shares (not the pre-split count its
fills alone would give) and never takes the split a second time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from script_strategy import Script, order
from test_corporate_actions import RULES, _yahoo, actions, table
from test_stock_paper_parity import step_rows

from execution.fees import FeeSchedule
from execution.paper import GrowingFeed, PaperExecutor
from execution.slippage import FixedBps

N, EX_DATE = 30, 15  # daily bars; the split's ex-date is bar 15


def _status(cli, account: str) -> dict:
    shown = json.loads(cli("agent-trade", "status", "--account", account, "--json").stdout)
    # Risk state too: an account restarted on the pre-split share count reads the split as a
    # 50% drawdown and locks itself.
    keys = ("bars", "cash", "equity", "positions", "trading_state", "locks")
    return {k: shown[k] for k in keys}


@pytest.mark.slow
def test_a_restart_after_the_split_holds_the_split_shares(cli, tmp_path: Path) -> None:
    closes = 100 + 0.5 * np.arange(N)
    raw = np.where(np.arange(N) >= EX_DATE, closes / 2, closes)
    splits = np.zeros(N)
    splits[EX_DATE] = 2.0
    data = tmp_path / "xyz.csv"
    _yahoo(data, raw, splits)
    common = ("--feed", "replay", "--speed", "max", "--strategy", "momentum", "--lookback", "1",
              "--symbol", "XYZ", "--data", str(data))  # fmt: skip
    assert cli("agent-trade", *common, "--account", "whole").returncode == 0
    # Stopped at a commit, as a kill -9 leaves the store: once just before the ex-date, once
    # just after it; each restart runs to the end of the file.
    for account, bars in (("before", EX_DATE), ("after", EX_DATE + 1)):
        first = cli("agent-trade", *common, "--account", account, "--max-bars", str(bars))
        assert first.returncode == 0, first.stderr
        assert _status(cli, account)["bars"] == bars
        assert cli("agent-trade", *common, "--account", account).returncode == 0
    whole = _status(cli, "whole")
    (held,) = whole["positions"]
    fills = json.loads(cli("agent-trade", "fills", "--account", "whole", "--json").stdout)
    assert [f["side"] for f in fills] == ["buy"]
    assert held["quantity"] == 2 * fills[0]["quantity"]  # bought before the split, held after
    assert _status(cli, "before") == whole
    assert _status(cli, "after") == whole


def _venue(feed: GrowingFeed) -> PaperExecutor:
    return PaperExecutor(RULES, feed, cash=10_000.0, fees=FeeSchedule(maker=0, taker=0),
                         slippage=FixedBps(bps=0.0), actions=actions(2.0))  # fmt: skip


def test_a_split_already_taken_is_not_taken_again_when_its_bar_comes_back() -> None:
    rows = table().to_dict("records")
    plan = {("XYZ", 0): [lambda ctx: order(ctx, quantity=15)]}
    feed = GrowingFeed(["XYZ"])
    first = _venue(feed)
    step_rows(first, feed, Script(plan), rows[:4])  # through the split's ex-date
    assert first.ledger.quantity("XYZ") == 30
    (taken,) = first.new_actions
    assert (taken.ratio, taken.fills_before) == (2.0, 1)
    # A new process whose feed hands it the ex-date bar again (history ends before it).
    again = GrowingFeed(["XYZ"])
    restarted = _venue(again)
    restarted.restore(first.checkpoint, first.sim.fills, list(first.orders.values()), [taken])
    assert restarted.ledger.quantity("XYZ") == 30
    step_rows(restarted, again, Script({}), rows[:4])
    assert restarted.ledger.quantity("XYZ") == 30 and not restarted.new_actions
