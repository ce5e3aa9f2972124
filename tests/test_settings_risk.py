"""Risk, trading and backtest settings that a user owns: a profile or the environment changes the
limits a run is judged by, a misspelt key or a bad value stops the command with one line, and
`agent-config` shows what is in force and where it came from."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from config.effective import effective
from config.settings import Settings, load_settings
from config.strict import _model_of, key_paths
from risk.limits import RiskLimits

CAPPED = 0.10


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def _equity_at(report: dict, when: str) -> float:
    equity = report["equity"]
    rows = dict(zip(equity["time"], equity["equity"], strict=True))
    return rows[int(datetime.fromisoformat(when).timestamp() * 1000)]


@pytest.mark.parametrize("how", ["profile", "env"])
def test_strategy_position_cap_bounds_every_trade_of_an_all_in_backtest(
    cli, tmp_path: Path, how: str
) -> None:
    args = ["--strategy", "sma_cross", "--symbol", "BTCUSDT", "--days", "1", "--size", "all"]
    env = {}
    if how == "profile":
        profile = tmp_path / "capped.toml"
        profile.write_text(f"[risk.strategy]\nmax_position_pct = {CAPPED}\n")
        args += ["--profile", str(profile)]
    else:
        env["AGENT_RISK__STRATEGY__MAX_POSITION_PCT"] = str(CAPPED)
    result = cli("agent-backtest", *args, "--json", str(tmp_path / "r.json"), env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["trades"]) >= 5
    for trade in report["trades"]:
        share = trade["size"] * trade["entry_price"] / _equity_at(report, trade["entry_time"])
        assert 0.09 < share <= CAPPED * 1.01, trade
    assert report["orders"]["adjusted"]["MAX_POSITION"] == len(report["trades"])


def test_without_a_cap_the_same_backtest_goes_all_in(cli, tmp_path: Path) -> None:
    args = ["--strategy", "sma_cross", "--symbol", "BTCUSDT", "--days", "1"]
    result = cli("agent-backtest", *args, "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    first = json.loads((tmp_path / "r.json").read_text())["trades"][0]
    assert first["size"] * first["entry_price"] > 9_000


@pytest.mark.slow
@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("profile", "unknown key risk.ai.max_positon_pct in "),
        (".env", "unknown key AGENT_RISK__AI__MAX_POSITON_PCT in .env"),
        ("env", "unknown key AGENT_RISK__AI__MAX_POSITON_PCT in the environment"),
    ],
)
def test_a_misspelt_key_exits_2_naming_it_and_the_nearest_valid_one(
    cli, tmp_path: Path, where: str, expected: str
) -> None:
    args: list[str] = []
    env = {}
    if where == "profile":
        (tmp_path / "p.toml").write_text("[risk.ai]\nmax_positon_pct = 0.05\n")
        args += ["--profile", str(tmp_path / "p.toml")]
    elif where == ".env":
        (tmp_path / ".env").write_text("AGENT_RISK__AI__MAX_POSITON_PCT=0.05\n")
    else:
        env["AGENT_RISK__AI__MAX_POSITON_PCT"] = "0.05"
    for command in ("agent-backtest", "agent-trade", "agent-config"):
        argv = ["show", *args] if command == "agent-config" else args
        result = cli(command, *argv, env=env)
        assert result.returncode == 2, (command, result.stderr)
        line = _one_line(result.stderr)
        assert expected in line
        assert "did you mean" in line and "MAX_POSITION_PCT".lower() in line.lower()


def test_an_unknown_table_names_the_nearest_one(cli, tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text("[riks]\nfee_rate = 0.002\n")
    result = cli("agent-config", "validate", str(tmp_path / "p.toml"))
    assert result.returncode == 2
    assert "unknown key riks.fee_rate" in result.stderr
    assert "did you mean risk.fee_rate?" in result.stderr


def test_the_retired_manual_limits_are_refused_saying_why(cli, tmp_path: Path) -> None:
    """risk.manual limited nothing (no path places a person's own order): a profile or a
    variable that still sets it stops the command instead of silently changing nothing."""
    (tmp_path / "p.toml").write_text("[risk.manual]\nmax_order_notional = 50\n")
    for command, argv, env in (
        ("agent-config", ["validate", str(tmp_path / "p.toml")], {}),
        ("agent-backtest", ["--profile", str(tmp_path / "p.toml")], {}),
        ("agent-trade", ["status"], {"AGENT_RISK__MANUAL__MAX_ORDER_NOTIONAL": "50"}),
    ):
        result = cli(command, *argv, env=env)
        assert result.returncode == 2, (command, result.stderr)
        line = _one_line(result.stderr)
        assert "MAX_ORDER_NOTIONAL".lower() in line.lower() and "is no longer a setting" in line
        assert "places a person's own order" in line and "did you mean" not in line


def test_limits_stored_with_the_retired_manual_source_still_load() -> None:
    """An account's state or a verdict recorded before risk.manual went keeps loading."""
    stored = {**RiskLimits().model_dump(), "manual": {"max_order_notional": 100_000.0}}
    assert RiskLimits.model_validate(stored) == RiskLimits()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("AGENT_RISK__AI__MAX_POSITION_PCT", "1.5", "risk.ai.max_position_pct: Input should be "),
        ("AGENT_TRADING__MODE", "yolo", "trading.mode: Input should be 'paper', 'testnet' or"),
        ("AGENT_BACKTEST__FEE_BPS", "-1", "backtest.fee_bps: Input should be greater than"),
    ],
)
def test_a_bad_value_names_the_field_and_what_it_allows(
    cli, variable: str, value: str, expected: str
) -> None:
    result = cli("agent-backtest", "--days", "1", env={variable: value})
    assert result.returncode == 2
    assert expected in _one_line(result.stderr)


