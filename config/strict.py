"""Unknown keys fail loudly: pydantic-settings drops what it does not know (a TOML table, an
`AGENT_*` variable), so a misspelt risk limit would change nothing. This checks every source
against the settings model first and names the nearest valid key."""

from __future__ import annotations

import itertools
import json
import tomllib
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from dotenv import dotenv_values
from pydantic import BaseModel
from pydantic_settings import NoDecode

from core.errors import ConfigError

ENV_PREFIX = "AGENT_"
WILDCARD = "*"
# AGENT_* variables that are read by a command, not by the settings model (AGENT_PURE_PYTHON
# by the install and core.native: the engine's build, read before any settings load)
NOT_SETTINGS = frozenset(
    {"AGENT_PROFILE", "AGENT_UI_AUTH", "AGENT_SERVER_TOKEN", "AGENT_PURE_PYTHON"}
)
# Keys that were settings once: a source still setting one is told why it went, not pointed at
# a near spelling that would mean something else.
RETIRED = {
    ("risk", "manual"): "no command, page or route places a person's own order (the chat's "
    "orders are the model's proposals a person approves, judged by risk.ai), so it limited nothing",
}


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The settings model a field holds, and whether it holds it under free keys (a dict)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found[0] is not None:
                return found
        return None, False
    if origin is dict:
        inner, _ = _model_of(get_args(annotation)[1])
        return inner, True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def key_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every leaf key of the model as a path; a dict of models contributes `*` for its keys."""
    for name, field in model.model_fields.items():
        inner, free = _model_of(field.annotation)
        path = (*prefix, name)
        if inner is None:
            yield path
        else:
            yield from key_paths(inner, (*path, WILDCARD) if free else path)


def _tables(paths: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """Every leaf path and every table on the way to one (`[risk.ai]`)."""
    return {path[:depth] for path in paths for depth in range(1, len(path) + 1)}


def _known(path: tuple[str, ...], tables: set[tuple[str, ...]]) -> bool:
    """A full leaf path, or a table on the way to one; a `*` in `tables` stands for any key
    (a set lookup per spelling, not a scan of every path for each key of each source)."""
    return any(spelled in tables for spelled in itertools.product(*((p, WILDCARD) for p in path)))


def _nearest(path: tuple[str, ...], paths: set[tuple[str, ...]]) -> tuple[str, ...] | None:
    import difflib  # only a mistake is spelled out

    spelled = {".".join(p[: len(path)]): p[: len(path)] for p in paths if len(p) >= len(path)}
    spelled |= {".".join(p): p for p in paths}
    match = difflib.get_close_matches(".".join(path), list(spelled), n=1, cutoff=0.6)
    return spelled[match[0]] if match else None


def _walk(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping):
            yield from _walk(value, path)
        else:
            yield path


def _env_name(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + "__".join(path).upper()


def _unknown(
    found: tuple[str, ...], paths: set[tuple[str, ...]], where: str, as_env: bool
) -> ConfigError:
    shown = _env_name if as_env else ".".join
    for retired, why in RETIRED.items():
        if found[: len(retired)] == retired:
            return ConfigError(
                f"config error: {shown(found)} in {where} is no longer a setting: {why}; remove it"
            )
    near = _nearest(found, paths)
    hint = f"did you mean {shown(near)}?" if near else "`agent-config show` lists every key"
    return ConfigError(f"config error: unknown key {shown(found)} in {where}; {hint}")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))  # TOML is UTF-8 by its spec
    except UnicodeDecodeError:
        raise ConfigError(_not_utf8(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config error: {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config error: cannot read {path}: {exc.strerror}") from None


def check_toml(model: type[BaseModel], path: Path) -> dict[str, Any]:
    """The file's table, or a ConfigError naming its first unknown key."""
    data = read_toml(path)
    paths = set(key_paths(model))
    tables = _tables(paths)
    for found in _walk(data):
        if not _known(found, tables):
            raise _unknown(found, paths, str(path), as_env=False)
    return data


def env_paths(environ: Mapping[str, str | None]) -> dict[tuple[str, ...], str | None]:
    """`AGENT_RISK__AI__MAX_POSITION_PCT` → ("risk", "ai", "max_position_pct")."""
    return {
        tuple(name[len(ENV_PREFIX) :].lower().split("__")): value
        for name, value in environ.items()
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in NOT_SETTINGS
    }


def dotenv_file() -> dict[str, str | None]:
    """The `.env` the settings read (the current directory's), as variables."""
    path = Path(".env")
    if not path.is_file():
        return {}
    try:
        return dict(dotenv_values(path, encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(_not_utf8(path.absolute())) from None


def _not_utf8(path: Path) -> str:
    return f"config error: {path} is not UTF-8 text; save it as UTF-8"


def check_sources(model: type[BaseModel], profiles: list[Path], environ: Mapping[str, str]) -> None:
    """Refuse an unknown key in a profile, `.env` or the environment, before anything loads."""
    for path in profiles:
        check_toml(model, path)
    paths = set(key_paths(model))
    tables = _tables(paths)
    decoded = set(json_paths(model))
    for where, variables in (("the environment", environ), (".env", dotenv_file())):
        for found in env_paths(variables):
            if not _known(found, tables):
                raise _unknown(found, paths, where, as_env=True)
        _check_json(variables, decoded, paths, where)


def json_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The keys whose variable pydantic-settings parses as JSON: a table (`AGENT_RISK__AI`), a
    list or a dict; a list marked NoDecode is read comma-separated instead."""
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        inner, free = _model_of(field.annotation)
        if inner is not None:
            yield path
            if free:
                yield (*path, WILDCARD)
            yield from json_paths(inner, (*path, WILDCARD) if free else path)
        elif NoDecode not in field.metadata and _is_collection(field.annotation):
            yield path


def _is_collection(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_collection(arg) for arg in get_args(annotation))
    return get_origin(annotation) in (list, dict, set, tuple, frozenset)


def _check_json(
    variables: Mapping[str, str | None],
    decoded: set[tuple[str, ...]],
    leaves: set[tuple[str, ...]],
    where: str,
) -> None:
    """A table or list set by one variable must be JSON: pydantic-settings' own error named
    only the top-level field, in a traceback."""
    for name, value in variables.items():
        if value is None or not name.upper().startswith(ENV_PREFIX):
            continue
        path = tuple(name[len(ENV_PREFIX) :].lower().split("__"))
        if not _known(path, decoded):
            continue
        try:
            json.loads(value)
        except ValueError as exc:
            hint = (
                f'a JSON object, e.g. {{"key": 1}}, or set each key as {name}__KEY'
                if not _known(path, leaves)
                else 'a JSON list, e.g. ["a", "b"]'
            )
            raise ConfigError(
                f"config error: {name} in {where} is not valid JSON ({exc}); write {hint}"
            ) from None
