"""No flag of `agent-backtest` is silently ignored: each one either changes the run (shown in
the report) or exits 2 with one line saying why; short data and coarse intervals are said."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli.backtest import main


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("--strategy", "sma_cross", "--decide-every", "5"),
            "--decide-every: only for the LLM agent (--strategy agent), not sma_cross",
        ),
        (("--strategy", "sma_cross", "--stateful"), "--stateful: only for the LLM agent"),
        (("--strategy", "rsi_reversion", "--concurrency", "8"), "--concurrency: only for"),
        (("--strategy", "sma_cross", "--replay-only"), "--replay-only: only for the LLM agent"),
        (("--strategy", "sma_cross", "--budget-usd", "1"), "--budget-usd: only for the LLM"),
        (("--strategy", "sma_cross", "--yes"), "--yes: only for the LLM agent"),
        (("--strategy", "sma_cross", "--rank-by", "sharpe_ratio"), "--rank-by: only for --sweep"),
        (("--strategy", "sma_cross", "--top", "10"), "--top: only for --sweep"),
        (("--strategy", "sma_cross", "--workers", "2"), "--workers: only for --sweep"),
        (("--strategy", "sma_cross", "--executor", "ray"), "--executor: only for --sweep"),
        (
            ("--strategy", "sma_cross", "--sweep", "fast=5:10:5", "--html", "x.html"),
            "--html: not for --sweep",
        ),
        (
            ("--strategy", "sma_cross", "--sweep", "fast=5:10:5", "--check-lookahead"),
            "--check-lookahead: not for --sweep",
        ),
        (("--end", "2025-10-30"), "--end needs --start"),
        (("--size", "50"), "--size does not apply to the agent"),
        (("--stateful", "--check-lookahead"), "--check-lookahead needs a stateless run"),
    ],
)
def test_a_flag_that_cannot_apply_exits_2_with_one_line(
    capsys, args: tuple[str, ...], expected: str
) -> None:
    assert main(list(args)) == 2
    assert expected in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("window", "said"),
    [
        (
            ("--days", "1e-9"),
            "error: invalid --days 1e-09: shorter than 2 1m bars (0.00138889 days)",
        ),
        (
            ("--interval", "1w", "--days", "1"),
            "error: invalid --days 1: shorter than 2 1w bars (14 days)",
        ),
        (
            ("--start", "2025-10-30", "--end", "2025-10-30T00:01"),
            "error: --end 2025-10-30T00:01 is less than 2 1m bars after --start 2025-10-30",
        ),
    ],
)
def test_a_window_too_short_for_two_bars_is_named_as_such(cli, window, said) -> None:
    """Said of the window asked for, not as an end before a start the user never gave."""
    result = cli("agent-backtest", "--strategy", "sma_cross", *window)
    assert result.returncode == 2 and _one_line(result.stderr) == said


SWEEP = ("--strategy", "sma_cross", "--days", "1", "--sweep", "fast=10:20:10")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((*SWEEP, "--fast", "15"), "--fast fixes a parameter --sweep varies"),
        ((*SWEEP, "--sweep", "fast=30:40:10"), "--sweep names fast twice"),
        ((*SWEEP, "--top", "0"), "argument --top: '0' is below 1"),
        ((*SWEEP, "--top", "-1"), "argument --top: '-1' is below 1"),
        ((*SWEEP, "--workers", "0"), "argument --workers: '0' is below 1"),
        ((*SWEEP, "--workers", "-2"), "argument --workers: '-2' is below 1"),
    ],
    ids=["swept-and-fixed", "swept-twice", "top-0", "top-negative", "workers-0", "workers-neg"],
)
def test_a_sweep_flag_it_would_ignore_or_misread_exits_2(
    cli, offline_env, args: tuple[str, ...], expected: str
) -> None:
    """--fast was silently replaced by the swept values, the first of two --sweep of one
    parameter dropped, and --top or --workers below 1 taken."""
    result = cli("agent-backtest", *args)
    assert result.returncode == 2, result.stderr
    assert expected in _one_line(result.stderr)
    assert not (Path(offline_env["AGENT_DATA_DIR"]) / "agent.db").exists()


@pytest.mark.slow
def test_agent_takes_stop_loss_and_take_profit_and_checks_lookahead(cli, tmp_path: Path) -> None:
    out = tmp_path / "agent.json"
    args = ("--days", "1", "--stop-loss", "0.5", "--take-profit", "1", "--json", str(out))
    result = cli("agent-backtest", *args, "--check-lookahead", "--replay-only", "--stateful")
    assert result.returncode == 2  # --stateful and --check-lookahead cannot go together
    result = cli("agent-backtest", *args, "--check-lookahead", "--replay-only", "--budget-usd", "1")
    assert result.returncode == 0, result.stderr
    assert "look-ahead check passed: 12 decisions made again" in result.stderr
    for flag in ("--replay-only", "--budget-usd"):
        assert f"notice: {flag} has nothing to act on" in result.stderr
    report = json.loads(out.read_text())
    levels = report["agent"]["protective_levels"]
    assert levels.get("stop_loss from the flag", 0) > 0, levels
    assert sum(levels.values()) == 2 * report["orders"]["signals_by_action"]["buy"]
    assert report["config"]["backtest"]["stop_loss_pct"] == 0.005


def test_window_longer_than_the_data_warns_once_and_the_json_has_both(cli, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ("--strategy", "sma_cross", "--days", "10", "--json", str(out))
    result = cli("agent-backtest", *args)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: asked for the last 10 days; the data has 3 days, "
        "2025-10-29 04:22 → 2025-11-01 04:21 UTC"
    ]
    assert "notice: Binance unreachable" in result.stderr
    window = json.loads(out.read_text())["config"]["window"]
    assert (window["requested_days"], window["delivered_days"], window["short"]) == (10, 3, True)


@pytest.mark.slow
def test_interval_1h_resamples_the_stored_minutes(cli, tmp_path: Path) -> None:
    out = tmp_path / "h.json"
    args = ("--strategy", "sma_cross", "--fast", "5", "--slow", "20", "--interval", "1h")
    result = cli("agent-backtest", *args, "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "resampled from 1m (closed bars only)" in result.stderr
    config = json.loads(out.read_text())["config"]
    # 04:22 → 04:21 three days later: the partial first and last hours are dropped.
    assert (config["interval"], config["bars"]) == ("1h", 71)
    assert (config["first_bar"], config["last_bar"]) == (
        "2025-10-29T05:00:00Z",
        "2025-11-01T03:00:00Z",
    )
