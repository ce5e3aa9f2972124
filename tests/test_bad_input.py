"""Every bad input a user reported: one line naming the problem, exit 2, no traceback, and no
empty database left behind."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from market.sample import load_sample

SMA = ("--strategy", "sma_cross", "--days", "1")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "args", "env", "said"),
    [
        ("agent-backtest", ("--profile", "bad.toml", *SMA), {}, "is not valid TOML"),
        ("agent-backtest", SMA, {"DATABASE_URL": "postgres://nobody@x/db"}, "no database driver"),
        ("agent-backtest", ("--data-dir", "a-file", *SMA), {}, "is a file, not a folder"),
        ("agent-backtest", ("--data-dir", "a-file/sub", *SMA), {}, "cannot be created"),
        ("agent-backtest", ("--fee-bps", "-5", *SMA), {}, "invalid --fee-bps -5"),
        ("agent-trade", ("--metrics-port", "99999"), {}, "invalid --metrics-port 99999"),
        ("agent-trade", ("--fee-bps", "-5"), {}, "invalid --fee-bps -5"),
        # A float flag's nan or inf ran on: infinite cash, a trade loop that crashed at its end.
        ("agent-backtest", ("--cash", "inf", *SMA), {}, "--cash: 'inf' is not a finite number"),
        ("agent-trade", ("--cash", "inf"), {}, "--cash: 'inf' is not a finite number"),
        ("agent-arb", ("run", "--quantity", "nan"), {}, "--quantity: 'nan' is not a finite"),
        # An empty --symbol crashed a backtest (IndexError) and downloaded nothing with exit 0.
        ("agent-backtest", ("--symbol", " , ", *SMA), {}, "--symbol ' , ' names no symbol"),
        ("agent-data", ("download", "--symbol", "", "--days", "1"), {}, "names no symbol"),
        ("agent-trade", ("--symbol", "", "--max-bars", "1"), {}, "--symbol '' names no symbol"),
        (
            "agent-backtest",
            ("--profile", "inf.toml", *SMA),
            {},
            "backtest.cash: Input should be a finite number (got inf)",
        ),
        # Out of range slippage raised from outside the config's check: a traceback, exit 1.
        (
            "agent-backtest",
            ("--slippage-bps", "5000", *SMA),
            {},
            "invalid --slippage-bps 5000: must be at most 1,000",
        ),
        # A flag's bound was a config field's, in its units: "fees.maker ... <= 0.1".
        (
            "agent-backtest",
            ("--fee-bps", "10000", *SMA),
            {},
            "invalid --fee-bps 10000: must be at most 1,000",
        ),
        (
            "agent-backtest",
            ("--maker-bps", "2000", *SMA),
            {},
            "invalid --maker-bps 2000: must be at most 1,000",
        ),
        (
            "agent-backtest",
            ("--stop-loss", "150", *SMA),
            {},
            "invalid --stop-loss 150: must be below 100",
        ),
        (
            "agent-trade",
            ("--fee-bps", "5000"),
            {},
            "invalid --fee-bps 5000: must be at most 1,000",
        ),
        (
            "agent-backtest",
            ("--max-participation", "2", *SMA),
            {},
            "invalid --max-participation 2: must be at most 1",
        ),
        # The JSON was overwritten by the page; a missing folder was found after the run.
        (
            "agent-backtest",
            ("--json", "same.out", "--html", "./same.out", *SMA),
            {},
            "--json and --html name the same file same.out",
        ),
        (
            "agent-backtest",
            ("--json", "j.json", "--html", "no-dir/x.html", *SMA),
            {},
            "cannot write --html no-dir/x.html: no such folder no-dir",
        ),
    ],
    ids=[
        "toml",
        "database-url",
        "data-dir-file",
        "data-dir-uncreatable",
        "fee",
        "port",
        "fee2",
        "cash-inf",
        "trade-cash-inf",
        "arb-nan",
        "symbol-empty",
        "download-symbol-empty",
        "trade-symbol-empty",
        "profile-inf",
        "slippage",
        "fee-bound",
        "maker-bound",
        "stop-bound",
        "trade-fee-bound",
        "participation",
        "same-output",
        "output-folder",
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_database(
    cli, offline_env, tmp_path: Path, command: str, args: tuple, env: dict, said: str
) -> None:
    (tmp_path / "bad.toml").write_text("[llm\nmodel = 'x'\n")
    (tmp_path / "inf.toml").write_text("[backtest]\ncash = inf\n")  # TOML has inf and nan
    (tmp_path / "a-file").write_text("not a folder\n")
    result = cli(command, *args, env=env)

    assert result.returncode == 2, result.stderr
    assert said in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (Path(offline_env["AGENT_DATA_DIR"]) / "agent.db").exists()
    assert not {"same.out", "j.json"} & {p.name for p in tmp_path.iterdir()}, "a report was written"


@pytest.mark.parametrize("where", ["env", ".env", "flag"])
def test_an_empty_data_dir_is_refused_not_read_as_the_current_folder(
    cli, offline_env, tmp_path: Path, where: str
) -> None:
    """`AGENT_DATA_DIR=` was Path(""): the store was created wherever the command ran."""
    args: tuple[str, ...] = ("status",)
    if where == "env":
        offline_env["AGENT_DATA_DIR"] = ""
    elif where == ".env":
        del offline_env["AGENT_DATA_DIR"]  # the environment's own would win over .env
        (tmp_path / ".env").write_text("AGENT_DATA_DIR=\n")
    else:
        args = ("--data-dir", "", "status")
    result = cli("agent-data", *args)
    assert result.returncode == 2, result.stdout
    assert "empty" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not list(tmp_path.glob("agent.db*"))


@pytest.fixture
def csvs(tmp_path: Path) -> dict[str, Path]:
    """The bundled sample's first 600 bars, spoiled four ways a user's export can be."""
    frame = load_sample("BTCUSDT").iloc[:600]
    spoiled = {
        "shuffled": frame.sample(frac=1, random_state=1),
        "duplicated": pd.concat([frame, frame.iloc[100:300]]).sort_values(
            "open_time", kind="stable"
        ),
        "single": frame.iloc[:1],
        "nan": frame.assign(**{c: np.nan for c in ("open", "high", "low", "close", "volume")}),
    }
    paths = {}
    for name, bad in spoiled.items():
        paths[name] = tmp_path / f"{name}.csv"
        bad.to_csv(paths[name], index=False)
    return paths


def test_a_file_of_one_bar_says_it_holds_one_bar(cli, csvs: dict[str, Path]) -> None:
    """It said the symbols 'share fewer than 2 bar times', as if others were involved."""
    result = cli("agent-backtest", "--strategy", "sma_cross", "--data", str(csvs["single"]))
    assert result.returncode == 2
    assert "BTCUSDT has 1 bar to backtest; a backtest needs 2" in result.stderr, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["agent-backtest", "agent-data"])
def test_a_shuffled_csv_is_named_as_out_of_order_and_an_all_nan_one_is_refused(
    cli, csvs: dict[str, Path], command: str
) -> None:
    def run(name: str):
        path = str(csvs[name])
        if command == "agent-data":
            return cli("agent-data", "import", path, "--symbol", "BTCUSDT", "--interval", "1m")
        return cli("agent-backtest", "--strategy", "sma_cross", "--data", path)

    shuffled = run("shuffled")
    assert shuffled.returncode == 2 and "rows are not in time order" in shuffled.stderr
    assert "--interval" not in shuffled.stderr
    nan = run("nan")
    said = (
        "data row 1 (2025-10-29 04:22 UTC): column open is not a number; 600 bad row(s)"
        if command == "agent-data"
        else "none of its 600 rows is a valid bar"
    )
    assert nan.returncode == 2 and said in nan.stderr
    assert "Traceback" not in shuffled.stderr + nan.stderr


def test_duplicated_rows_are_counted_as_duplicates(cli, csvs: dict[str, Path]) -> None:
    result = cli("agent-backtest", "--strategy", "sma_cross", "--data", str(csvs["duplicated"]))
    assert result.returncode == 0, result.stderr
    assert "200 duplicate bars" in result.stderr and "non-increasing" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("agent-trade", "status"),
        ("agent-trade", "--strategy", "sma_cross", "--size", "0"),
        ("agent-data", "verify"),
        ("agent-backtest", "--strategy", "sma_cross", "--symbol", "GOOG", "--days", "1"),
    ],
    ids=["status-no-account", "trade-size-0", "verify-empty", "backtest-unknown-symbol"],
)
def test_a_command_refused_after_it_opened_a_new_store_leaves_no_database(
    cli, offline_env, args
) -> None:
    """Each of these opens the store before it can tell the input is wrong; refused (exit 2),
    the new, empty database it made is removed again, so a typo leaves nothing behind."""
    result = cli(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert list(Path(offline_env["AGENT_DATA_DIR"]).glob("agent.db*")) == []


def test_a_path_of_the_wrong_kind_is_named_for_what_it_is(cli, tmp_path) -> None:
    """A folder given as --data was "no such file", a folder or /dev/null as a profile "not
    found": the message now says what the path is instead."""
    folder = tmp_path / "bars"
    folder.mkdir()
    data = cli("agent-backtest", "--strategy", "sma_cross", "--data", str(folder))
    assert data.returncode == 2 and "is a directory, not a CSV file" in data.stderr
    for profile in (str(folder), "/dev/null"):
        checked = cli("agent-config", "validate", profile)
        assert checked.returncode == 2 and f"{profile} is not a .toml file" in checked.stderr
    assert cli("agent-config", "validate", "default").returncode == 0


