"""Settings: field defaults < config/default.toml < profile TOML < .env < environment < code."""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    ConfigDict,
    Field,
    Secret,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from config.equity import EquitySettings
from config.portfolio import PortfolioSettings
from config.strict import check_sources
from config.venues import AlpacaSettings, BybitSettings
from core.amounts import MAX_CASH
from core.config_model import ConfigModel
from core.errors import ConfigError
from risk.limits import RiskLimits

PROFILE_DIR = Path(__file__).parent
HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def default_data_dir() -> Path:
    """XDG data home, so an installed tool never writes into the current directory."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "agent-trader"


class BinanceSettings(ConfigModel):
    """Binance spot REST access; the base URL points at testnet or a loopback server too."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    base_url: str = Field("https://api.binance.com", pattern=r"^https?://\S+$")
    trade_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="signed trading REST; default testnet.binance.vision, or the live API "
        "with --mode live",
    )
    stream_url: str = Field(
        "wss://stream.binance.com:9443",
        pattern=r"^wss?://\S+$",
        description="market-data WebSocket for --feed binance (a proxy, or a loopback server)",
    )
    stream_silence_s: float = Field(
        30.0,
        gt=0,
        le=600,
        description="--feed binance: a stream quiet this long is reopened and the bars it "
        "missed fetched over REST (Binance pushes every kline stream every 2 s)",
    )
    timeout_s: float = Field(10.0, gt=0, le=120)
    max_retries: int = Field(4, ge=0, le=20)
    max_retry_after_s: float = Field(60.0, gt=0)
    weight_limit_per_minute: int = Field(6000, gt=0)
    weight_budget_fraction: float = Field(0.8, gt=0, le=1)


class ModelPrice(ConfigModel):
    """USD per million tokens at llm.prices_host; used for budgets, estimates and reports."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


DecisionFormat = Literal["tools", "required", "json_schema"]


class LLMSettings(ConfigModel):
    """Any OpenAI-compatible endpoint (OpenAI, Azure, OpenRouter, Ollama, vLLM, LM Studio)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    provider: Literal["auto", "openai", "offline"] = Field(
        "auto",
        description="auto: the offline model unless OPENAI_API_KEY or OPENAI_BASE_URL is set",
    )
    model: str = "gpt-4o-mini"
    temperature: float = Field(0.0, ge=0, le=2)
    timeout_s: float = Field(30.0, gt=0, le=600)
    max_retries: int = Field(4, ge=0, le=20)
    max_retry_after_s: float = Field(30.0, gt=0)
    mode: Literal["live", "cache", "replay"] = "cache"
    max_calls: int | None = Field(None, gt=0)
    max_tokens: int | None = Field(None, gt=0)
    max_usd: float | None = Field(None, gt=0)
    concurrency: int = Field(8, ge=1, le=256)
    breaker_failures: int = Field(
        5,
        ge=1,
        description="failed decisions in a row (timeouts, 5xx, empty replies) that stop an "
        "agent backtest with a partial report; after as many failed requests in a row, calls "
        "are no longer retried until one succeeds",
    )
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    prices_host: str = Field(
        "api.openai.com",
        description="the endpoint host whose list prices llm.prices holds: a model is priced "
        "only there (a local server is free, another provider bills by its own list)",
    )
    max_output_tokens: int | None = Field(
        None,
        gt=0,
        description="cap on each reply (sent as max_tokens): a small local model can ramble "
        "to the end of its context; unset leaves the server's default",
    )
    decision_format: DecisionFormat | Literal["probe"] = Field(
        "tools",
        description="how an unattended decision asks for its signal: tools (tool_choice auto), "
        "required (tool_choice=required), json_schema (response_format constrained to "
        "submit_signal), or probe: ask the endpoint once which it supports (cached in the data "
        "dir) and use the strongest",
    )

    @field_validator("prices_host")
    @classmethod
    def _bare_host(cls, value: str) -> str:
        """A host as a URL names it (compared lowercased): no scheme, port or path."""
        host = value.strip().lower()
        if not HOSTNAME.fullmatch(host):
            raise ValueError("a bare host name or IPv4 address, e.g. api.openai.com or 127.0.0.1")
        return host


