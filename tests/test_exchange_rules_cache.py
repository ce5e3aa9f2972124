"""Real exchange rules, cached in the store: Binance's exchangeInfo (a real 2021 capture, served
on loopback) is fetched once a day, kept in SQLite, and judged by the gate; offline, the stored
rules serve however old, and with none stored the bundled capture does, said once."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from loopback_binance import EXCHANGE_INFO_2021, LoopbackBinance
from test_risk_gate import NOW, market, portfolio, run, signal, vetoed_with

from config.settings import BinanceSettings
from core.errors import UserError
from market.binance_rest import BinanceRestClient
from market.models import SymbolRules
from market.rules_cache import DAY_MS, exchange_rules
from risk import Approved, ReasonCode
from store import Store, open_store
from store.exchange_rules import save_rules

INFO = "/api/v3/exchangeInfo"


@pytest.fixture
def server() -> Iterator[LoopbackBinance]:
    running = LoopbackBinance(exchange_info=EXCHANGE_INFO_2021).start()
    yield running
    running.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    yield opened
    opened.close()


def fetcher(url: str):
    def fetch(symbols: list[str]) -> dict[str, SymbolRules]:
        settings = BinanceSettings(base_url=url, max_retries=0)
        with BinanceRestClient(settings) as client:
            return client.exchange_info(symbols)

    return fetch


def requests(server: LoopbackBinance) -> int:
    return sum(1 for r in server.received if r.path == INFO)


def test_rules_are_fetched_once_a_day_and_kept_in_the_store(server, store) -> None:
    notes: list[str] = []
    fetch = fetcher(server.base_url)
    first = exchange_rules(store, "binance", ["BTCUSDT"], NOW, fetch, notes.append)
    assert first["BTCUSDT"].min_notional == Decimal("10")  # the venue's, not the bundled 5
    later = exchange_rules(store, "binance", ["BTCUSDT"], NOW + DAY_MS - 1, fetch, notes.append)
    assert later == first and requests(server) == 1
    exchange_rules(store, "binance", ["BTCUSDT"], NOW + DAY_MS, fetch, notes.append)
    assert requests(server) == 2 and notes == []


def test_offline_the_stored_rules_serve_however_old(server, store) -> None:
    exchange_rules(store, "binance", ["BTCUSDT"], NOW, fetcher(server.base_url), print)
    url = server.base_url
    server.stop()
    notes: list[str] = []
    stale = exchange_rules(
        store, "binance", ["BTCUSDT"], NOW + 9 * DAY_MS, fetcher(url), notes.append
    )
    assert stale["BTCUSDT"].min_notional == Decimal("10") and notes == []


def test_a_symbol_the_venue_does_not_list_is_an_error_naming_it_not_an_outage(
    server, store
) -> None:
    notes: list[str] = []
    with pytest.raises(UserError, match="NOPEUSDT"):
        exchange_rules(
            store, "binance", ["BTCUSDT", "NOPEUSDT"], NOW, fetcher(server.base_url), notes.append
        )
    assert notes == [] and requests(server) == 1  # no bundled rules stand in for it


def test_a_symbol_the_venue_stopped_listing_is_priced_by_its_last_stored_rules(
    server, store
) -> None:
    """A delisted coin's stored bars still backtest: its rules from when the venue listed it
    serve, as they would if the venue were unreachable."""
    listed = exchange_rules(store, "binance", ["BTCUSDT"], NOW, fetcher(server.base_url), print)
    save_rules(store, "binance", {"NOPEUSDT": listed["BTCUSDT"]}, NOW)  # listed back then
    later = NOW + 2 * DAY_MS
    rules = exchange_rules(
        store, "binance", ["BTCUSDT", "NOPEUSDT"], later, fetcher(server.base_url), print
    )
    assert set(rules) == {"BTCUSDT", "NOPEUSDT"} and requests(server) == 2


def test_with_nothing_stored_offline_uses_the_bundled_rules_with_one_notice(store) -> None:
    notes: list[str] = []
    rules = exchange_rules(store, "binance", ["BTCUSDT", "ETHUSDT"], NOW, None, notes.append)
    assert rules["BTCUSDT"].min_notional == Decimal("5")
    assert notes == [
        "notice: exchange rules for BTCUSDT, ETHUSDT are the bundled 2024-09-08 capture (offline)"
    ]


def test_the_gate_judges_min_notional_by_the_fetched_rules(server, store) -> None:
    fetched = exchange_rules(store, "binance", ["BTCUSDT"], NOW, fetcher(server.base_url), print)
    seven_usdt = signal(quantity=0.0001)  # 6.5 USDT at 65,000
    assert isinstance(run(seven_usdt), Approved)  # the bundled minNotional is 5
    verdict = run(seven_usdt, portfolio(), market(rules=fetched["BTCUSDT"]))
    vetoed_with(verdict, ReasonCode.MIN_NOTIONAL)
