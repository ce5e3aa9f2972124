"""`agent-data` as a user runs it: a real subprocess, a fresh data dir, no network, no key."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

SAMPLE_GZ = Path(__file__).parents[1] / "market" / "data" / "ETHUSDT-1m-2025-10-29_3d.csv.gz"


def _one_clean_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_list_on_a_fresh_machine_shows_the_bundled_sample(cli) -> None:
    result = cli("agent-data", "list")
    assert result.returncode == 0, result.stderr
    assert "bundled Binance sample" in result.stderr
    rows = [line for line in result.stdout.splitlines() if "USDT" in line]
    assert len(rows) == 2
    for symbol, row in zip(("BTCUSDT", "ETHUSDT"), rows, strict=True):
        assert re.search(
            rf"binance\s*│\s*{symbol}\s*│\s*1m\s*│\s*2025-10-29 04:22\s*│\s*2025-11-01 04:21\s*│\s*4,320\s*│\s*0",
            row,
        ), row
    again = cli("agent-data", "list")
    assert "bundled" not in again.stderr, "the sample is loaded once, not on every run"


@pytest.mark.slow
def test_import_is_idempotent_and_verify_reports_planted_gaps(cli, tmp_path: Path) -> None:
    lines = gzip.decompress(SAMPLE_GZ.read_bytes()).decode().splitlines()
    gapped = [lines[0], *lines[1:101], *lines[104:301]]
    csv = tmp_path / "eth.csv"
    csv.write_text("\n".join(gapped) + "\n")
    first = cli("agent-data", "import", str(csv), "--symbol", "ethusdt", "--interval", "1m")
    assert first.returncode == 0, first.stderr
    assert "297 new in the store" in first.stdout
    assert "1 gaps (3 missing bars)" in first.stderr
    second = cli("agent-data", "import", str(csv), "--symbol", "ETHUSDT", "--interval", "1m")
    assert "0 new in the store" in second.stdout
    verify = cli("agent-data", "verify", "--symbol", "ETHUSDT")
    assert verify.returncode == 1
    assert "1 gaps (3 missing bars), first at 2025-10-29 06:02" in verify.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("download", "--symbol", "BTC-USDT", "--days", "1"), "invalid symbol 'BTC-USDT'"),
        (
            ("download", "--symbol", "BTCUSDT", "--start", "2025-10-30", "--end", "2025-10-29"),
            "--end 2025-10-29 is not after --start 2025-10-30",
        ),
        (
            ("download", "--symbol", "BTCUSDT", "--start", "2025-13-01", "--end", "2025-10-29"),
            "invalid --start '2025-13-01'",
        ),
        # --end beside --days was never read: a typo, or a date, went unseen to the network
        (
            ("download", "--symbol", "BTCUSDT", "--days", "1", "--end", "notadate"),
            "invalid --end 'notadate'",
        ),
        (
            ("download", "--symbol", "BTCUSDT", "--days", "1", "--end", "2025-10-29"),
            "--end 2025-10-29 needs --start",
        ),
        (
            ("download", "--symbol", "BTCUSDT", "--interval", "7m", "--days", "1"),
            "invalid interval '7m'",
        ),
        (
            ("import", "missing.csv", "--symbol", "BTCUSDT", "--interval", "1m"),
            "missing.csv: no such file",
        ),
        (("list", "--bogus"), "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, args: tuple[str, ...], expected: str) -> None:
    result = cli("agent-data", *args)
    assert result.returncode == 2
    assert expected in _one_clean_line(result.stderr)


def test_wrong_csv_columns_exit_2_naming_expected_columns(cli, tmp_path: Path) -> None:
    csv = tmp_path / "prices.csv"
    csv.write_text("date,price\n2025-10-29,1\n")
    result = cli("agent-data", "import", str(csv), "--symbol", "BTCUSDT", "--interval", "1m")
    assert result.returncode == 2
    line = _one_clean_line(result.stderr)
    assert "missing columns" in line
    assert "timestamp,open,high,low,close,volume" in line


@pytest.mark.slow
def test_bad_config_exits_2_naming_the_field(cli) -> None:
    result = cli("agent-data", "list", env={"LOG_LEVEL": "chatty"})
    assert result.returncode == 2
    assert "config error: log_level" in _one_clean_line(result.stderr)


@pytest.mark.parametrize("url", ["mysql://me@127.0.0.1/db", "oracle://me@127.0.0.1/db"])
def test_a_database_the_store_does_not_run_on_is_named_in_one_line(cli, url: str) -> None:
    """SQLAlchemy knows these: opening one raised the missing driver's ModuleNotFoundError."""
    result = cli("agent-data", "status", env={"DATABASE_URL": url})
    assert result.returncode == 2
    line = _one_clean_line(result.stderr)
    assert "the store runs on SQLite or PostgreSQL" in line and "postgresql://" in line


