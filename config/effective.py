"""The settings in force, key by key, with where each value came from: what `agent-config show`
prints, so a user can see that a limit they set is the one that applies."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel

from config.settings import PROFILE_DIR, Settings, load_settings, profile_file
from config.strict import dotenv_file, env_paths, read_toml
from core.logging import masked_url

Source = Literal["default", "profile", ".env", "env"]


class Entry(BaseModel):
    key: str
    value: Any
    source: Source


def _leaves(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple, Any]]:
    for key, value in data.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, path)
        else:
            yield path, value


def _covers(paths: set[tuple[str, ...]], path: tuple[str, ...]) -> bool:
    """A source set this key, itself or through a table holding it."""
    return any(path[: len(p)] == p for p in paths)


def _alias_names(environ: Mapping[str, str | None]) -> set[tuple[str, ...]]:
    """Top-level fields set through an unprefixed alias (`DATABASE_URL`, `OPENAI_API_KEY`)."""
    upper = {k.upper() for k in environ}
    found = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices) and any(
            str(choice).upper() in upper for choice in alias.choices
        ):
            found.add((name,))
    return found


def _redact(value: Any) -> Any:
    return masked_url(value) if isinstance(value, str) else value


def effective(profile: str | None = None) -> list[Entry]:
    """Every key of the loaded settings (secrets shown as ****) and its source; the highest
    source that set it wins, as in loading: env > .env > profile > default."""
    settings = load_settings(profile)
    env = set(env_paths(os.environ)) | _alias_names(os.environ)
    dotenv_vars = dotenv_file()
    dotenv = set(env_paths(dotenv_vars)) | _alias_names(dotenv_vars)
    chosen = profile_file(settings.profile)
    in_profile: set[tuple[str, ...]] = set()
    if chosen != PROFILE_DIR / "default.toml":
        in_profile = {path for path, _ in _leaves(read_toml(chosen))}
    entries = []
    for path, value in _leaves(settings.model_dump(mode="json")):
        source: Source = "default"
        if _covers(env, path):
            source = "env"
        elif _covers(dotenv, path):
            source = ".env"
        elif _covers(in_profile, path):
            source = "profile"
        entries.append(Entry(key=".".join(path), value=_redact(value), source=source))
    return entries
