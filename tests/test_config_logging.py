"""Configuration sources and precedence, one-line config errors, and secret redaction in logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from config import load_settings
from core.errors import ConfigError
from core.logging import setup_logging

PLANTED_KEY = "sk-proj-PLANTEDabcdefghijklmnop0123456789"
PLANTED_BINANCE_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


def test_invalid_value_names_field_and_allowed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert message.startswith("config error: log_level:")
    assert "'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'" in message
    assert "\n" not in message


def test_nested_env_value_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_BINANCE__TIMEOUT_S", "-1")
    with pytest.raises(ConfigError, match=r"binance\.timeout_s: Input should be greater than 0"):
        load_settings()


def test_ui_refresh_is_a_setting_with_a_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow link sets a longer refresh; a value that would hammer the store is refused."""
    monkeypatch.setenv("AGENT_UI__REFRESH_S", "30")
    assert load_settings().ui.refresh_s == 30.0
    monkeypatch.setenv("AGENT_UI__REFRESH_S", "0.1")
    with pytest.raises(ConfigError, match=r"ui\.refresh_s: Input should be greater than or equal"):
        load_settings()


def test_precedence_env_over_dotenv_over_profile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings("production").binance.timeout_s == 5.0
    (tmp_path / ".env").write_text("AGENT_BINANCE__TIMEOUT_S=7\n")
    assert load_settings("production").binance.timeout_s == 7.0
    monkeypatch.setenv("AGENT_BINANCE__TIMEOUT_S", "9")
    assert load_settings("production").binance.timeout_s == 9.0


def test_profile_from_env_and_user_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENT_PROFILE", "production")
    assert load_settings().log_json is True
    mine = tmp_path / "mine.toml"
    mine.write_text('[binance]\nbase_url = "https://testnet.binance.vision"\n')
    settings = load_settings(str(mine))
    assert settings.binance.base_url == "https://testnet.binance.vision"
    assert settings.binance.timeout_s == 10.0


def test_unknown_profile_lists_the_choices() -> None:
    with pytest.raises(
        ConfigError, match=r"profile 'staging' not found; use one of \['default', 'production'\]"
    ):
        load_settings("staging")


def test_database_url_defaults_to_sqlite_in_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("AGENT_DATA_DIR", str(tmp_path))
    assert load_settings().resolved_database_url == f"sqlite:///{tmp_path / 'agent.db'}"
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@127.0.0.1/db")
    assert load_settings().resolved_database_url == "postgresql://u:p@127.0.0.1/db"


@pytest.mark.parametrize("json_lines", [False, True])
def test_secrets_never_reach_the_log(
    json_lines: bool, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BINANCE_API_SECRET", PLANTED_BINANCE_SECRET)
    settings = load_settings()
    setup_logging("DEBUG", json_lines=json_lines, secrets=settings.secret_values())
    log = logging.getLogger("test.secrets")
    log.info("config loaded: %s", settings.binance_api_secret.get_secret_value())
    log.info(
        "POST /api/v3/order?symbol=BTCUSDT&timestamp=1&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    )
    log.warning("OpenAI call failed with headers {'Authorization': 'Bearer %s'}", PLANTED_KEY)
    try:
        raise RuntimeError(f"bad key {PLANTED_KEY}")
    except RuntimeError:
        log.exception("request failed")
    err = capfd.readouterr().err
    assert PLANTED_BINANCE_SECRET not in err
    assert PLANTED_KEY not in err
    assert "c8db5682" not in err
    assert err.count("***") >= 4
    if json_lines:
        records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert [r["level"] for r in records] == ["INFO", "INFO", "WARNING", "ERROR"]
    logging.getLogger().handlers.clear()