def test_a_data_age_no_live_bar_can_meet_is_refused_saying_why(cli, tmp_path: Path) -> None:
    """A backtest's clock is the bar's close, so its data is never old; a live bar arrives after
    its close. Below the floor, a backtest would trade while paper and live vetoed every entry
    and decided nothing: the profile is refused, not left to diverge."""
    (tmp_path / "p.toml").write_text("[risk]\nmax_data_age_ms = 0\n")
    for command, argv, env in (
        ("agent-config", ["validate", str(tmp_path / "p.toml")], {}),
        ("agent-trade", ["status"], {"AGENT_RISK__MAX_DATA_AGE_MS": "4999"}),
    ):
        result = cli(command, *argv, env=env)
        assert result.returncode == 2, (command, result.stderr)
        line = _one_line(result.stderr)
        assert "risk.max_data_age_ms: " in line and "is below 5,000 ms" in line, line
        assert "veto every entry as STALE_DATA" in line and "Value error" not in line
    (tmp_path / "p.toml").write_text("[risk]\nmax_data_age_ms = 5000\n")
    assert cli("agent-config", "validate", str(tmp_path / "p.toml")).returncode == 0


def test_config_show_gives_each_value_its_source_and_hides_secrets(cli, tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text("[risk.ai]\nmax_position_pct = 0.05\n")
    (tmp_path / ".env").write_text("AGENT_BACKTEST__SLIPPAGE_BPS=3\n")
    env = {
        "AGENT_RISK__STRATEGY__MAX_EXPOSURE_PCT": "0.4",
        "OPENAI_API_KEY": "sk-planted-secret-123",
        "DATABASE_URL": "postgresql://me:hunter2@127.0.0.1/db",
    }
    result = cli("agent-config", "show", "--profile", str(tmp_path / "p.toml"), "--json", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["risk.ai.max_position_pct"] == {"value": 0.05, "source": "profile"}
    assert shown["risk.strategy.max_exposure_pct"] == {"value": 0.4, "source": "env"}
    assert shown["backtest.slippage_bps"] == {"value": 3.0, "source": ".env"}
    assert shown["risk.ai.max_exposure_pct"] == {"value": 0.5, "source": "default"}
    assert shown["risk.max_drawdown_pct"]["source"] == "default"
    assert "sk-planted-secret-123" not in result.stdout and "hunter2" not in result.stdout
    assert shown["openai_api_key"]["source"] == "env"
    table = cli("agent-config", "show", env=env)
    assert table.returncode == 0
    assert any(
        line.split()[0] == "risk.strategy.max_exposure_pct" and line.split()[-1] == "env"
        for line in table.stdout.splitlines()
    )


def test_config_validate(cli, tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[risk]\nmax_drawdown_pct = 0.1\n[trading]\nsymbols = ["SOLUSDT"]\n')
    ok = cli("agent-config", "validate", str(good))
    assert ok.returncode == 0 and "ok:" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[risk.strategy]\nmin_confidence = 2\n")
    result = cli("agent-config", "validate", str(bad))
    assert result.returncode == 2
    assert "risk.strategy.min_confidence: Input should be less than or equal to 1" in result.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[risk\n")
    assert "is not valid TOML" in _one_line(cli("agent-config", "validate", str(broken)).stderr)


def test_a_boolean_for_a_number_is_refused_and_a_whole_number_still_reads(
    cli, tmp_path: Path
) -> None:
    """TOML's `true` read as 1.0 made a 100% position limit out of a typo."""
    for key, table in (("max_position_pct", "risk.ai"), ("concurrency", "llm")):
        flag = tmp_path / "flag.toml"
        flag.write_text(f"[{table}]\n{key} = true\n")
        result = cli("agent-config", "validate", str(flag))
        assert result.returncode == 2, result.stdout
        line = _one_line(result.stderr)
        assert f"{table}.{key}: Input should be a number, not true or false" in line
    whole = tmp_path / "whole.toml"
    whole.write_text("[risk.ai]\nmax_position_pct = 1\n[backtest]\ncash = 5000\n")
    assert cli("agent-config", "validate", str(whole)).returncode == 0
    shown = cli("agent-config", "show", "--profile", str(whole), "--json")
    assert json.loads(shown.stdout)["risk.ai.max_position_pct"]["value"] == 1.0


def test_every_settings_model_refuses_a_boolean_for_a_number() -> None:
    """A settings model added later must not read `true` as 1 either."""
    from core.config_model import ConfigModel

    seen: set[type] = set()

    def walk(model: type) -> None:
        seen.add(model)
        for field in model.model_fields.values():
            inner, _ = _model_of(field.annotation)
            if inner is not None and inner not in seen:
                walk(inner)

    walk(Settings)
    loose = sorted(m.__name__ for m in seen - {Settings} if not issubclass(m, ConfigModel))
    assert loose == []


@pytest.mark.parametrize(
    ("command", "args", "env", "named"),
    [
        ("agent-config", ("validate", "b.toml"), {}, "b.toml"),
        ("agent-config", ("show", "--profile", "b.toml"), {}, "b.toml"),
        ("agent-config", ("show",), {"AGENT_PROFILE": "b.toml"}, "b.toml"),
        ("agent-config", ("show",), {}, ".env"),
        ("agent-backtest", ("--strategy", "sma_cross", "--days", "1"), {}, ".env"),
    ],
    ids=["validate", "show-profile", "env-profile", "show-dotenv", "backtest-dotenv"],
)
def test_a_file_that_is_not_utf8_is_named_in_one_line(
    cli, tmp_path: Path, command: str, args: tuple, env: dict, named: str
) -> None:
    """Such a profile or .env ended in a UnicodeDecodeError traceback."""
    (tmp_path / named).write_bytes(b"\xff\xfe bad=1\n")
    result = cli(command, *args, env=env)
    assert result.returncode == 2, result.stdout
    assert f"{named} is not UTF-8 text" in _one_line(result.stderr)


@pytest.mark.parametrize(
    ("command", "variable", "value", "where"),
    [
        ("agent-config", "AGENT_RISK", "garbage", "the environment"),
        ("agent-config", "AGENT_RISK__AI", "{max_position_pct:0.9}", "the environment"),
        ("agent-config", "AGENT_PORTFOLIO__ACCOUNTS", "a,b", "the environment"),
        ("agent-config", "AGENT_RISK__AI", "{max_position_pct:0.9}", ".env"),
        ("agent-backtest", "AGENT_RISK", "garbage", "the environment"),
        ("agent-backtest", "AGENT_RISK__AI", "{max_position_pct:0.9}", ".env"),
    ],
)
def test_a_table_variable_that_is_not_json_is_named_in_one_line(
    cli, tmp_path: Path, command: str, variable: str, value: str, where: str
) -> None:
    """pydantic-settings' SettingsError named only the top-level field, in a traceback."""
    env = {}
    if where == ".env":
        (tmp_path / ".env").write_text(f"{variable}='{value}'\n")
    else:
        env[variable] = value
    args = ("show",) if command == "agent-config" else ("--strategy", "sma_cross", "--days", "1")
    result = cli(command, *args, env=env)
    assert result.returncode == 2, result.stdout
    assert f"{variable} in {where} is not valid JSON" in _one_line(result.stderr)


def test_a_table_variable_in_json_still_sets_its_keys(cli) -> None:
    env = {"AGENT_RISK__AI": '{"max_position_pct": 0.09}', "AGENT_PORTFOLIO__ACCOUNTS": '["a"]'}
    result = cli("agent-config", "show", "--json", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["risk.ai.max_position_pct"] == {"value": 0.09, "source": "env"}
    assert shown["portfolio.accounts"]["value"] == ["a"]


@pytest.mark.slow
def test_trading_settings_pick_the_account_and_its_cash(cli, tmp_path: Path) -> None:
    env = {"AGENT_TRADING__ACCOUNT": "from-settings", "AGENT_TRADING__CASH": "2500"}
    args = ["--strategy", "sma_cross", "--symbol", "BTCUSDT", "--feed", "replay"]
    result = cli("agent-trade", *args, "--speed", "max", "--max-bars", "5", env=env)
    assert result.returncode == 0, result.stderr
    status = cli("agent-trade", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["account"] == "from-settings"
    assert shown["initial_cash"] == 2500


def _risk_keys() -> list[tuple[str, ...]]:
    return [path for path in key_paths(Settings) if path[0] == "risk"]


def test_docs_risk_md_documents_every_risk_key() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "risk.md").read_text()
    missing = [".".join(p) for p in _risk_keys() if f"`{p[-1]}`" not in docs]
    assert not missing


@pytest.mark.parametrize("path", _risk_keys(), ids=".".join)
def test_every_risk_limit_is_set_from_a_profile_and_from_the_environment(
    path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    default = _get(load_settings().model_dump(), path)
    value = _another(default, path[-1])
    table, key = ".".join(path[:-1]), path[-1]
    (tmp_path / "p.toml").write_text(f"[{table}]\n{key} = {json.dumps(value)}\n")
    assert _get(load_settings(str(tmp_path / "p.toml")).model_dump(), path) == value
    shown = {e.key: e for e in effective(str(tmp_path / "p.toml"))}[".".join(path)]
    assert (shown.value, shown.source) == (value, "profile")
    monkeypatch.setenv("AGENT_" + "__".join(path).upper(), json.dumps(value))
    assert _get(load_settings().model_dump(), path) == value
    assert {e.key: e for e in effective()}[".".join(path)].source == "env"


def _get(data: dict, path: tuple[str, ...]) -> object:
    for part in path:
        data = data[part]
    return data


def _another(default: object, key: str) -> object:
    """A valid value other than the default, for the field's type."""
    if isinstance(default, bool):
        return not default
    if isinstance(default, int) or key.endswith(("_ms", "_minutes", "_losses", "_positions")):
        return (default or 1) + 1
    if key.endswith("_pct") or key in ("min_confidence", "min_agreement", "fee_rate"):
        return 0.05 if default != 0.05 else 0.07
    return (default or 1.0) * 2