@pytest.mark.parametrize(
    "url",
    [
        "postgres ql://probe:S3cretPW@127.0.0.1/db",
        "postgresql://probe:S3cretPW@127.0.0.1:notaport/db",
        "postgresql//probe:S3cretPW@127.0.0.1/db",
        "postgresql:/probe:S3cretPW@127.0.0.1/db",
        "probe:S3cretPW@127.0.0.1/db",
        "postgresql://probe:S3cret/PW@x@127.0.0.1:notaport/db",
    ],
)
def test_a_url_that_cannot_be_parsed_is_one_line_with_its_password_hidden(cli, url: str) -> None:
    """A port that is not a number was a traceback; a URL with a typo was echoed whole, and
    without its `://` its password still was, here and in agent-config show."""
    result = cli("agent-data", "list", env={"DATABASE_URL": url})
    assert result.returncode == 2
    line = _one_clean_line(result.stderr)
    assert "invalid DATABASE_URL" in line and ":***@127.0.0.1" in line
    shown = cli("agent-config", "show", env={"DATABASE_URL": url})
    assert shown.returncode == 0, shown.stderr
    assert ":***@127.0.0.1" in shown.stdout
    assert "S3cret" not in result.stderr + result.stdout + shown.stdout + shown.stderr


def test_download_without_network_fails_clearly(cli) -> None:
    result = cli("agent-data", "download", "--symbol", "BTCUSDT", "--days", "1")
    assert result.returncode == 1
    assert "127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("close", "said"), [("n/a", "is not a number"), ("inf", "is infinite")], ids=["text", "inf"]
)
def test_a_bad_row_imports_nothing_and_leaves_no_database(
    cli, offline_env, tmp_path, close: str, said: str
) -> None:
    """One bad row refuses the whole file, named by row and column: no database appears on a
    fresh machine, and an existing store gains no part of the file."""
    lines = gzip.decompress(SAMPLE_GZ.read_bytes()).decode().splitlines()
    fields = lines[151].split(",")
    fields[4] = close  # the close of data row 151
    csv = tmp_path / "eth.csv"
    csv.write_text("\n".join([*lines[:151], ",".join(fields), *lines[152:301]]) + "\n")
    args = ("import", str(csv), "--symbol", "ETHUSDT", "--interval", "1m")
    database = Path(offline_env["AGENT_DATA_DIR"]) / "agent.db"

    refused = cli("agent-data", *args)
    assert refused.returncode == 2
    line = _one_clean_line(refused.stderr)
    assert f"data row 151 (2025-10-29 06:52 UTC): column close {said}" in line
    assert "nothing imported" in line and not database.exists()

    good = tmp_path / "good.csv"
    good.write_text("\n".join(lines[:11]) + "\n")
    assert (
        cli("agent-data", "import", str(good), "--symbol", "ETHUSDT", "--interval", "1m").returncode
        == 0
    )
    assert cli("agent-data", *args).returncode == 2
    listed = cli("agent-data", "list").stdout
    assert re.search(r"ETHUSDT\s.*\b10\b", listed), listed


@pytest.mark.slow
def test_your_own_bars_inside_the_samples_dates_are_not_called_the_sample(cli, tmp_path) -> None:
    """Bars imported for times the bundled sample covers replace its rows in the store; a run
    on them used to say it was "using the bundled Binance sample", so the figures would be
    read as the sample's while they came from the user's own file."""
    from market.sample import load_sample

    own = load_sample("BTCUSDT").iloc[-300:].copy()
    for column in ("open", "high", "low", "close"):
        own[column] *= 2.0
    csv = tmp_path / "mine.csv"
    own.to_csv(csv, index=False)
    imported = cli("agent-data", "import", str(csv), "--symbol", "BTCUSDT", "--interval", "1m")
    assert imported.returncode == 0, imported.stderr
    run = cli(
        "agent-backtest", "--strategy", "sma_cross", "--fast", "2", "--slow", "5", "--days", "1"
    )
    assert run.returncode == 0, run.stderr
    assert "bundled Binance sample" not in run.stderr
    assert "notice: offline; using stored BTCUSDT 1m" in run.stderr
    plain = cli("agent-backtest", "--strategy", "sma_cross", "--symbol", "ETHUSDT", "--days", "1")
    assert "using the bundled Binance sample for ETHUSDT" in plain.stderr  # still said of it
