"""The report reads at 80 columns and in a pipe, and its HTML page stays light: what a trader
sees of a 3-day, two-symbol agent run on the bundled sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

MAX_PAGE_BYTES = 1_500_000


@pytest.mark.slow
def test_three_days_two_symbols_at_80_columns_and_a_light_page(cli, tmp_path: Path) -> None:
    page, out = tmp_path / "a.html", tmp_path / "a.json"
    args = ("--symbol", "BTCUSDT,ETHUSDT", "--days", "3", "--decide-every", "60")
    result = cli(
        "agent-backtest", *args, "--html", str(page), "--json", str(out), env={"COLUMNS": "80"}
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.stdout, "no column collapses to an ellipsis"
    assert "last 12 of" in result.stdout and "rationale" in result.stdout
    assert "annualised on hourly returns (73)" in result.stdout
    assert "fills" in result.stdout and "entries" in result.stdout and "exits" in result.stdout

    html = page.read_text()
    assert len(html.encode()) < MAX_PAGE_BYTES
    assert "BTCUSDT volume" in html and 'src="plotly.min.js"' in html
    script = tmp_path / "plotly.min.js"
    assert script.stat().st_size > 1_000_000, "plotly.js once, beside the page, for offline use"
    report = json.loads(out.read_text())
    for name in ("Sharpe Ratio", "Sortino Ratio", "Calmar Ratio"):
        for row in [report["metrics"], *report["agent"]["baselines"].values()]:
            value = row.get(name)
            assert value is None or abs(value) < 1_000, (name, value)
