"""Arbitrage arithmetic on tiny hand-made books (freqtrade-style scenarios, each with its
numbers), the desk's pairs, lone legs and inventory, and the bar-based scan of a real day."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from arbitrage.bars import bundled_cross_bars, summarize
from arbitrage.journal import PairJournal
from arbitrage.pairs import (
    ArbDesk,
    ArbLimits,
    Holdings,
    Inventory,
    LegFill,
    PairState,
    PaperLegs,
)
from arbitrage.rebalance import Rebalancer, RebalanceRule, split
from arbitrage.spread import VenueBook, edge, max_profitable_quantity, scan
from core.errors import UserError
from store.migrations import MIGRATIONS

NOW = 1_000_000
REAL_MS = 1_670_889_659_999  # the close of 2022-12-13's first minute

# The journal's tables as SQLModel made them before migration 13 (times as INTEGER).
OLD_PAIRS = """CREATE TABLE arb_pairs (account VARCHAR NOT NULL, pair_id VARCHAR NOT NULL,
    opened_ms INTEGER NOT NULL, state VARCHAR NOT NULL, pnl_quote FLOAT NOT NULL,
    pair_json VARCHAR NOT NULL, PRIMARY KEY (account, pair_id))"""
OLD_TRANSFERS = """CREATE TABLE arb_transfers (account VARCHAR NOT NULL, transfer_id VARCHAR NOT NULL,
    time_ms INTEGER NOT NULL, cost_quote FLOAT NOT NULL, transfer_json VARCHAR NOT NULL,
    PRIMARY KEY (account, transfer_id))"""


def book(venue: str, bids, asks, fee: float = 10.0, time_ms: int = NOW) -> VenueBook:
    return VenueBook(venue=venue, bids=bids, asks=asks, time_ms=time_ms, taker_fee_bps=fee)


# binance is cheap at 100.0 for 1, then 100.5 and 101; bybit bids 101 for 0.5, then lower.
CHEAP = book("binance", [(99.9, 5.0)], [(100.0, 1.0), (100.5, 1.0), (101.0, 10.0)])
RICH = book("bybit", [(101.0, 0.5), (100.6, 1.0), (100.0, 10.0)], [(101.1, 5.0)])


def test_the_edge_pays_both_taker_fees_on_the_vwap_of_the_size() -> None:
    small = edge(CHEAP, RICH, 0.5)
    assert small is not None
    assert (small.buy_vwap, small.sell_vwap) == (100.0, 101.0)
    assert small.gross_bps == pytest.approx(100.0)
    # spent 100 × 1.001 = 100.1, received 101 × 0.999 = 100.899 per unit
    assert small.net_bps == pytest.approx(0.799 / 100.1 * 10_000)
    assert small.net_quote == pytest.approx(0.5 * 0.799)
    deeper = edge(CHEAP, RICH, 1.5)
    assert deeper is not None
    assert deeper.buy_vwap == pytest.approx((100.0 + 0.5 * 100.5) / 1.5)
    assert deeper.sell_vwap == pytest.approx((0.5 * 101.0 + 100.6) / 1.5)
    assert deeper.net_bps < small.net_bps


def test_the_edge_vanishes_at_the_size_where_fees_eat_it() -> None:
    # past 2 units: buy total 200.5 + 101x, sell total 201.1 + 100x; net zero where
    # (201.1 + 100x) × 0.999 = (200.5 + 101x) × 1.001, x = 0.1984 / 1.201
    vanishes = 2 + 0.1984 / 1.201
    assert max_profitable_quantity(CHEAP, RICH) == pytest.approx(vanishes, rel=1e-9)
    at = edge(CHEAP, RICH, vanishes)
    assert at is not None and at.net_bps == pytest.approx(0.0, abs=1e-6)
    assert max_profitable_quantity(RICH, CHEAP) == 0.0


def test_fees_alone_can_kill_a_real_spread() -> None:
    pricey = scan(
        book("binance", [(99.9, 5)], [(100.0, 5)], fee=10),
        book("bybit", [(100.15, 5)], [(100.3, 5)], fee=10),
        1.0,
        NOW,
        max_age_ms=500,
    )
    assert pricey.edge is not None and pricey.edge.gross_bps == pytest.approx(15.0)
    assert pricey.edge.net_bps < 0 and pricey.max_profitable_quantity == 0.0


def test_a_stale_book_is_refused_not_priced() -> None:
    old = book("bybit", RICH.bids, RICH.asks, time_ms=NOW - 1_500)
    result = scan(CHEAP, old, 0.5, NOW, max_age_ms=1_000)
    assert result.edge is None
    assert result.refused == "bybit book is 1500 ms old (limit 1000 ms): not priced"


levels = st.lists(st.tuples(st.floats(90, 110), st.floats(0.01, 5)), min_size=1, max_size=6).map(
    sorted
)


@settings(max_examples=60, deadline=None)
@given(levels, levels, st.floats(0, 30), st.floats(0.01, 3), st.floats(1.01, 3))
def test_net_edge_never_grows_with_size_and_fees_only_take(asks, bids, fee, q, more) -> None:
    buy = book("a", [(100, 1)], asks, fee=fee)
    sell = book("b", bids[::-1], [(200, 1)], fee=fee)
    small, large = edge(buy, sell, q), edge(buy, sell, q * more)
    if small is not None and large is not None:
        assert large.net_bps <= small.net_bps + 1e-9
    if small is not None:
        free = edge(
            buy.model_copy(update={"taker_fee_bps": 0}),
            sell.model_copy(update={"taker_fee_bps": 0}),
            q,
        )
        assert free is not None and free.net_bps == pytest.approx(free.gross_bps)
        assert small.net_bps <= free.net_bps + 1e-9


def desk(journal, fail=None, **limits) -> ArbDesk:
    inventory = Inventory(
        {"binance": Holdings(base=1.0, quote=1_000.0), "bybit": Holdings(base=1.0, quote=1_000.0)}
    )
    settings = {"quantity": 0.5, "max_notional_per_leg": 500.0, "daily_loss": 50.0} | limits
    return ArbDesk(ArbLimits(**settings), inventory, PaperLegs(inventory, fail), journal)


def test_a_pair_takes_both_legs_and_books_fees_where_the_venues_take_them(store) -> None:
    journal = PairJournal(store, "arb")
    d = desk(journal)
    pair = d.step({"binance": CHEAP, "bybit": RICH}, NOW)
    assert pair is not None and pair.state == PairState.COMPLETE
    held = d.inventory.holdings
    # bought 0.5 at 100 on binance, its fee out of the coins: 0.5 × 0.999
    assert held["binance"].base == pytest.approx(1.0 + 0.4995)
    assert held["binance"].quote == pytest.approx(1_000 - 50.0)
    assert held["bybit"].base == pytest.approx(0.5)
    assert held["bybit"].quote == pytest.approx(1_000 + 0.5 * 101 * 0.999)
    assert pair.pnl_quote == pytest.approx(0.5 * (101 * 0.999 - 100) - 0.5 * 0.001 * 100.5)
    [stored] = journal.pairs()
    assert stored.state == PairState.COMPLETE and stored.legs == pair.legs


def _journal_a_real_day(store) -> PairJournal:
    """A pair and a transfer at a real time: milliseconds since 1970 are past 2**31."""
    journal = PairJournal(store, "arb")
    books = {
        v: b.model_copy(update={"time_ms": REAL_MS})
        for v, b in (("binance", CHEAP), ("bybit", RICH))
    }
    pair = desk(journal).step(books, REAL_MS)
    assert pair is not None and pair.state == PairState.COMPLETE
    inventory = Inventory(
        {"binance": Holdings(base=0.9, quote=1.0), "bybit": Holdings(base=0.1, quote=1.0)}
    )
    Rebalancer(RebalanceRule(threshold=0.5), journal.transfer).step(
        inventory, "binance", "bybit", 1.0, REAL_MS
    )
    return journal


def test_the_journal_keeps_real_millisecond_times_on_every_backend(store) -> None:
    """PostgreSQL made 32-bit columns of them: `agent-arb run` died at its first pair."""
    journal = _journal_a_real_day(store)
    assert [p.opened_ms for p in journal.pairs()] == [REAL_MS]
    assert [t.time_ms for t in journal.transfers()] == [REAL_MS]


def test_a_journal_made_with_32_bit_times_is_widened_when_the_store_opens(store) -> None:
    """A journal an older version made on PostgreSQL (its times 32-bit) is migrated in place:
    its pairs are kept and a real time fits."""
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM schema_version WHERE version >= 13"))
        conn.execute(text(OLD_PAIRS))
        conn.execute(text(OLD_TRANSFERS))
        conn.execute(
            text("INSERT INTO arb_pairs VALUES ('old', 'arb-000001', 5, 'failed', 0, '{}')")
        )
    assert store.migrate() == len(MIGRATIONS)
    journal = _journal_a_real_day(store)
    assert [t.time_ms for t in journal.transfers()] == [REAL_MS]
    with store.engine.connect() as conn:
        kept = conn.execute(text("SELECT account, opened_ms FROM arb_pairs ORDER BY opened_ms"))
        assert kept.all() == [("old", 5), ("arb", REAL_MS)]


def test_a_pair_cut_to_its_notional_keeps_the_edge_of_the_size_it_took() -> None:
    """Scanned at 1.5, the pair is cut to 50 quote per leg: its journaled VWAPs and net are
    those of what it took (at the best levels), not of 1.5 deep into both books."""
    d = desk(lambda pair: None, quantity=1.5, max_notional_per_leg=50.0)
    pair = d.step({"binance": CHEAP, "bybit": RICH}, NOW)
    assert pair is not None and pair.state == PairState.COMPLETE
    taken = pair.legs[0].filled
    assert taken == pytest.approx(50.0 / edge(CHEAP, RICH, 1.5).buy_vwap)
    assert pair.edge == edge(CHEAP, RICH, taken)
    assert (pair.edge.buy_vwap, pair.edge.sell_vwap) == (100.0, 101.0)
    assert pair.edge.net_quote == pytest.approx(taken * 0.799)


def test_a_failed_second_leg_is_a_lone_leg_that_the_close_rule_reverses(store) -> None:
    journal = PairJournal(store, "arb")
    states: list[str] = []

    def record(pair) -> None:
        states.append(pair.state.value)
        journal(pair)

    d = desk(record, fail=lambda pair_id, venue, side: venue == "bybit")
    pair = d.step({"binance": CHEAP, "bybit": RICH}, NOW)
    assert pair is not None
    assert states == ["open", "lone_leg", "closed"]
    assert pair.state == PairState.CLOSED
    [close] = pair.closes
    assert (close.venue, close.side, close.filled) == ("binance", "sell", pytest.approx(0.5))
    assert close.price == 99.9
    # bought 0.5 at 100 (fee in coins), sold 0.5 back at 99.9 (fee in quote): a known loss
    assert pair.pnl_quote < 0
    assert d.inventory.holdings["bybit"] == Holdings(base=1.0, quote=1_000.0)
    assert journal.pairs()[0].state == PairState.CLOSED


def test_a_paper_close_sells_only_the_coins_its_venue_holds_and_notes_the_rest() -> None:
    """Binance starts with no coin: the pair's buy leaves it 0.5 less the fee in coins, so its
    close can sell 0.4995, not 0.5. Selling 0.5 credited quote for coins that never existed."""
    inventory = Inventory(
        {"binance": Holdings(base=0.0, quote=1_000.0), "bybit": Holdings(base=1.0, quote=1_000.0)}
    )
    limits = ArbLimits(quantity=0.5, max_notional_per_leg=500.0, daily_loss=50.0)
    legs = PaperLegs(
        inventory, lambda pair_id, venue, side: (pair_id, venue) == ("arb-000001", "bybit")
    )
    d = ArbDesk(limits, inventory, legs, lambda pair: None)
    pair = d.step({"binance": CHEAP, "bybit": RICH}, NOW)
    assert pair is not None and pair.state == PairState.LONE_LEG
    [close] = pair.closes
    assert close.filled == pytest.approx(0.4995) and close.reason == (
        "partly filled: binance holds only 0.4995"
    )
    binance = inventory.holdings["binance"]
    assert binance.base == 0.0
    assert binance.quote == pytest.approx(1_000 - 50.0 + 0.4995 * 99.9 * 0.999)
    d.step({"binance": CHEAP, "bybit": RICH}, NOW + 1)
    assert pair.state == PairState.CLOSED and len(pair.closes) == 1
    assert pair.note.endswith(
        "; 0.0005 buy left on binance, which cannot trade it: binance holds none of the coin"
    )


def test_a_fill_of_more_than_its_venue_holds_is_refused_not_clamped() -> None:
    inventory = Inventory({"binance": Holdings(base=0.1, quote=0.0)})
    oversold = LegFill(
        venue="binance", side="sell", requested=0.2, filled=0.2, price=100.0, fee_bps=0.0
    )
    with pytest.raises(ValueError, match=r"binance would hold -0\.1 base and 20 quote"):
        inventory.book(oversold)
    assert inventory.holdings["binance"] == Holdings(base=0.1, quote=0.0)


def test_a_lone_leg_that_cannot_close_stops_new_pairs_until_it_does() -> None:
    refusing = {"on": True}
    d = desk(
        lambda pair: None,
        fail=lambda pair_id, venue, side: (
            (refusing["on"] and venue == "bybit") or (refusing["on"] and side == "sell")
        ),
    )
    first = d.step({"binance": CHEAP, "bybit": RICH}, NOW)
    assert first is not None and first.state == PairState.LONE_LEG
    assert d.step({"binance": CHEAP, "bybit": RICH}, NOW + 1) is None
    assert d.skipped == {"a lone leg is still open": 1}
    refusing["on"] = False
    d.step({"binance": CHEAP, "bybit": RICH}, NOW + 2)
    assert first.state == PairState.CLOSED


def test_the_daily_loss_limit_stops_new_pairs() -> None:
    d = desk(lambda pair: None, fail=lambda pair_id, venue, side: venue == "bybit", daily_loss=0.01)
    d.step({"binance": CHEAP, "bybit": RICH}, NOW)
    assert d.step({"binance": CHEAP, "bybit": RICH}, NOW + 1) is None
    assert d.skipped == {"daily loss limit reached": 1}


def test_the_real_day_of_bars_gives_a_spread_series_that_fees_swallow() -> None:
    bars = bundled_cross_bars(("binance", "bybit"))
    summary, series = summarize(bars, (10.0, 10.0), 0.0, 0.0)
    assert summary.labels == ("binance BTCBUSD", "bybit BTCUSDT")
    assert summary.minutes == len(series) == 1_440
    assert -19 < summary.min_bps < -17 and 2 < summary.max_bps < 4
    assert summary.mean_bps == pytest.approx(-3, abs=0.5)
    assert summary.minutes_clearing == 0


def test_stored_bars_of_both_exchanges_are_compared_minute_by_minute(store) -> None:
    import pandas as pd

    from arbitrage.bars import stored_cross_bars
    from store.candles import upsert_candles
    from tests.loopback_bybit import lean_bars

    for venue, name in (
        ("bybit", "bybit_spot_BTCUSDT_1m_trade_2022-12-13_lean.csv"),
        ("binance", "binance_spot_BTCBUSD_1m_trade_2022-12-13_lean.csv"),
    ):
        rows = lean_bars(name)[:90]
        frame = pd.DataFrame(
            {
                "open_time": [int(r[0]) for r in rows],
                **{
                    c: [float(r[i]) for r in rows]
                    for i, c in enumerate(("open", "high", "low", "close", "volume"), 1)
                },
            }
        )
        frame["close_time"] = frame["open_time"] + 59_999
        frame[["quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume"]] = 0
        upsert_candles(store, "BTCUSDT", "1m", frame, exchange=venue)
    bars = stored_cross_bars(store, "BTCUSDT", ("binance", "bybit"))
    summary, _ = summarize(bars, (1.0, 1.0), 0.0, 0.0)
    assert summary.labels == ("binance BTCUSDT", "bybit BTCUSDT") and summary.minutes == 90
    with pytest.raises(UserError, match="agent-data download --exchange binance --symbol ETHUSDT"):
        stored_cross_bars(store, "ETHUSDT", ("binance", "bybit"))


@pytest.mark.slow
def test_agent_arb_scan_says_it_is_bar_based_and_fees_swallow_the_day(cli) -> None:
    import json

    result = cli("agent-arb", "scan", "--symbol", "BTCUSDT", "--exchanges", "binance,bybit")
    assert result.returncode == 0, result.stderr
    assert "bar-based, not book-based" in result.stderr
    assert "bundled real day" in result.stderr
    assert "0 minutes clear 0 bps after costs" in result.stdout
    cheap = cli("agent-arb", "scan", "--fee-bps", "1,1", "--json")
    report = json.loads(cheap.stdout)
    assert report["basis"] == "bars" and len(report["spread_bps"]) == 1_440
    assert report["minutes_clearing"] == 830


@pytest.mark.slow
def test_agent_arb_run_journals_pairs_and_closes_each_lone_leg(cli) -> None:
    import json

    args = ("--mode", "paper", "--fee-bps", "1,1", "--fail-every", "3", "--json")
    result = cli("agent-arb", "run", *args)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["by_state"]["lone_leg"] == 0
    assert report["by_state"]["closed"] == report["pairs"] // 3 > 0
    assert report["pnl_quote"] == pytest.approx(sum(report["pair_pnl"].values()), abs=1e-4)
    end = report["inventory_end"]
    # each buy's fee came out of the coins received: base no longer adds up to the start
    assert end["binance"]["base"] + end["bybit"]["base"] < 1.0
    again = cli("agent-arb", "run", *args)
    assert again.returncode == 2 and "already has pairs" in again.stderr


@pytest.mark.slow
def test_each_fee_stays_with_its_venue_whichever_venue_is_named_first(cli) -> None:
    """--fee-bps pairs with --exchanges by position: 10,0 on binance,bybit is 0,10 on
    bybit,binance. The bundled day came in one order whatever the user named, so the fees
    landed on the wrong venues and the PnL moved."""
    import json

    def run(account: str, *args: str, env: dict[str, str] | None = None) -> dict:
        more = ("--json", "--rebalance-at", "0.3", "--account", account)
        result = cli("agent-arb", "run", *args, *more, env=env)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        return {k: report[k] for k in ("pnl_quote", "pair_pnl", "transfer_cost_quote")}

    named = run("a", "--fee-bps", "10,0", "--exchanges", "binance,bybit")
    assert named["pair_pnl"]
    assert run("b", "--fee-bps", "0,10", "--exchanges", "bybit,binance") == named
    free_bybit = {"AGENT_BYBIT__TAKER_FEE_BPS": "0"}
    assert run("c", "--exchanges", "bybit,binance", env=free_bybit) == named
    scan = cli("agent-arb", "scan", "--exchanges", "bybit,binance", "--fee-bps", "0,10")
    assert scan.stdout.startswith("binance BTCBUSD over bybit BTCUSDT"), scan.stdout
    assert "spread    mean +3.03 bps, min -3.21, max +18.29" in scan.stdout
    assert "taker fees 0 + 10" in scan.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("run", "--mode", "live"), "live trading needs LIVE_TRADING_CONFIRM=yes"),
        (("run", "--mode", "demo"), "unknown trading mode 'demo'"),
        (("run", "--mode", "testnet"), "--mode testnet needs --books: past bar closes must never"),
        (("run", "--mode", "testnet", "--books", "--base", "1"), "--base is for paper"),
        (("run", "--max-pairs", "2"), "invalid --max-pairs 2: at least 1, and with --books"),
        (("run", "--seconds", "2"), "--seconds only apply with --books"),
        (("run", "--books", "--rebalance-at", "0.3"), "--rebalance-at rehearses transfers"),
        (("scan", "--exchanges", "binance"), "invalid --exchanges 'binance'"),
        (("scan", "--exchanges", "binance,kraken"), "unknown exchange 'kraken'"),
        # a stock venue was a KeyError traceback (scan) or a ValueError one (run --books)
        (("scan", "--exchanges", "binance,alpaca"), "alpaca is not one of the crypto venues"),
        (("run", "--books", "--exchanges", "alpaca,bybit"), "alpaca is not one of the crypto"),
        (("scan", "--fee-bps", "10"), "invalid --fee-bps '10'"),
        (("run", "--quantity", "0"), "invalid --quantity"),
        (("run", "--threshold-bps", "-5"), "--threshold-bps: '-5' is negative"),  # every pair loses
        (("run", "--rebalance-at", "2"), "invalid --rebalance-at 2"),
        (("run", "--rebalance-at", "0.5", "--transfer-fee", "1"), "two fees >= 0"),
        # a negative slippage crashed the run (pydantic traceback) and invented an edge in scan
        (("run", "--slippage-bps", "-20"), "--slippage-bps: '-20' is negative"),
        (("scan", "--slippage-bps", "-5"), "--slippage-bps: '-5' is negative"),
        (("scan", "--threshold-bps", "-1000"), "--threshold-bps: '-1000' is negative"),
        # a transfer fee was never checked unless --rebalance-at was given
        (("run", "--rebalance-at", "0.5", "--transfer-fee=-1,1"), "two fees >= 0"),
        (("run", "--transfer-fee=-1,1"), "two fees >= 0"),
        (("run", "--transfer-fee", "1,1"), "without --rebalance-at nothing is transferred"),
    ],
)
def test_agent_arb_bad_input_is_one_line_and_exit_2(cli, offline_env, args, expected) -> None:
    result = cli("agent-arb", *args)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (Path(offline_env["AGENT_DATA_DIR"]) / "agent.db").exists()


@pytest.mark.slow
def test_agent_arb_run_stops_pairing_and_transferring_once_fees_reach_the_daily_loss(cli) -> None:
    """The day's 480 transfers cost 1,162 quote; with a daily loss of 1 the first one (3.44)
    is the last: the pairs earned 0.14 by then, so neither pairs nor transfers go on."""
    import json

    args = ("run", "--daily-loss", "1", "--fee-bps", "1,1", "--rebalance-at", "0.3")
    report = json.loads(cli("agent-arb", *args, "--json").stdout)
    assert report["transfers"] == 1 and report["transfer_cost_quote"] == pytest.approx(
        3.44, abs=0.01
    )
    assert report["transfers_skipped"]["daily loss limit reached"] > 1_000
    assert report["skipped"]["daily loss limit reached"] > 1_000 and report["pairs"] < 10
    shown = cli("agent-arb", *args, "--account", "again")
    assert "held back: daily loss limit reached" in shown.stdout, shown.stdout


# --- rebalancing -----------------------------------------------------------------------------


def test_a_drifted_base_is_moved_to_the_poorer_venue_net_of_the_network_fee(store) -> None:
    inventory = Inventory(
        {"binance": Holdings(base=0.9, quote=5_000.0), "bybit": Holdings(base=0.1, quote=5_000.0)}
    )
    journal = PairJournal(store, "rb")
    mover = Rebalancer(
        RebalanceRule(threshold=0.5, base_fee=0.0002, quote_fee=1.0), journal.transfer
    )
    [moved] = mover.step(inventory, "binance", "bybit", 20_000.0, NOW)
    # 0.4001 BTC leaves Binance, 0.3999 reaches Bybit: both hold 0.4999, the fee is 4 USDT.
    assert (moved.asset, moved.from_venue, moved.to_venue) == ("base", "binance", "bybit")
    assert moved.amount == pytest.approx(0.4001) and moved.cost_quote == pytest.approx(4.0)
    assert inventory.holdings["binance"].base == pytest.approx(0.4999)
    assert inventory.holdings["bybit"].base == pytest.approx(0.4999)
    assert moved.imbalance_before == pytest.approx(0.8) and moved.imbalance_after < 1e-9
    assert inventory.holdings["bybit"].quote == 5_000.0  # quote was even: not moved
    assert journal.transfers() == [moved]
    assert mover.step(inventory, "binance", "bybit", 20_000.0, NOW + 1) == []  # within 0.5 now


def test_transfer_fees_count_towards_the_daily_loss_and_stop_pairs_and_transfers() -> None:
    """Both assets drifted: the base transfer costs 4, which uses up a daily loss of 3, so the
    quote transfer is held back and no pair opens, though the books offer one."""
    inventory = Inventory(
        {"binance": Holdings(base=0.9, quote=900.0), "bybit": Holdings(base=0.1, quote=100.0)}
    )
    mover = Rebalancer(RebalanceRule(threshold=0.5, base_fee=0.0002, quote_fee=1.0), lambda t: None)
    limits = ArbLimits(quantity=0.05, max_notional_per_leg=500.0, daily_loss=3.0)
    d = ArbDesk(limits, inventory, PaperLegs(inventory), lambda p: None, spent=mover.cost_since)
    [moved] = mover.step(inventory, "binance", "bybit", 20_000.0, NOW, room=d.loss_room(NOW))
    assert (moved.asset, moved.cost_quote) == ("base", pytest.approx(4.0))
    assert mover.skipped == {"daily loss limit reached": 1}
    assert d.realized_today(NOW) == pytest.approx(-4.0)
    assert d.step({"binance": CHEAP, "bybit": RICH}, NOW) is None
    assert d.skipped == {"daily loss limit reached": 1}
    tomorrow = NOW + 86_400_000
    assert mover.step(inventory, "binance", "bybit", 1.0, tomorrow, room=d.loss_room(tomorrow))


@settings(max_examples=60, deadline=None)
@given(
    x=st.floats(0.0, 1_000.0),
    y=st.floats(0.0, 1_000.0),
    fee=st.floats(0.0, 5.0),
    threshold=st.floats(0.01, 1.0),
)
def test_a_transfer_evens_the_split_and_loses_exactly_its_fee(x, y, fee, threshold) -> None:
    inventory = Inventory({"a": Holdings(base=0, quote=x), "b": Holdings(base=0, quote=y)})
    before = split(inventory, "a", "b", "quote")
    moved = Rebalancer(RebalanceRule(threshold=threshold, quote_fee=fee), lambda t: None).step(
        inventory, "a", "b", 1.0, NOW
    )
    after = inventory.holdings["a"].quote, inventory.holdings["b"].quote
    if moved:
        assert before > threshold
        assert after[0] == pytest.approx(after[1], abs=1e-6)
        assert sum(after) == pytest.approx(x + y - fee, abs=1e-6)
    else:
        assert after == (x, y)


@pytest.mark.slow
def test_agent_arb_run_rebalances_drifted_inventory_and_pays_for_it(cli) -> None:
    import json

    args = ("--mode", "paper", "--fee-bps", "1,1", "--json", "--account", "rb")
    plain = json.loads(cli("agent-arb", "run", *args).stdout)
    moved = cli("agent-arb", "run", *args[:-2], "--account", "rb2", "--rebalance-at", "0.3")
    assert moved.returncode == 0, moved.stderr
    report = json.loads(moved.stdout)
    # Without transfers the desk runs out of base on one venue and stops pairing.
    assert plain["transfers"] == 0 and plain["skipped"]["no inventory or room for a pair"] > 0
    assert "no inventory or room for a pair" not in report["skipped"]
    assert report["pairs"] > plain["pairs"] and report["transfers"] > 0
    assert report["transfer_cost_quote"] > 0
