"""The rules behind "no open door": which hosts need a login, how failed logins are slowed, which
files are private, which API keys are refused and what counts as a paper record for live."""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loopback_exchange import TRADE_ONLY_KEY
from sqlalchemy import insert

from agent.live_readiness import (
    TradingProfile,
    record_paper_profile,
    require_paper_record,
    trading_profile,
)
from agent.loop_state import halt_account, kill_switch_path, risk_scope
from agent.offline import OfflineModel
from agent.ui_access import launch_options
from backtest.config import BacktestConfig
from config import load_settings
from core.errors import UserError
from core.security import (
    Access,
    LoginThrottle,
    is_loopback,
    loose_env_file,
    private_dir,
    private_file,
    resolve_access,
)
from execution.key_permissions import KeyPermissions, problems
from risk.interventions import Intervention, intervene
from risk.limits import RiskLimits
from store import Store
from store.tables import AccountProfileRow, EquityPointRow

WHAT = "the chat"
DAY_MINUTES, MINUTE_MS = 1_440, 60_000
START_MS = 1_764_547_200_000  # 2025-12-01 00:00 UTC


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@given(st.ip_addresses(v=4))
def test_only_127_slash_8_counts_as_loopback_for_ipv4(address: ipaddress.IPv4Address) -> None:
    assert is_loopback(str(address)) == (address in ipaddress.ip_network("127.0.0.0/8"))


@pytest.mark.parametrize(
    ("host", "local"),
    [("localhost", True), ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False),
     ("my-laptop.lan", False), ("192.168.1.20", False)],
)  # fmt: skip
def test_names_and_wildcards(host: str, local: bool) -> None:
    assert is_loopback(host) is local


def test_off_loopback_without_auth_is_refused_naming_the_risk() -> None:
    with pytest.raises(UserError, match=r"refusing to serve the chat on 0\.0\.0\.0 without a"):
        resolve_access("0.0.0.0", None, insecure_no_auth=False, live_accounts=[], what=WHAT)
    local = resolve_access("127.0.0.1", None, insecure_no_auth=False, live_accounts=[], what=WHAT)
    assert not local.needs_login


def test_auth_forms_and_the_insecure_escape_hatch() -> None:
    given_pw = resolve_access("0.0.0.0", "ann:s3cret", insecure_no_auth=False, live_accounts=[], what=WHAT)  # fmt: skip
    assert given_pw.check("ann", "s3cret") and not given_pw.check("ann", "s3cre")
    assert not given_pw.check("bob", "s3cret")
    tokens = {
        resolve_access("0.0.0.0", "token", insecure_no_auth=False, live_accounts=[], what=WHAT).password
        for _ in range(3)
    }  # fmt: skip
    assert len(tokens) == 3 and all(len(t or "") >= 32 for t in tokens)
    for bad in ("ann", ":pw", "ann:"):
        with pytest.raises(UserError, match="expected user:password or token"):
            resolve_access("0.0.0.0", bad, insecure_no_auth=False, live_accounts=[], what=WHAT)
    open_door = resolve_access("0.0.0.0", None, insecure_no_auth=True, live_accounts=[], what=WHAT)
    assert open_door.kind == "insecure"
    with pytest.raises(UserError, match=r"--insecure-no-auth refused: live account\(s\) lv"):
        resolve_access("0.0.0.0", None, insecure_no_auth=True, live_accounts=["lv"], what=WHAT)


def test_insecure_no_auth_warns_at_start_and_a_token_is_printed_once(capsys) -> None:
    settings = load_settings()
    said: list[str] = []
    assert launch_options(Access(kind="insecure"), "0.0.0.0", settings, said.append)["auth"] is None
    assert said and said[0].startswith("warning: --insecure-no-auth") and "0.0.0.0" in said[0]
    token = Access(kind="token", user="agent", password="tok-" + "x" * 28)
    options = launch_options(token, "0.0.0.0", settings, said.append)
    assert options["auth"]("agent", token.password) and not options["auth"]("agent", "nope")
    assert capsys.readouterr().out.count(token.password) == 1


