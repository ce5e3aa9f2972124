"""The book-based cross-venue scan: Binance's real diff depth and Bybit's real orderbook session,
replayed on loopback and rebased onto one clock (tests/loopback_cross.py), walked at the size
asked through the real stream clients and Books, with both taker fees and the book-age limit."""

from __future__ import annotations

import json
import time

import pytest
from loopback_cross import CrossVenue

from arbitrage.book_feeds import live_books
from config import load_settings
from market.sample import load_sample, sample_rules
from tools import MarketData, ToolEnv, chat_tools, flat_portfolio

SCAN = ("agent-arb", "scan", "--books", "--every", "0.2")


def _looks(cli, venue: CrossVenue, *args: str) -> list[dict]:
    run = cli(*SCAN, "--json", *args, env=venue.env())
    assert run.returncode == 0, run.stderr
    assert "notice: book-based" in run.stderr
    shown = json.loads(run.stdout)
    assert shown["basis"] == "books"
    return shown["looks"]


@pytest.mark.slow
def test_both_live_books_give_the_edge_for_the_size_net_of_both_fees(cli) -> None:
    with CrossVenue(premium_bps=20.0) as venue:
        looks = _looks(cli, venue, "--size", "0.0005", "--seconds", "1", "--fee-bps", "10,10",
                       "--max-age-ms", "30000")  # fmt: skip
    priced = [seen["scan"]["edge"] for seen in looks if seen["scan"] and seen["scan"]["edge"]]
    assert priced, looks
    for edge in priced:
        # Binance was anchored 20 bps over Bybit: buy on Bybit, sell on Binance
        assert (edge["buy_venue"], edge["sell_venue"]) == ("bybit", "binance")
        assert edge["costs_bps"] == 20.0
        assert edge["net_bps"] < edge["gross_bps"] - 19.9
        assert edge["quantity"] == 0.0005


@pytest.mark.slow
def test_a_book_older_than_the_limit_is_not_priced(cli) -> None:
    with CrossVenue(bybit_offset_ms=-60_000) as venue:
        looks = _looks(cli, venue, "--size", "0.0005", "--seconds", "1", "--max-age-ms", "2000")
    refused = [seen["scan"]["refused"] for seen in looks if seen["scan"]]
    assert refused, looks
    assert all(r.startswith("bybit book is") and "(limit 2000 ms)" in r for r in refused)
    assert not any(seen["scan"]["edge"] for seen in looks if seen["scan"])


@pytest.mark.slow
def test_the_text_scan_prints_a_line_per_look(cli) -> None:
    with CrossVenue(premium_bps=20.0) as venue:
        run = cli(*SCAN, "--size", "0.0005", "--seconds", "1.5", "--fee-bps", "0,0",
                  "--max-age-ms", "30000", env=venue.env())  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) >= 5
    assert any("buy bybit" in line and "sell binance" in line for line in lines), lines


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--size", "0.1"), "--size only apply with --books"),
        (("--books", "--size", "0"), "invalid --size/--seconds/--every/--max-age-ms"),
    ],
)
def test_book_flags_that_do_not_apply_exit_2(cli, args: tuple[str, ...], said: str) -> None:
    run = cli("agent-arb", "scan", *args)
    assert run.returncode == 2
    assert said in run.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_an_unreachable_venue_ends_the_scan_with_one_line(cli) -> None:
    closed = {"AGENT_BINANCE__STREAM_URL": "ws://127.0.0.1:9"}  # bybit's is closed already
    run = cli("agent-arb", "scan", "--books", "--seconds", "30", env=closed)
    assert run.returncode == 2
    assert "cannot follow both books" in run.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_the_chat_spread_tool_prices_both_live_books(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the UI's chat gets with live data: both books followed in the background, read by
    `cross_venue_spread` at the size the model asks for."""
    market = MarketData({"BTCUSDT": load_sample("BTCUSDT")}, "1m")
    with CrossVenue(premium_bps=20.0) as venue:
        for name, value in venue.env().items():
            monkeypatch.setenv(name, value)
        books = live_books(load_settings(), ["BTCUSDT"])
        try:
            for _ in range(200):  # until both books have synced (each look is a new message)
                if len(books.venue_books("BTCUSDT")) == 2:
                    break
                time.sleep(0.05)
            env = ToolEnv(
                market=market,
                now_ms=int(time.time() * 1000),
                rules=sample_rules(),
                portfolio=flat_portfolio(10_000),
                venue_books=books.venue_books,
            )
            outcome = chat_tools().call(
                env, "c", "cross_venue_spread", '{"symbol": "BTCUSDT", "size": 0.0005}'
            )
        finally:
            books.stop()
    assert outcome.ok, outcome.error
    spread = json.loads(outcome.content)
    assert spread["priced"] is True
    assert (spread["buy_venue"], spread["sell_venue"]) == ("bybit", "binance")
    assert spread["costs_bps"] == 20.0  # both venues' standard taker fee, 10 bps each


RUN = ("agent-arb", "run", "--books", "--json", "--quantity", "0.001", "--fee-bps", "10,10",
       "--every", "0.2")  # fmt: skip


@pytest.mark.slow
def test_the_paper_loop_takes_pairs_from_both_live_books(cli) -> None:
    with CrossVenue(premium_bps=60.0) as venue:
        run = cli(*RUN, "--seconds", "30", "--max-age-ms", "30000", "--max-pairs", "2",
                  env=venue.env())  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "notice: book-based" in run.stderr
    report = json.loads(run.stdout)
    assert (report["basis"], report["mode"]) == ("books", "paper")
    assert report["pair_states"] == {"arb-000001": "complete", "arb-000002": "complete"}
    assert report["pnl_quote"] > 0
    # bought on Bybit (the cheaper book), its fee out of the coins; sold on Binance
    assert report["inventory_end"]["bybit"]["base"] == pytest.approx(0.5 + 2 * 0.001 * 0.999)
    assert report["inventory_end"]["binance"]["base"] == pytest.approx(0.5 - 2 * 0.001)


@pytest.mark.slow
def test_the_paper_loop_takes_no_pair_off_a_book_older_than_the_limit(cli) -> None:
    with CrossVenue(premium_bps=60.0, bybit_offset_ms=-60_000) as venue:
        run = cli(*RUN, "--seconds", "1", "--max-age-ms", "2000", env=venue.env())
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["pairs"] == 0
    assert report["skipped"] and all(w.startswith("bybit book is") for w in report["skipped"])
