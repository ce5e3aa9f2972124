"""`agent-backtest` as a user runs it: a real subprocess, a fresh data dir, no network, no key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from agent.cli.backtest import main
from backtest.metrics import METRIC_ORDER, trade_metrics, unavailable
from backtest.runs import load_runs
from store import open_store

TRADE_KEYS = {
    "symbol",
    "side",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "size",
    "pnl",
    "fees",
    "exit_reason",
}


def _one_clean_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.slow
def test_json_report_on_the_bundled_sample(cli, tmp_path: Path) -> None:
    out, html = tmp_path / "report.json", tmp_path / "report.html"
    args = (
        "--strategy",
        "sma_cross",
        "--symbol",
        "BTCUSDT",
        "--days",
        "3",
        "--fast",
        "20",
        "--slow",
        "60",
    )
    result = cli("agent-backtest", *args, "--json", str(out), "--html", str(html))
    assert result.returncode == 0, result.stderr
    assert "bundled Binance sample" in result.stderr
    assert "Sharpe Ratio" in result.stdout and "annualised on hourly returns" in result.stdout

    report = json.loads(out.read_text())
    assert set(report) >= {"metrics", "trades", "equity", "config"}
    assert list(report["metrics"]) == list(METRIC_ORDER)
    closed = [t for t in report["trades"] if t["exit_reason"] != "end_of_data"]
    assert report["metrics"]["# Trades"] == len(closed) > 0
    assert report["orders"]["open_at_end"]["trades"] == len(report["trades"]) - len(closed)
    assert all(set(trade) >= TRADE_KEYS for trade in report["trades"])
    assert len(report["equity"]["equity"]) == report["config"]["bars"] == 4_320
    assert report["config"]["periods_per_year"] == 365
    assert report["config"]["params"] == {"fast": 20, "slow": 60}
    assert report["orders"]["signals"] == report["orders"]["approved"]

    page = html.read_text()
    assert "Plotly" in page and '<script src="http' not in page  # plotly.js is inlined

    again = tmp_path / "again.json"
    checked = cli("agent-backtest", *args, "--json", str(again), "--check-lookahead")
    assert checked.returncode == 0, checked.stderr
    assert "look-ahead check passed" in checked.stderr
    assert again.read_bytes() == out.read_bytes(), "same inputs, byte-identical report"

    store = open_store(f"sqlite:///{tmp_path / 'data' / 'agent.db'}")
    runs = load_runs(store)
    store.close()
    assert [r.strategy for r in runs] == ["sma_cross", "sma_cross"]
    assert json.loads(runs[0].metrics_json)["# Trades"] == report["metrics"]["# Trades"]


@pytest.mark.slow
def test_sweep_ranks_a_grid_in_parallel(cli, tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    result = cli(
        "agent-backtest",
        "--strategy",
        "sma_cross",
        "--sweep",
        "fast=10:30:10",
        "--sweep",
        "slow=30:50:20",
        "--rank-by",
        "return",
        "--workers",
        "2",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "skipped 1 combinations" in result.stderr  # fast=30, slow=30
    sweep = json.loads(out.read_text())
    returns = [row["metrics"]["Return [%]"] for row in sweep["results"]]
    assert len(returns) == 5 and returns == sorted(returns, reverse=True)
    assert sweep["rank_by"] == "Return [%]"
    deflated = sweep["deflated_sharpe"]  # the top of 5 trials, deflated for the search
    assert deflated["trials"] == 5 and 0 <= deflated["probability"] <= 1
    assert "deflated Sharpe ratio of #1 over 5 trials" in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--strategy", "golden_goose"), "unknown strategy 'golden_goose'"),
        (
            ("--strategy", "sma_cross", "--fast", "60", "--slow", "20"),
            "fast (60) must be less than slow (20)",
        ),
        (("--fast", "20"), "--fast does not apply to the agent"),
        (
            ("--strategy", "sma_cross", "--sweep", "fast=5:20:5", "--rank-by", "luck"),
            "unknown metric 'luck' for --rank-by",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, args: tuple[str, ...], expected: str) -> None:
    result = cli("agent-backtest", *args)
    assert result.returncode == 2
    assert expected in _one_clean_line(result.stderr)


def test_comparing_the_offline_model_with_an_llm_needs_an_llm(cli) -> None:
    result = cli("agent-backtest", "--days", "1", "--compare", "model=gpt-4o")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --compare model=gpt-4o needs an LLM (OPENAI_API_KEY or OPENAI_BASE_URL); "
        "the offline model has no other model to compare with"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("--strategy", "sma_cross", "--fast", "20", "--slow", "20"),
            "fast (20) must be less than slow (20)",
        ),
        (("--strategy", "sma_cross", "--sweep", "speed=1:2:1"), "invalid --sweep 'speed=1:2:1'"),
        (("--strategy", "sma_cross", "--sweep", "fast=9:3:1"), "invalid --sweep fast=9:3:1"),
        (("--decide-every", "0"), "invalid --decide-every"),
        (("--strategy", "rsi_reversion", "--fast", "5"), "--fast does not apply to rsi_reversion"),
        (("--strategy", "rsi_reversion", "--oversold", "80"), "oversold (80) must be less than"),
        (("--strategy", "sma_cross", "--size", "150"), "invalid --size '150'"),
        (("--symbol", "BTC-USDT"), "invalid symbol 'BTC-USDT'"),
        (("--interval", "7m"), "invalid interval '7m'"),
        (("--bogus",), "unrecognized arguments: --bogus"),
        (("--compare", "colour=blue"), "invalid --compare 'colour=blue'"),
        (("--strategy", "sma_cross", "--compare", "model=x"), "--compare: only for the LLM agent"),
    ],
)
def test_more_bad_input_in_process(capsys, args: tuple[str, ...], expected: str) -> None:
    """The same one-line contract, checked in-process (no interpreter start-up per case)."""
    try:
        code = main(list(args))
    except SystemExit as usage_error:  # argparse's own errors
        code = usage_error.code
    assert code == 2
    assert expected in _one_clean_line(capsys.readouterr().err)


def test_a_store_file_that_is_not_a_database_is_named_in_one_line(cli, tmp_path: Path) -> None:
    """A path pointed at the wrong file (a CSV, a half-copied backup) gets the path and
    SQLite's own reason, exit 2, and the file is left as it was."""
    not_a_db = tmp_path / "prices.db"
    not_a_db.write_bytes(b"open_time,open,high,low,close\n" * 200)
    before = not_a_db.read_bytes()
    result = cli(
        "agent-backtest",
        "--strategy",
        "sma_cross",
        "--days",
        "1",
        env={"AGENT_DATABASE_URL": f"sqlite:///{not_a_db}"},
    )
    assert result.returncode == 2, result.stderr
    line = _one_clean_line(result.stderr)
    assert str(not_a_db) in line and "file is not a database" in line
    assert not_a_db.read_bytes() == before