class LiveSettings(ConfigModel):
    """What live trading demands before it starts."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    require_paper_days: float = Field(
        7.0,
        ge=0,
        description="days the same strategy, symbols and risk limits must have traded on paper "
        "(on the live feed, no halt left unresolved) before live; 0 waives it, said at every start",
    )


class AlertSettings(ConfigModel):
    """Where `agent-ui` sends each fill, halt, safe mode, stop, loop error, large veto and daily
    summary: Telegram (a bot token and a chat id), a JSON webhook, both or neither."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    webhook_url: Secret[Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]] | None = (
        None  # a Slack or Discord webhook URL is itself the credential
    )
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_url: str = Field("https://api.telegram.org", pattern=r"^https?://\S+$")
    timeout_s: float = Field(10.0, gt=0, le=120)
    max_attempts: int = Field(4, ge=1, le=20)
    poll_s: float = Field(10.0, gt=0, le=3600, description="how often agent-ui looks for news")
    large_veto_usdt: float | None = Field(
        1_000.0, gt=0, description="alert on a veto of a signal asking for more USDT; None: off"
    )
    daily_summary: bool = Field(True, description="each account's UTC day, once it has ended")

    @model_validator(mode="after")
    def _telegram_needs_both(self) -> AlertSettings:
        if (self.telegram_bot_token is None) != (self.telegram_chat_id is None):
            raise ValueError("telegram_bot_token and telegram_chat_id go together: set both")
        return self


class UISettings(ConfigModel):
    """`agent-ui`'s page: each refresh re-reads the store and re-sends the Trading tab."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    refresh_s: float = Field(
        5.0,
        ge=0.5,
        le=3600,
        description="seconds between the Trading tab's refreshes and alert checks; "
        "longer eases a slow link",
    )


class TradingSettings(ConfigModel):
    """What `agent-trade` runs when no flag says otherwise."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    account: str = Field("paper", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    mode: Literal["paper", "testnet", "live"] = "paper"
    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["BTCUSDT", "ETHUSDT"], min_length=1
    )
    decide_every: int = Field(15, ge=1, le=1_440, description="the agent: minutes between")
    cash: float = Field(10_000.0, gt=0, le=MAX_CASH, description="a new account's USDT")
    paper_fee_bps: float = Field(10.0, ge=0, lt=10_000, description="paper maker and taker fee")
    paper_slippage_bps: float = Field(2.0, ge=0, lt=10_000, description="paper taker slippage")

    @field_validator("symbols", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """`AGENT_TRADING__SYMBOLS=BTCUSDT,ETHUSDT` reads as the TOML list does."""
        if isinstance(value, str):
            return [s.strip().upper() for s in value.split(",") if s.strip()]
        return value


class BacktestSettings(ConfigModel):
    """`agent-backtest`'s account and fill defaults; its flags override them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    cash: float = Field(10_000.0, gt=0, le=MAX_CASH, description="starting USDT")
    fee_bps: float = Field(10.0, ge=0, lt=10_000, description="maker and taker fee (10 = 0.1%)")
    maker_bps: float | None = Field(None, ge=0, lt=10_000, description="maker fee if different")
    slippage_bps: float = Field(0.0, ge=0, lt=10_000, description="taker slippage")


HORIZON = re.compile(r"^([1-9][0-9]*)([mhd])$")
HORIZON_MIN = {"m": 1, "h": 60, "d": 1_440}


class ScorecardSettings(ConfigModel):
    """How the scorecard judges the model, in agent-backtest, the UI and agent-trade."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    ledger_horizons: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["15m", "1h", "4h"],
        min_length=1,
        description="how long after the next open each vetoed signal is marked (m, h or d)",
    )

    @field_validator("ledger_horizons", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

    @field_validator("ledger_horizons")
    @classmethod
    def _known_units(cls, value: list[str]) -> list[str]:
        for text in value:
            if HORIZON.match(text) is None:
                raise ValueError(
                    f"{text!r} is not a horizon: a whole number of minutes, hours or days, "
                    "e.g. 15m, 1h, 4h, 1d"
                )
        minutes = [horizon_minutes(text) for text in value]
        if len(set(minutes)) != len(minutes):
            raise ValueError(f"{value} names the same horizon twice")
        return value

    @property
    def ledger_minutes(self) -> list[int]:
        return [horizon_minutes(text) for text in self.ledger_horizons]


def horizon_minutes(text: str) -> int:
    found = HORIZON.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not a horizon")
    return int(found.group(1)) * HORIZON_MIN[found.group(2)]


class Settings(BaseSettings):
    """Everything configurable; bad values fail at start-up naming the field."""

    model_config = SettingsConfigDict(
        env_prefix="AGENT_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",  # as config.strict checked it
        extra="ignore",
        validate_default=True,
        loc_by_alias=False,
    )

    profile: str = "default"
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("AGENT_DATABASE_URL", "DATABASE_URL", "database_url")
    )
    # TimescaleDB for a PostgreSQL store (store/backend.py).
    timescaledb: Literal["auto", "require", "off"] = Field(
        "auto",
        description="auto: use TimescaleDB where the PostgreSQL server offers it; require: "
        "refuse to start without it; off: plain tables",
    )
    log_level: LogLevel = Field(
        "INFO", validation_alias=AliasChoices("AGENT_LOG_LEVEL", "LOG_LEVEL", "log_level")
    )
    log_json: bool = False
    offline: bool = False
    binance: BinanceSettings = Field(default_factory=BinanceSettings)
    bybit: BybitSettings = Field(default_factory=BybitSettings)
    alpaca: AlpacaSettings = Field(default_factory=AlpacaSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    ui: UISettings = Field(default_factory=UISettings)
    risk: RiskLimits = Field(default_factory=RiskLimits)
    trading: TradingSettings = Field(default_factory=TradingSettings)
    backtest: BacktestSettings = Field(default_factory=BacktestSettings)
    scorecard: ScorecardSettings = Field(default_factory=ScorecardSettings)
    equity: EquitySettings = Field(default_factory=EquitySettings)
    portfolio: PortfolioSettings = Field(default_factory=PortfolioSettings)
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key")
    )
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_BASE_URL", "openai_base_url")
    )
    openai_org_id: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_ORG_ID", "openai_org_id")
    )
    openai_project_id: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_PROJECT_ID", "openai_project_id")
    )
    binance_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("BINANCE_API_KEY", "binance_api_key")
    )
    binance_api_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("BINANCE_API_SECRET", "binance_api_secret")
    )
    bybit_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("BYBIT_API_KEY", "bybit_api_key")
    )
    bybit_api_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("BYBIT_API_SECRET", "bybit_api_secret")
    )
    apca_api_key_id: SecretStr | None = Field(
        None, validation_alias=AliasChoices("APCA_API_KEY_ID", "apca_api_key_id")
    )
    apca_api_secret_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("APCA_API_SECRET_KEY", "apca_api_secret_key")
    )

    @field_validator("data_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        """`AGENT_DATA_DIR=` read as Path("") is the current directory: the store would land
        wherever the command runs."""
        if isinstance(value, str) and not value.strip():
            raise ValueError("empty: name a folder, or unset it for the default")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        profile_files = [PROFILE_DIR / "default.toml", profile_file(_active_profile.get())]
        toml = TomlConfigSettingsSource(settings_cls, toml_file=profile_files, deep_merge=True)
        return init_settings, env_settings, dotenv_settings, toml

    @property
    def resolved_database_url(self) -> str:
        """`DATABASE_URL` when set, else SQLite inside the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'agent.db'}"

    def secret_values(self) -> list[str]:
        """Every configured secret, so the log redactor can scrub them verbatim."""
        secrets = [
            self.openai_api_key,
            self.binance_api_key,
            self.binance_api_secret,
            self.bybit_api_key,
            self.bybit_api_secret,
            self.apca_api_key_id,
            self.apca_api_secret_key,
            self.alerts.telegram_bot_token,
            self.alerts.webhook_url,
        ]
        values = [s.get_secret_value() for s in secrets if s and s.get_secret_value()]
        try:
            url_password = urlsplit(self.openai_base_url or "").password  # a proxy's login
        except ValueError:  # no URL at all: the model refuses it, masked_url hides its login
            return values
        return [*values, url_password] if url_password else values


