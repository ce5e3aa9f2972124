"""Compiles the engine's hot modules (core.native.NATIVE) with mypyc at install: every signal
of a backtest, paper or live run goes through them, and compiled they run the same code about
1.5x faster. AGENT_PURE_PYTHON=1 skips the compile. Where it cannot run (no C compiler, no
Python headers) the install goes on with the same modules as Python source and says so: slower,
never different. The build records each compiled source's digest for core.native's check."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from core.native import MANIFEST, NATIVE, digest, source_of  # noqa: E402  (stdlib only)


def _warn(why: str) -> None:
    print(f"warning: the engine runs as Python source, about 1.5x slower: {why}", file=sys.stderr)


def native_modules() -> list:
    if os.environ.get("AGENT_PURE_PYTHON", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify

        sources = [str(source_of(m, HERE).relative_to(HERE)) for m in NATIVE]
        return mypycify(["--config-file", str(HERE / "pyproject.toml"), *sources], opt_level="3")
    except (Exception, SystemExit) as exc:  # mypy missing, or a type error: the source runs
        _warn(f"mypyc could not prepare the compile ({exc!r})")
        return []


class NativeOrSource(build_ext):
    """Builds the compiled modules all or none, then records what it compiled."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler or headers: leave no half-built engine behind
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            _warn(f"the C compile failed ({exc})")
            return
        if self.extensions:
            manifest = Path(self.get_ext_fullpath("core.native")).with_name(MANIFEST)
            digests = {m: digest(source_of(m, HERE)) for m in NATIVE}
            manifest.write_text(json.dumps(digests, indent=1) + "\n")


setup(ext_modules=native_modules(), cmdclass={"build_ext": NativeOrSource})