def test_a_window_shorter_than_the_warm_up_says_so(cli, tmp_path: Path) -> None:
    """30 one-minute bars for a 60-bar slow average, at the start of the data (no bars before
    them to warm up on): nothing can trade, and Buy & Hold from where it could first trade
    does not exist (it read 0 before)."""
    out = tmp_path / "r.json"
    window = ("--start", "2025-10-29T04:22", "--end", "2025-10-29T04:52")
    result = cli("agent-backtest", "--strategy", "sma_cross", *window, "--json", str(out))
    assert result.returncode == 0, result.stderr
    need = "sma_cross needs 61 bars to trade (a 59-bar warm-up, a bar to signal on and one to fill on); the window has 30"
    assert f"notice: {need}: it cannot trade" in result.stderr
    report = json.loads(out.read_text())
    assert report["metrics"]["Buy & Hold Return [%]"] is None
    assert report["annualisation"]["not_available"]["Buy & Hold Return [%]"] == need
    assert re.search(r"Buy & Hold Return \[%\] +│ +n/a │", result.stdout), result.stdout


def test_a_resampled_interval_warms_up_on_the_minutes_before_its_window(
    cli, tmp_path: Path
) -> None:
    """5m bars made from the stored 1m ones started their indicators cold: the warm-up looked
    for stored 5m bars only, where the window itself is resampled from 1m."""
    out = tmp_path / "r.json"
    args = ("--strategy", "sma_cross", "--symbol", "ETHUSDT", "--days", "2", "--interval", "5m")
    result = cli("agent-backtest", *args, "--json", str(out))
    assert result.returncode == 0, result.stderr
    notes = " ".join(json.loads(out.read_text())["config"]["data"])
    assert "warm-up: 288 bars before the window, from 2025-10-29 04:25 UTC" in notes, notes


@pytest.mark.slow
def test_html_replaces_a_stale_plotly_beside_it_and_help_says_it_is_written(
    cli, tmp_path: Path
) -> None:
    """The page loads plotly.min.js from its folder: an old copy there would draw it with
    another plotly.js, so it is replaced; the help does not promise a self-contained page."""
    from plotly.offline import get_plotlyjs

    stale = tmp_path / "plotly.min.js"
    stale.write_text("/* plotly.js v1.0.0, an old report's */")
    window = ("--start", "2025-10-31T05:00", "--end", "2025-10-31T07:00")
    args = ("--strategy", "sma_cross", "--fast", "5", "--slow", "20", *window)
    result = cli("agent-backtest", *args, "--html", str(tmp_path / "r.html"))
    assert result.returncode == 0, result.stderr
    assert 'src="plotly.min.js"' in (tmp_path / "r.html").read_text()
    assert stale.read_text() == get_plotlyjs()

    told = " ".join(cli("agent-backtest", "--help").stdout.split())
    assert "self-contained" not in told
    assert "write an HTML report, and plotly.min.js beside it" in told