def test_failed_logins_are_throttled_per_client_until_they_age_out() -> None:
    now = [0.0]
    throttle = LoginThrottle(max_failures=5, window_s=900, clock=lambda: now[0])
    for _ in range(5):
        assert throttle.retry_after("10.0.0.9") is None
        throttle.failed("10.0.0.9")
        now[0] += 10
    assert throttle.retry_after("10.0.0.9") == pytest.approx(900 - 50)
    assert throttle.retry_after("10.0.0.7") is None  # another client is not punished
    now[0] = 901  # the first failure aged out: one more try
    assert throttle.retry_after("10.0.0.9") is None
    throttle.failed("10.0.0.9")
    assert throttle.retry_after("10.0.0.9") is not None
    throttle.succeeded("10.0.0.9")
    assert throttle.retry_after("10.0.0.9") is None


def test_data_dir_and_store_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "a" / "data"
        assert private_dir(fresh) is None and mode(fresh) == 0o700
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o755)
        assert "open to other users (mode 0755)" in (private_dir(shared) or "")
        loose = tmp_path / "agent.db"
        loose.write_text("")
        loose.chmod(0o644)
        private_file(loose)
        assert mode(loose) == 0o600
    finally:
        os.umask(old)


def test_a_dotenv_others_can_read_is_named(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    assert loose_env_file(env) is None
    env.write_text("BINANCE_API_KEY=x\n")
    env.chmod(0o644)
    assert "readable by other users (mode 0644)" in (loose_env_file(env) or "")
    env.chmod(0o600)
    assert loose_env_file(env) is None


def test_keys_that_can_move_funds_or_cannot_trade_spot_are_refused() -> None:
    trade_only = KeyPermissions.model_validate(TRADE_ONLY_KEY)
    assert problems(trade_only) == ([], [])
    # Binance's documented example answer: transfers on, spot trading off, no IP restriction.
    example = KeyPermissions.model_validate(
        {**TRADE_ONLY_KEY, "ipRestrict": False, "enableInternalTransfer": True,
         "permitsUniversalTransfer": True, "enableSpotAndMarginTrading": False}
    )  # fmt: skip
    refusals, warnings = problems(example)
    assert [r.split(" ")[0] for r in refusals] == [
        "enableInternalTransfer",
        "permitsUniversalTransfer",
        "enableSpotAndMarginTrading",
    ]
    assert len(warnings) == 1 and "ipRestrict false" in warnings[0]
    withdraws = KeyPermissions.model_validate({**TRADE_ONLY_KEY, "enableWithdrawals": True})
    assert problems(withdraws)[0][0].startswith("enableWithdrawals is on")


def agent_profile(
    symbols: list[str], decide_every: int, limits: RiskLimits | None = None
) -> TradingProfile:
    """What `agent-trade` (the offline model, default sizing) records for these settings."""
    return trading_profile(
        symbols, "agent", OfflineModel(), decide_every, limits or RiskLimits(), BacktestConfig()
    )


def _paper_minutes(store: Store, account: str, first_open_ms: int, minutes: int) -> None:
    rows = [
        {"account": account, "time_ms": first_open_ms + i * MINUTE_MS + MINUTE_MS - 1,
         "equity": 10_000.0, "cash": 10_000.0}
        for i in range(minutes)
    ]  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(insert(EquityPointRow), rows)


@pytest.mark.slow
def test_paper_record_counts_only_bars_under_the_same_profile(store: Store, tmp_path: Path) -> None:
    symbols = ["BTCUSDT", "ETHUSDT"]
    live = agent_profile(symbols, 15)
    said: list[str] = []

    def check(days: float = 7) -> None:
        require_paper_record(store, tmp_path, live, days, START_MS + 30 * DAY_MINUTES * MINUTE_MS, said.append)  # fmt: skip

    with pytest.raises(UserError, match="no paper account has traded it"):
        check()
    record_paper_profile(store, "p", agent_profile(symbols, 5), "binance", None, 0)
    _paper_minutes(store, "p", START_MS, 8 * DAY_MINUTES)
    with pytest.raises(UserError, match="'p' differs in strategy"):
        check()
    # Switching account p to the live profile restarts its count after its last bar.
    last_open = START_MS + (8 * DAY_MINUTES - 1) * MINUTE_MS
    record_paper_profile(store, "p", live, "binance", last_open, 1)
    _paper_minutes(store, "p", last_open + MINUTE_MS, 3 * DAY_MINUTES)
    with pytest.raises(UserError, match=r"'p' has 3\.0 of them; .* for 4\.0 more"):
        check()
    _paper_minutes(store, "p", last_open + (3 * DAY_MINUTES + 1) * MINUTE_MS, 4 * DAY_MINUTES)
    check()
    assert said[-1].startswith("paper record: account 'p' traded this on paper for 7.0 days")

    halt_account(store, tmp_path, "p", "operator", START_MS, "ops")
    with pytest.raises(UserError, match=r"'p' has a halt left unresolved \(.*operator"):
        check()
    resume = Intervention(
        scope=risk_scope("p"), action="resume", who="ops", reason="ok", at_ms=START_MS
    )
    intervene(store, resume)
    kill_switch_path(tmp_path, "p").unlink()
    check()
    tighter = agent_profile(symbols, 15, RiskLimits(max_daily_loss_pct=0.05))
    assert tighter.differences(live) == ["risk limits"]
    # The fee reserve is the fill model's (paper) or the exchange's (live), not a chosen limit.
    assert agent_profile(symbols, 15, RiskLimits(fee_rate=0.0012)).differences(live) == []
    smaller = trading_profile(symbols, "agent", OfflineModel(), 15, RiskLimits(), BacktestConfig(size_pct=0.25))  # fmt: skip
    assert smaller.differences(live) == ["strategy"]
    classic = trading_profile(symbols, "sma_cross fast=20 slow=60", None, 15, RiskLimits(), BacktestConfig())  # fmt: skip
    assert classic.differences(live) == ["strategy"] and "sma_cross" in classic.strategy
    require_paper_record(store, tmp_path, live, 0, START_MS, said.append)
    assert "waived" in said[-1]


# A paper record of sma_cross on BTCUSDT with the default limits, as bd34421 stored it: its
# limits still held risk.manual, the setting since retired because it limited nothing.
EARLIER_PROFILE = (
    '{"strategy":"sma_cross fast=20 slow=60; size 1 of equity, stop None, target None",'
    '"symbols":["BTCUSDT"],'
    '"limits_sha256":"6bf4512a1a1df98ef344108b50cecaf9c80bb24a3c444bf4e946c36c8a5d0f57"}'
)
EARLIER_FINGERPRINT = "39671898a2809ad7303e7fb911115e639e577c9ae443eb5586744f5dcae4b3d5"


@pytest.mark.slow
def test_a_paper_record_kept_before_risk_manual_was_retired_still_counts(
    store: Store, tmp_path: Path
) -> None:
    """Retiring a setting changed every profile's limits hash: each account's paper days were
    erased, and live refused a trader who had paper-traded the week it asks."""
    with store.engine.begin() as conn:
        conn.execute(
            insert(AccountProfileRow),
            [
                {"account": "p", "fingerprint": EARLIER_FINGERPRINT, "feed": "binance",
                 "since_ms": START_MS, "updated_ms": START_MS, "profile_json": EARLIER_PROFILE}
            ],
        )  # fmt: skip
    _paper_minutes(store, "p", START_MS, 7 * DAY_MINUTES)
    classic = trading_profile(
        ["BTCUSDT"], "sma_cross fast=20 slow=60", None, 15, RiskLimits(), BacktestConfig()
    )
    said: list[str] = []
    require_paper_record(store, tmp_path, classic, 7, START_MS + 8 * DAY_MINUTES * MINUTE_MS, said.append)  # fmt: skip
    assert said[-1].startswith("paper record: account 'p' traded this on paper for 7.0 days")
    record_paper_profile(store, "p", classic, "binance", START_MS + 7 * DAY_MINUTES * MINUTE_MS, 1)
    require_paper_record(store, tmp_path, classic, 7, START_MS + 8 * DAY_MINUTES * MINUTE_MS, said.append)  # fmt: skip
    assert said[-1].startswith("paper record: account 'p' traded this on paper for 7.0 days")
    # A trailing stop is part of what is traded: a record without one is not its record.
    trailing = trading_profile(
        ["BTCUSDT"], "sma_cross fast=20 slow=60", None, 15, RiskLimits(),
        BacktestConfig(trailing_stop_pct=0.01),
    )  # fmt: skip
    assert trailing.differences(classic) == ["strategy"]


@pytest.mark.slow
def test_the_replayed_sample_is_not_a_paper_record(store: Store, tmp_path: Path) -> None:
    live = agent_profile(["BTCUSDT"], 15)
    record_paper_profile(store, "r", live, "replay", None, 0)
    _paper_minutes(store, "r", START_MS, 8 * DAY_MINUTES)
    with pytest.raises(UserError, match="no paper account has traded it"):
        require_paper_record(store, tmp_path, live, 7, START_MS, print)
