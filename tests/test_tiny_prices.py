"""A coin nobody lists, priced at 1e-9, trades at its own prices (no invented tick, step or
size limits), and reports show prices and sizes to significant digits and dollars to the cent."""

from __future__ import annotations

import csv
import gzip
import html as html_text
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.cli.backtest_flags import _rules
from backtest.terminal import to_unit
from market.sample import load_sample
from tools import MarketData, ToolEnv, flat_portfolio
from tools.market import CandlesIn, get_candles

SAMPLE_GZ = Path(__file__).parents[1] / "market" / "data" / "BTCUSDT-1m-2025-10-29_3d.csv.gz"
TINY = Decimal("1e-14")  # BTC at ~110,000 USDT becomes a coin at ~1.1e-9
DAY = 1_440
NOTICE = (
    "notice: no exchange filters known for BABYUSDT; orders are not checked against "
    "tickSize, stepSize, minQty, maxQty or minNotional"
)
TRADE_ROW = re.compile(r"^\d\d-\d\d \d\d:\d\d \d\d-\d\d \d\d:\d\d ")


def _bars(path: Path, scale: Decimal) -> Path:
    """The sample's last day in Binance's layout, prices times `scale`, volume divided by it
    (the same dollars change hands)."""
    with gzip.open(SAMPLE_GZ, "rt") as sample:
        rows = list(csv.reader(sample))
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(rows[0])
        for row in rows[-DAY:]:
            row[1:5] = [str(Decimal(v) * scale) for v in row[1:5]]
            row[5] = str(Decimal(row[5]) / scale)
            writer.writerow(row)
    return path


def _backtest(cli, tmp_path: Path, symbol: str, scale: Decimal) -> tuple[Any, dict, str]:
    data, out, page = (tmp_path / f"{symbol}{ext}" for ext in (".csv", ".json", ".html"))
    result = cli(
        "agent-backtest",
        *("--strategy", "sma_cross", "--symbol", symbol, "--days", "1", "--stop-loss", "0.5"),
        *("--data", str(_bars(data, scale)), "--json", str(out), "--html", str(page)),
    )
    assert result.returncode == 0, result.stderr
    return result, json.loads(out.read_text()), page.read_text()


