"""The compiled engine runs only while it matches its source: after a change without a rebuild,
or when the user asks, the hot modules load from source, all of them, and a warning says why.
Each case is a fresh interpreter over a copy of core.native beside the hot modules' sources and
stand-in extension files that cannot load: whatever imports from source never touches them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from core import native

PROJECT = Path(__file__).resolve().parent.parent
PROBE = """
import json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from core.engine_build import BUILD
loaded = {}
if not BUILD.startswith("compiled"):
    import importlib
    for name in NATIVE:
        loaded[name] = importlib.import_module(name).WHO
print(json.dumps({"build": BUILD, "loaded": loaded, "warnings": [str(w.message) for w in caught]}))
"""


def _tree(root: Path, *, compiled: bool = True, manifest: bool = True) -> None:
    """core.native as shipped, each hot module a one-line source, and an extension file per
    module that is not a real extension (importing it would fail)."""
    (root / "core").mkdir()
    for name in ("__init__.py", "native.py", "engine_build.py"):
        shutil.copy(PROJECT / "core" / name, root / "core" / name)
    for module in native.NATIVE:
        source = native.source_of(module, root)
        source.parent.mkdir(exist_ok=True)
        (source.parent / "__init__.py").touch()
        source.write_text(f"WHO = 'source of {module}'\n")
        if compiled:
            source.with_name(source.stem + EXTENSION_SUFFIXES[0]).write_bytes(b"not an ELF")
    if manifest:
        digests = {m: native.digest(native.source_of(m, root)) for m in native.NATIVE}
        (root / "core" / native.MANIFEST).write_text(json.dumps(digests))


def _probe(root: Path, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k != "AGENT_PURE_PYTHON"}
    done = subprocess.run(
        [sys.executable, "-c", f"NATIVE = {native.NATIVE!r}\n{PROBE}"],
        cwd=root,
        env={**clean, "PYTHONPATH": str(root), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def _all_from_source(seen: dict) -> None:
    assert seen["loaded"] == {m: f"source of {m}" for m in native.NATIVE}


def test_a_build_that_matches_its_source_runs_compiled(tmp_path: Path) -> None:
    _tree(tmp_path)
    seen = _probe(tmp_path)
    assert seen["build"] == f"compiled by mypyc ({len(native.NATIVE)} modules)"
    assert seen["warnings"] == []


def test_a_source_changed_since_the_compile_loads_every_hot_module_from_source(
    tmp_path: Path,
) -> None:
    _tree(tmp_path)
    gate = native.source_of("risk.gate", tmp_path)
    gate.write_text(gate.read_text() + "EDITED = True\n")
    seen = _probe(tmp_path)
    assert seen["build"] == "Python source (risk.gate changed since the compile)"
    _all_from_source(seen)
    (warning,) = seen["warnings"]
    assert "older than its source (risk.gate)" in warning
    assert "pip install -e ." in warning


def test_a_module_the_build_left_out_sends_every_module_to_source(tmp_path: Path) -> None:
    _tree(tmp_path)
    ledger = native.source_of("execution.ledger", tmp_path)
    ledger.with_name(ledger.stem + EXTENSION_SUFFIXES[0]).unlink()
    seen = _probe(tmp_path)
    assert "execution.ledger" in seen["build"]
    _all_from_source(seen)


def test_compiled_files_without_a_record_of_the_build_are_not_trusted(tmp_path: Path) -> None:
    _tree(tmp_path, manifest=False)
    seen = _probe(tmp_path)
    assert seen["build"].startswith("Python source (")
    _all_from_source(seen)


@pytest.mark.parametrize("value", ["1", "yes"])
def test_agent_pure_python_runs_the_source_without_a_warning(tmp_path: Path, value: str) -> None:
    _tree(tmp_path)
    seen = _probe(tmp_path, AGENT_PURE_PYTHON=value)
    assert seen["build"] == "Python source (AGENT_PURE_PYTHON is set)"
    assert seen["warnings"] == []
    _all_from_source(seen)


def test_an_install_that_compiled_nothing_says_so(tmp_path: Path) -> None:
    _tree(tmp_path, compiled=False, manifest=False)
    seen = _probe(tmp_path)
    assert seen["build"] == "Python source (not compiled at install)"
    _all_from_source(seen)


BRACKETS = ["--strategy", "sma_cross", "--fast", "5", "--slow", "20", "--size", "50"]
BRACKETS += ["--stop-loss", "0.3", "--take-profit", "0.5", "--trailing-stop", "0.4"]


# the agent (offline model) enters and exits at market; a classic strategy with brackets fills
# stops, targets and a trailing stop inside bars
@pytest.mark.slow  # four real commands end to end
@pytest.mark.parametrize("args", [[], BRACKETS], ids=["agent", "brackets"])
def test_the_compiled_engine_and_its_source_write_the_same_report(
    cli, tmp_path: Path, args: list[str]
) -> None:
    from core.engine_build import BUILD

    if not BUILD.startswith("compiled"):
        pytest.skip(f"the install did not compile the engine: {BUILD} (.ci/run requires it)")
    reports = []
    for build, env in (("compiled", {}), ("source", {"AGENT_PURE_PYTHON": "1"})):
        report = tmp_path / f"{build}.json"
        done = cli(
            "agent-backtest",
            "--symbol",
            "BTCUSDT",
            "--days",
            "1",
            *args,
            "--json",
            str(report),
            env=env,
        )
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(report.read_text()))
    compiled, source = reports
    assert compiled["trades"], "the run should trade, or it compares nothing"
    assert compiled == source
