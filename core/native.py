"""Which build of the engine's hot modules runs: compiled by mypyc at install, or their source.

Every signal of a backtest, paper or live run goes through these modules, and compiled they run
the same code about 2x faster. A compiled module sits beside its source and Python loads it
first, so after a source change without a rebuild (a pull, an edit) it would run old code. The
build records each source's digest; when any source no longer matches, every hot module loads
from its source instead (compiled modules call each other directly, so it is all or none) and a
warning says how to rebuild. AGENT_PURE_PYTHON=1 skips the compile at install and the compiled
modules at run time. Standard library only: setup.py imports it before anything is installed."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import warnings
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from pathlib import Path

NATIVE = (
    "backtest.engine",
    "execution.ledger",
    "execution.orders",
    "execution.rules",
    "execution.simulator",
    "risk.approval",
    "risk.gate",
    "risk.sizing",
    "risk.state",
    "risk.trusted",
    "risk.views",
    "runtime.context",
    "runtime.market",
    "runtime.portfolio",
    "runtime.ports",
    "runtime.runner",
)
"""The hot path of every signal, from the runner through the gate to the simulated fill."""

MANIFEST = "native_build.json"
ROOT = Path(__file__).resolve().parent.parent
_PURE = "AGENT_PURE_PYTHON"
_build: str | None = None


def source_of(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compiled_files(module: str, root: Path = ROOT) -> list[Path]:
    """The extension files a build left for `module` (none in a pure install)."""
    stem = source_of(module, root).with_suffix("")
    return [p for p in (stem.with_name(stem.name + s) for s in EXTENSION_SUFFIXES) if p.exists()]


def stale_sources(manifest: dict[str, str], root: Path = ROOT) -> list[str]:
    """The hot modules whose source differs from what the build compiled (or that it did not)."""
    return [m for m in NATIVE if manifest.get(m) != digest(source_of(m, root))]


class _SourceFirst:
    """Finds the hot modules' source files ahead of the compiled extensions beside them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name not in NATIVE:
            return None
        return importlib.util.spec_from_file_location(name, source_of(name, self.root))


def choose(root: Path = ROOT) -> str:
    """Decide once per process, before any hot module loads (each hot package calls this
    first), and say which build runs."""
    global _build
    if _build is not None:
        return _build
    unbuilt = [m for m in NATIVE if not compiled_files(m, root)]
    if len(unbuilt) == len(NATIVE):
        _build = "Python source (not compiled at install)"
        return _build
    if os.environ.get(_PURE, "") not in ("", "0"):
        _build = f"Python source ({_PURE} is set)"
    else:
        manifest_file = root / "core" / MANIFEST
        manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
        stale = unbuilt + [m for m in stale_sources(manifest, root) if m not in unbuilt]
        if not stale:
            _build = f"compiled by mypyc ({len(NATIVE)} modules)"
            return _build
        _build = f"Python source ({', '.join(stale)} changed since the compile)"
        warnings.warn(
            f"the compiled engine is older than its source ({', '.join(stale)}): running the "
            "source instead, about 2x slower; rebuild with `pip install -e .`",
            RuntimeWarning,
            stacklevel=2,
        )
    sys.meta_path.insert(0, _SourceFirst(root))
    return _build
