"""Typed settings from environment, `.env` and TOML profiles (`default.toml`, `production.toml`)."""

from config.settings import BinanceSettings, Settings, load_settings

__all__ = ["BinanceSettings", "Settings", "load_settings"]