def test_too_few_bars_for_the_agent_names_the_bars_not_a_flag_never_given(cli, tmp_path) -> None:
    sample = Path(__file__).parents[1] / "market" / "data" / "BTCUSDT-1m-2025-10-29_3d.csv.gz"
    rows = gzip.decompress(sample.read_bytes()).decode().splitlines()[:31]
    short = tmp_path / "b30.csv"
    short.write_text("\n".join(rows) + "\n")
    result = cli("agent-backtest", "--data", str(short))
    assert result.returncode == 2
    assert "the run's 30 bars are fewer than the warm-up of 50 bars" in result.stderr
    assert "--days is shorter" not in result.stderr


def test_cash_beyond_a_trillion_is_refused_where_its_figures_would_overflow(cli) -> None:
    """--cash 1e308 ran and reported an Equity Final of 1e308 with a 0 % return at 57 %
    exposure: every figure lost to float overflow or rounding."""
    for command in (("agent-backtest", "--days", "1"), ("agent-trade", "--max-bars", "1")):
        result = cli(*command, "--strategy", "sma_cross", "--cash", "1e308")
        assert result.returncode == 2 and "cash" in result.stderr, (command, result.stderr)
        assert "invalid --cash 1e+308: must be at most 1,000,000,000,000" in result.stderr


def test_a_new_store_another_process_has_open_is_kept_when_a_command_is_refused(tmp_path) -> None:
    """The refused command made the store, but another process has it open by then: removing
    it would leave that process writing to a file nobody sees again."""
    import subprocess
    import sys

    from agent.cli.common import run
    from core.errors import UserError
    from store import open_store

    database = tmp_path / "agent.db"
    holder = "import sqlite3, sys, time\n" + (
        "c = sqlite3.connect(sys.argv[1]); c.execute('SELECT 1 FROM schema_version').fetchall()\n"
        "print('open', flush=True); sys.stdin.readline()\n"
    )

    def refused(argv: list[str] | None) -> int:
        open_store(f"sqlite:///{database}")
        other = subprocess.Popen(
            [sys.executable, "-c", holder, str(database)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert other.stdout is not None and other.stdout.readline().strip() == "open"
        refused.other = other  # type: ignore[attr-defined]
        raise UserError("no such account")

    try:
        assert run(refused, []) == 2
        assert database.exists()
    finally:
        refused.other.communicate("\n", timeout=10)  # type: ignore[attr-defined]