_active_profile: ContextVar[str] = ContextVar("active_profile", default="default")


def profile_file(profile: str) -> Path:
    """A bare name is a bundled profile; a path ending in .toml is the user's own file."""
    path = Path(profile) if profile.endswith(".toml") else PROFILE_DIR / f"{profile}.toml"
    if not path.is_file() and not profile.endswith(".toml") and Path(profile).exists():
        raise ConfigError(
            f"config error: {profile} is not a .toml file: a profile is a bundled name or a "
            "path ending in .toml"
        )
    if not path.is_file():
        bundled = sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))
        raise ConfigError(
            f"config error: profile {profile!r} not found; use one of {bundled} or a .toml path"
        )
    return path


def load_settings(profile: str | None = None, **overrides: object) -> Settings:
    """Load and validate settings; turns a validation error into one line naming the field."""
    chosen = profile or os.environ.get("AGENT_PROFILE") or "default"
    check_sources(Settings, [PROFILE_DIR / "default.toml", profile_file(chosen)], os.environ)
    token = _active_profile.set(chosen)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config error: profile {chosen!r} is not valid TOML: {exc}") from None
    finally:
        _active_profile.reset(token)
    settings.profile = chosen
    return settings


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    env_name = "AGENT_" + "__".join(str(part) for part in first["loc"]).upper()
    value = first.get("input")
    shown = "" if isinstance(value, dict) or _holds_secret(first["loc"]) else f" (got {value!r})"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return (
        f"config error: {field}: {first['msg'].removeprefix('Value error, ')}{shown}; "
        f"set it via {env_name}, .env or the TOML profile{more}"
    )


def _holds_secret(loc: tuple[int | str, ...]) -> bool:
    """Whether the field at `loc` is a secret, whose value an error must not repeat."""
    annotation: object = Settings
    for part in loc:
        field = getattr(annotation, "model_fields", {}).get(part)
        if field is None:
            return False
        annotation = field.annotation
    return "Secret" in str(annotation)