def test_trade_figures_without_trades_are_na_with_their_reason(cli, tmp_path: Path) -> None:
    """No trade and no drawdown: the trade statistics and drawdown figures say why they have
    no value, as docs/metrics.md promises, and the drawdown reads 0, not -0."""
    out = tmp_path / "r.json"
    window = ("--start", "2025-10-31T05:00", "--end", "2025-10-31T05:30")
    result = cli("agent-backtest", "--strategy", "sma_cross", *window, "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    why = report["annualisation"]["not_available"]
    for name in ("Win Rate [%]", "Profit Factor", "SQN", "Kelly Criterion"):
        assert report["metrics"][name] is None and why[name] == "no closed trades"
    assert why["Max. Drawdown Duration"] == "no drawdown"
    assert '"Max. Drawdown [%]": 0.0' in out.read_text()
    said = " ".join(result.stdout.split())
    assert "Win Rate [%] │ n/a" in said and "n/a SQN: no closed trades" in said
    assert "—" not in said and "-0 " not in said


def test_a_trade_open_at_the_end_is_no_closed_winner(cli, tmp_path: Path) -> None:
    """One buy still held on the last bar read # Trades 1, Win Rate 100 and Best Trade 0.2619
    before its exit fee, while the orders table said exits 0: now it is shown apart, as open,
    and the trade statistics (closed trades only) are n/a; the equity figures keep it."""
    out = tmp_path / "r.json"
    args = ("--strategy", "sma_cross", "--symbol", "BTCUSDT", "--days", "1")
    result = cli("agent-backtest", *args, "--fast", "200", "--slow", "700", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    metrics, why = report["metrics"], report["annualisation"]["not_available"]
    assert metrics["# Trades"] == 0
    for name in ("Win Rate [%]", "Best Trade [%]", "Avg. Trade [%]", "Expectancy [%]"):
        assert metrics[name] is None and why[name] == "no closed trades (1 open at the end)"
    (trade,) = report["trades"]
    held = report["orders"]["open_at_end"]
    assert held["trades"] == 1 and held["unrealised_pnl"] == pytest.approx(trade["pnl"])
    assert held["unrealised_pct"] == pytest.approx(trade["return_pct"])
    assert report["orders"]["trades_by_exit"] == {}
    assert metrics["Exposure Time [%]"] > 0 and metrics["Return [%]"] != 0
    said = " ".join(result.stdout.split())
    assert "# Trades │ 0 │" in said and "Win Rate [%] │ n/a │" in said
    assert re.search(r"open at the end +│ 1 \(unrealised \+0\.26 %", result.stdout), said
    assert "open (marked)" in said


def test_21_minutes_are_not_compounded_to_a_year(cli, tmp_path: Path) -> None:
    """A 0.37 % gain in 21 minutes read Return (Ann.) 1,169,686,151,722,... %: the annualised
    return, the CAGR and the Calmar ratio are n/a with the reason in the text, JSON and HTML."""
    out, page = tmp_path / "b.json", tmp_path / "b.html"
    window = ("--start", "2025-10-31T01:00", "--end", "2025-10-31T01:22")
    result = cli("agent-backtest", "--strategy", "sma_cross", "--fast", "2", "--slow", "5",
                 "--fee-bps", "0", "--symbol", "BTCUSDT", *window,
                 "--json", str(out), "--html", str(page))  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    why = report["annualisation"]["not_available"]
    reason = "needs 20+ daily returns: 21 minutes' return compounded to a year is an extrapolation"
    for name in ("Return (Ann.) [%]", "CAGR [%]", "Calmar Ratio"):
        assert report["metrics"][name] is None
    assert why["Return (Ann.) [%]"].startswith(reason) and why["CAGR [%]"].startswith(reason)
    assert report["metrics"]["Return [%]"] > 0 and report["metrics"]["Sharpe Ratio"] > 0
    said = " ".join(result.stdout.split())
    assert "Return (Ann.) [%] │ n/a │" in said and "CAGR [%] │ n/a │" in said
    assert f"n/a CAGR [%]: {reason}" in said
    html = page.read_text()
    assert "<td>CAGR [%]</td><td>n/a</td>" in html
    assert f"n/a Return (Ann.) [%]: {reason}".replace("'", "&#x27;") in html


def test_one_winning_trade_names_what_its_ratios_lack() -> None:
    pnl = np.array([5.0])
    figures = trade_metrics(pnl, np.array([0.01]), np.array([60_000.0]), 60_000)
    assert unavailable(figures, pnl) == {
        "Profit Factor": "no losing trade: no loss to divide by",
        "SQN": "needs 2+ closed trades",
        "Kelly Criterion": "needs a winning and a losing trade",
    }
