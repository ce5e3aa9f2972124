"""`agent-data` and `agent-backtest` on TimescaleDB, as a user runs them: the import creates a
hypertable, status names the backend, and a resampled backtest equals the one on SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from conftest import database_url, schema_url
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

SAMPLE = Path(str(resources.files("market") / "data" / "BTCUSDT-1m-2025-10-29_3d.csv.gz"))


@pytest.fixture
def timescale_env() -> Iterator[dict[str, str]]:
    for url in schema_url(database_url("timescaledb")):
        yield {"DATABASE_URL": url}


@pytest.mark.slow
def test_import_creates_a_hypertable_and_status_says_so(cli, timescale_env):
    imported = cli(
        "agent-data", "import", str(SAMPLE), "--symbol", "BTCUSDT", "--interval", "1m",
        env=timescale_env,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    engine = create_engine(timescale_env["DATABASE_URL"])
    with engine.connect() as conn:
        listed = conn.execute(
            text(
                "SELECT hypertable_name FROM timescaledb_information.hypertables "
                "WHERE hypertable_schema = current_schema() AND hypertable_name = 'candles'"
            )
        ).all()
    engine.dispose()
    assert listed == [("candles",)]
    status = cli("agent-data", "status", env=timescale_env)
    assert status.returncode == 0, status.stderr
    lines = dict(line.split(": ", 1) for line in status.stdout.splitlines())
    assert " + timescaledb 2." in lines["backend"] and lines["backend"].startswith("postgresql 1")
    assert lines["hypertables"] == "candles, equity_points"
    assert lines["candles"] == "4,320 rows"
    password = make_url(timescale_env["DATABASE_URL"]).password
    assert ":***@" in lines["database"] and f":{password}@" not in lines["database"]


@pytest.mark.slow
def test_sqlite_store_status_and_a_refused_require(cli):
    status = cli("agent-data", "status")
    assert status.returncode == 0, status.stderr
    assert "backend: sqlite" in status.stdout
    assert "hypertables: none" in status.stdout
    refused = cli("agent-data", "status", env={"AGENT_TIMESCALEDB": "require"})
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: timescaledb = require, but the store is sqlite: set DATABASE_URL to a "
        "PostgreSQL database with TimescaleDB"
    ]
    bad = cli("agent-data", "status", env={"AGENT_TIMESCALEDB": "always"})
    assert bad.returncode == 2
    assert "timescaledb" in bad.stderr and "'auto', 'require' or 'off'" in bad.stderr


@pytest.mark.slow
def test_a_resampled_backtest_on_timescaledb_equals_the_one_on_sqlite(cli, timescale_env, tmp_path):
    """`--interval 1h` from stored 1m bars: SQL on TimescaleDB, pandas on SQLite; same report."""
    args = ["--strategy", "sma_cross", "--interval", "1h", "--fast", "5", "--slow", "20"]
    args += ["--symbol", "BTCUSDT", "--start", "2025-10-29", "--end", "2025-11-01"]
    reports = {}
    for name, env in (("sqlite", {}), ("timescaledb", timescale_env)):
        out = tmp_path / f"{name}.json"
        run = cli("agent-backtest", *args, "--json", str(out), env=env)
        assert run.returncode == 0, run.stderr
        assert "resampled from 1m" in run.stderr
        reports[name] = json.loads(out.read_text())
    for report in reports.values():
        report.pop("generated_at", None)
    assert reports["timescaledb"]["metrics"] == reports["sqlite"]["metrics"]
    assert reports["timescaledb"]["trades"] == reports["sqlite"]["trades"]