def _html_table(page: str, heading: str) -> list[list[str]]:
    table = page.split(f"<h2>{heading}</h2>", 1)[1].split("</table>", 1)[0]
    return [
        [html_text.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", table)
        if "<td>" in row
    ]


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _significant(text: str) -> int:
    return len(text.replace(",", "").replace(".", "").lstrip("0"))


@pytest.mark.slow
def test_a_coin_at_1e_9_without_filters_trades_as_the_same_bars_at_btc_prices(
    cli, tmp_path: Path
) -> None:
    _, big, _ = _backtest(cli, tmp_path, "BIGUSDT", Decimal(1))
    result, tiny, page = _backtest(cli, tmp_path, "BABYUSDT", TINY)
    assert NOTICE in result.stderr.splitlines()
    assert tiny["orders"]["vetoed"] == {}, "no invented tick vetoes the 0.5 % stop or the price"
    assert set(tiny["orders"]["adjusted"]) == {"INSUFFICIENT_CASH"}, "nothing is rounded"

    trades = tiny["trades"]
    assert len(trades) == len(big["trades"]) > 10
    for coin, same in zip(trades, big["trades"], strict=True):
        assert coin["entry_price"] == pytest.approx(same["entry_price"] * 1e-14, rel=1e-9)
        assert coin["exit_price"] == pytest.approx(same["exit_price"] * 1e-14, rel=1e-9)
        assert coin["size"] == pytest.approx(same["size"] * 1e14, rel=1e-9)
        assert coin["return_pct"] == pytest.approx(same["return_pct"], abs=1e-6)
    final = "Equity Final [$]"
    assert f"{tiny['metrics'][final]:,.2f}" == f"{big['metrics'][final]:,.2f}"

    # The terminal's last trades: prices read as they are, to 6 significant digits.
    shown = [line.split() for line in result.stdout.splitlines() if TRADE_ROW.match(line)]
    assert len(shown) == 10
    for cells, trade in zip(shown, trades[-10:], strict=True):
        for text, price in zip(
            cells[4:6], (trade["entry_price"], trade["exit_price"]), strict=True
        ):
            assert _number(text) == pytest.approx(price, rel=1e-5), text
            assert text.startswith("0.00000000") and _significant(text) <= 6, text

    # The HTML page: every trade's prices the same way, sizes in whole units, no float noise.
    rows = _html_table(page, "Trades")
    assert len(rows) == len(trades)
    for row, trade in zip(rows, trades, strict=True):
        entry, exit_, size = row[4:7]
        assert _number(entry) == pytest.approx(trade["entry_price"], rel=1e-5), entry
        assert _number(exit_) == pytest.approx(trade["exit_price"], rel=1e-5), exit_
        assert size == f"{round(trade['size']):,}"

    # Dollars to the cent wherever they are shown (fees here are under 1,000).
    fees = f"{tiny['metrics']['Fees [$]']:,.2f}"
    assert re.search(rf"Fees \[\$\]\s*│\s*{re.escape(fees)} │", result.stdout), result.stdout
    assert ["Fees [$]", fees] in _html_table(page, "Metrics")


@pytest.mark.slow
def test_a_dollar_under_a_thousand_shows_its_cents(cli, tmp_path: Path) -> None:
    page = tmp_path / "one.html"
    result = cli("agent-backtest", "--days", "1", "--cash", "1", "--html", str(page))
    assert result.returncode == 0, result.stderr
    for name in ("Equity Final [$]", "Equity Peak [$]", "Fees [$]"):
        value = "1.00" if name.startswith("Equity") else "0.00"
        assert re.search(rf"{re.escape(name)}\s*│\s*{value} │", result.stdout), result.stdout
        assert [name, value] in _html_table(page.read_text(), "Metrics")

    sweep = ("--strategy", "sma_cross", "--sweep", "fast=10:20:10", "--rank-by", "equity_final")
    ranked = cli("agent-backtest", "--days", "1", "--cash", "1", *sweep, "--workers", "1")
    assert ranked.returncode == 0, ranked.stderr
    rows = [line.split("│") for line in ranked.stdout.splitlines() if re.match(r"│ \d │", line)]
    assert [row[3].strip() for row in rows] == ["1.00", "1.00"], ranked.stdout


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (112_749.72, "0.01", "112,749.72"),  # BTCUSDT's price to its tick, as always
        (112_749.7, "0.01", "112,749.70"),
        (3.5, "0.01", "3.50"),
        (0.08868, "0.00001", "0.08868"),  # a BTCUSDT size to its step
        (1.23456789e-05, "1E-8", "0.0000123457"),  # a tick too coarse for 6 digits is passed
        (1.0987e-08, "1E-8", "0.000000010987"),  # never 0.00000001
        (1.0987e-08, "0", "0.000000010987"),  # no filters: 6 significant digits
        (909_091_818_182.72729492, "0", "909,091,818,183"),  # no 8 decimals of float noise
        (0.30000000000000004, None, "0.3"),
    ],
)
def test_prices_and_sizes_show_to_their_unit_and_six_significant_digits(
    value: float, unit: str | None, shown: str
) -> None:
    assert to_unit(value, unit) == shown


def test_the_agent_reads_a_tiny_coins_candles_at_their_prices() -> None:
    frame = load_sample("BTCUSDT").iloc[-DAY:].reset_index(drop=True)
    for column in ("open", "high", "low", "close"):
        frame[column] = frame[column] * float(TINY)
    env = ToolEnv(
        market=MarketData({"BABYUSDT": frame}, "1m"),
        now_ms=int(frame["close_time"].iloc[-1]),
        rules=_rules(["BABYUSDT"], []),
        portfolio=flat_portfolio(10_000.0),
    )
    rows = get_candles(env, CandlesIn(symbol="BABYUSDT", interval="1m", limit=5)).rows
    closes = [row[4] for row in rows]
    assert closes == pytest.approx(frame["close"].iloc[-5:].tolist(), rel=1e-7)
