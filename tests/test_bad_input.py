"""Every bad input a user reported: one line naming the problem, exit 2, no traceback, and no
empty database left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

SMA = ("--strategy", "sma_cross", "--days", "1")


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
    ],
    ids=["toml", "database-url", "data-dir-file", "data-dir-uncreatable", "fee", "port", "fee2"],
)
def test_bad_input_is_one_line_exit_2_and_no_database(
    cli, offline_env, tmp_path: Path, command: str, args: tuple, env: dict, said: str
) -> None:
    (tmp_path / "bad.toml").write_text("[llm\nmodel = 'x'\n")
    (tmp_path / "a-file").write_text("not a folder\n")
    result = cli(command, *args, env=env)

    assert result.returncode == 2, result.stderr
    assert said in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (Path(offline_env["AGENT_DATA_DIR"]) / "agent.db").exists()
