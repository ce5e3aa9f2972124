"""The veto ledger outside the backtest: a paper loop records what the gate blocked with each
decision, and `agent-trade ledger` prices the account's vetoed and clamped decisions from the
bars after them."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from agent.records import load_decisions, loop_run_id
from market.sample import load_sample
from store import open_store

RUN = ("--symbol", "BTCUSDT", "--speed", "max", "--max-bars", "200", "--decide-every", "5")
MINUTE_MS = 60_000


def by_hand(records: list, horizon_min: int) -> dict[str, float]:
    """Each blocked signal entered at the next bar's open and marked at the close `horizon_min`
    bars later, less fees and slippage both ways; saved is minus what it would have earned."""
    bars = load_sample("BTCUSDT").set_index("open_time")
    saved: dict[str, float] = defaultdict(float)
    for record in records:
        cut = record.blocked
        entry_open = record.decided_ms + 1  # the bar after the one the decision closed on
        start = bars.open[entry_open]
        end = bars.close[entry_open + (horizon_min - 1) * MINUTE_MS]
        quantity = cut["quantity"]
        earned = quantity * (end - start) - cut["cost"] * abs(quantity) * (start + end)
        saved[cut["code"]] -= earned
    return {code: round(value, 2) for code, value in saved.items()}


@pytest.mark.slow
def test_a_paper_loops_ledger_is_priced_by_hand(cli, offline_env: dict[str, str]) -> None:
    run = cli("agent-trade", *RUN)
    assert run.returncode == 0, run.stderr

    status = json.loads(cli("agent-trade", "status", "--json").stdout)
    assert status["mode"] == "paper" and status["fills"] > 0
    assert status["decisions"] == 40

    ledger = cli("agent-trade", "ledger", "--json")
    assert ledger.returncode == 0, ledger.stderr
    shown = json.loads(ledger.stdout)
    assert shown["horizons"] == ["15m", "1h", "4h"]

    store = open_store(f"sqlite:///{Path(offline_env['AGENT_DATA_DIR']) / 'agent.db'}")
    blocked = [r for r in load_decisions(store, loop_run_id("paper")) if r.blocked]
    assert blocked, "the offline model's entries are clamped by confidence"
    # The paper fill model's costs: 10 bps fee plus 2 bps slippage on each side.
    assert all(r.blocked["cost"] == pytest.approx(0.0012) for r in blocked)
    for horizon, minutes in (("15m", 15), ("1h", 60)):
        found = {code: e["saved_usd"][horizon] for code, e in shown["by_code"].items()}
        assert found == pytest.approx(by_hand(blocked, minutes), abs=0.011)

    table = cli("agent-trade", "ledger")
    assert "veto ledger" in table.stdout and "CONFIDENCE_SCALED" in table.stdout

    env = {"AGENT_SCORECARD__LEDGER_HORIZONS": "30m,2h"}
    other = cli("agent-trade", "ledger", "--json", env=env)
    assert json.loads(other.stdout)["horizons"] == ["30m", "2h"]


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("ledger",), {"AGENT_SCORECARD__LEDGER_HORIZONS": "15x"}, "scorecard.ledger_horizons"),
        (("ledger",), {"AGENT_SCORECARD__LEDGER_HORIZONS": "1h,60m"}, "the same horizon twice"),
        (("ledger", "--account", "nobody"), {}, "nobody"),
    ],
)
def test_senseless_ledger_requests_exit_2(
    cli, args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    result = cli("agent-trade", *args, env=env)
    assert result.returncode == 2
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
