"""A way back from a halt, on record: `agent-trade halt`, `resume` and `reset-drawdown` as a user
runs them (real subprocesses, a real store), for a loop's account and for the chat desk; each
survives a restart and is kept with who did it and why."""

from __future__ import annotations

import json

import pytest

from agent.loop_state import CHAT_DESK_SCOPE, risk_scope
from agent.offline import OfflineModel
from agent.strategy import trading_agent
from agent.trading_loop import TradingLoop
from market.binance_ws import bars_from_frame
from market.sample import load_sample, sample_rules
from risk.interventions import Intervention, history, intervene
from risk.limits import RiskLimits
from risk.records import load_state
from risk.state import on_equity
from store import open_store

SMA = ("--strategy", "sma_cross", "--symbol", "BTCUSDT", "--feed", "replay", "--speed", "max")
# a drawdown breaker so tight that the first losing minute of a held position trips it
TIGHT = {"AGENT_RISK__MAX_DRAWDOWN_PCT": "0.0005"}


def _status(cli, *args: str, env: dict[str, str] | None = None) -> dict:
    result = cli("agent-trade", "status", "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_unknown_account_exits_2_for_resume_and_reset(cli) -> None:
    for command in ("resume", "reset-drawdown"):
        result = cli("agent-trade", command, "--account", "nobody")
        assert result.returncode == 2
        assert "no trading account 'nobody'" in result.stderr
        assert "cleared" not in result.stdout


@pytest.mark.slow
def test_drawdown_lock_survives_a_restart_until_reset_and_is_recorded(cli) -> None:
    first = cli("agent-trade", *SMA, "--max-bars", "120", env=TIGHT)
    assert first.returncode == 0, first.stderr
    locked = _status(cli, env=TIGHT)
    assert locked["trading_state"] == "REDUCING"
    assert any("drawdown" in lock for lock in locked["locks"])
    assert locked["limits"]["max_drawdown_pct"] == 0.0005

    again = cli("agent-trade", *SMA, "--max-bars", "5", env=TIGHT)
    assert again.returncode == 0, again.stderr
    assert _status(cli, env=TIGHT)["trading_state"] == "REDUCING", "a restart keeps the lock"

    reset = cli("agent-trade", "reset-drawdown", "--by", "ana", "--reason", "reviewed the trades")
    assert reset.returncode == 0, reset.stderr
    assert "reset the drawdown lock of 'paper': now ACTIVE" in reset.stdout
    shown = _status(cli)
    assert shown["trading_state"] == "ACTIVE"
    assert shown["interventions"][-1].endswith("drawdown reset by ana: reviewed the trades")
    text = cli("agent-trade", "status").stdout
    assert "record    #1 drawdown reset by ana: reviewed the trades" in text
    assert "limits    account: max_daily_loss_pct 10% · max_drawdown_pct 0.05%" in text


@pytest.mark.slow
def test_halt_and_resume_are_recorded_with_who_and_why(cli) -> None:
    assert cli("agent-trade", *SMA, "--max-bars", "5").returncode == 0
    halted = cli("agent-trade", "halt", "--by", "bo", "--reason", "news at 9")
    assert halted.returncode == 0, halted.stderr
    assert _status(cli)["trading_state"] == "HALTED"
    resumed = cli("agent-trade", "resume", "--by", "bo", "--reason", "news passed")
    assert resumed.returncode == 0
    assert "cleared the kill switch of 'paper': now ACTIVE" in resumed.stdout
    assert _status(cli)["interventions"] == [
        "#1 halted by bo: news at 9",
        "#2 resumed by bo: news passed",
    ]


def test_resume_chat_clears_the_ui_kill_switch(cli, offline_env) -> None:
    store = open_store(f"sqlite:///{offline_env['AGENT_DATA_DIR']}/agent.db")
    pulled = Intervention(
        scope=CHAT_DESK_SCOPE, action="halt", who="user", reason="pulled in the UI", at_ms=1
    )
    intervene(store, pulled)
    assert load_state(store, CHAT_DESK_SCOPE).trading_state(2).value == "HALTED"
    result = cli("agent-trade", "resume", "--chat", "--reason", "back at the desk")
    assert result.returncode == 0, result.stderr
    assert "cleared the kill switch of the chat desk: now ACTIVE" in result.stdout
    assert load_state(store, CHAT_DESK_SCOPE).trading_state(2).value == "ACTIVE"
    assert [h.action for h in history(store, CHAT_DESK_SCOPE)] == ["halt", "resume"]
    store.close()


def test_a_running_loop_applies_a_reset_made_from_another_process(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    frames = {"BTCUSDT": load_sample("BTCUSDT")}
    loop = TradingLoop(
        account="live-one",
        symbols=["BTCUSDT"],
        store=store,
        strategy=trading_agent(
            OfflineModel(), sample_rules(), account="live-one", decide_every=60, cash=10_000
        ),
        strategy_label="agent",
        rules=sample_rules(),
        history={"BTCUSDT": frames["BTCUSDT"].iloc[:1440]},
        cash=10_000,
        kill_switch=tmp_path / "KILL-live-one",
    )
    bars = bars_from_frame(frames["BTCUSDT"].iloc[1440:1443], "BTCUSDT", "1m", "stream")
    loop.step(bars[0].open_time, {"BTCUSDT": bars[0]})
    limits = RiskLimits(max_drawdown_pct=0.01)
    loop.desk.update(lambda s: on_equity(on_equity(s, 10_000, 1, limits), 9_000, 2, limits))
    assert loop.desk.state.trading_state(3).value == "REDUCING"
    reset = Intervention(
        scope=risk_scope("live-one"), action="reset_drawdown", who="cli", reason="ok", at_ms=3
    )
    intervene(store, reset)  # what `agent-trade reset-drawdown` does from its own process
    loop.step(bars[1].open_time, {"BTCUSDT": bars[1]})
    assert loop.desk.state.trading_state(4).value == "ACTIVE"
    assert load_state(store, risk_scope("live-one")).trading_state(4).value == "ACTIVE"
    store.close()
