"""Signed Bybit spot trading behind the loop's venue: Bybit's signing rule, orders that fill
and are booked with their fees, a lost reply settled by asking, the key-permission check, and
`agent-trade --feed bybit --mode testnet` against loopback servers built from real shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from loopback_bybit_trading import API_KEY, API_SECRET, BybitExchange, TradeFault
from test_binance_executor import approve

from core.errors import UserError
from execution.binance_venue import BinanceVenue
from execution.paper import GrowingFeed
from venues.bybit.key_info import check_bybit_key
from venues.bybit.rest import BybitAuthError
from venues.bybit.signing import get_payload, post_payload, sign
from venues.bybit.trading import TESTNET_URL, BybitExecutor, BybitOrderRejected

CREATE = ("POST", "/v5/order/create")


@pytest.fixture
def exchange() -> Iterator[BybitExchange]:
    with BybitExchange() as running:
        yield running


def executor(
    exchange: BybitExchange, sleeps: list[float] | None = None, **kw: Any
) -> BybitExecutor:
    return BybitExecutor(
        kw.pop("api_key", API_KEY),
        kw.pop("api_secret", API_SECRET),
        base_url=exchange.url,
        sleep=(sleeps if sleeps is not None else []).append,
        timeout_s=2.0,
        **kw,
    )


# --- signing ------------------------------------------------------------------------------------


# Bybit's rule (v5 "Integration guidance": timestamp + api_key + recv_window + payload, HMAC-SHA256,
# hex); the expected values were computed with `openssl dgst -sha256 -hmac`, not with our code.
def test_signing_follows_bybits_rule_for_a_query_and_a_json_body() -> None:
    query = get_payload({"category": "spot", "symbol": "BTCUSDT", "orderLinkId": "agt-0"})
    assert query == "category=spot&symbol=BTCUSDT&orderLinkId=agt-0"
    assert (
        sign(
            query,
            api_key="XXXXXXXXXX",
            secret="YYYYYYYYYY",
            timestamp_ms=1658385579423,
            recv_window_ms=5000,
        )
        == "2cc58b1bc99757469a6c7135733161ba9d78e374b9c18373fecb3efcbb80b654"
    )
    body = post_payload(
        {
            "category": "spot",
            "symbol": "BTCUSDT",
            "side": "Buy",
            "orderType": "Market",
            "qty": "0.001",
            "marketUnit": "baseCoin",
            "orderLinkId": "agt-0",
        }
    )
    assert (
        sign(
            body,
            api_key="XXXXXXXXXX",
            secret="YYYYYYYYYY",
            timestamp_ms=1658384314791,
            recv_window_ms=5000,
        )
        == "9e236fa405b592af0fe22827a2ab88248505bd8909ed5dd20050d8ae7bf7afcb"
    )


# --- orders -------------------------------------------------------------------------------------


def test_a_market_buy_fills_and_the_venue_books_the_fee_taken_in_btc(
    exchange: BybitExchange,
) -> None:
    trader = executor(exchange)
    rules = {"BTCUSDT": trader.symbol_rules("BTCUSDT")}
    venue = BinanceVenue(trader, rules, GrowingFeed(["BTCUSDT"]), cash=10_000.0, exchange="Bybit")
    order = approve("by-1", quantity=0.01)
    answer = venue.execute(order)
    assert answer["status"] == "filled" and Decimal(answer["executed_qty"]) == Decimal("0.01")
    [placed] = exchange.orders_with(order.client_order_id)
    assert placed["side"] == "Buy" and Decimal(placed["qty"]) == Decimal("0.01")
    # Bybit keeps 0.1% of the bought BTC: the ledger holds what the wallet holds.
    assert venue.ledger.quantity("BTCUSDT") == pytest.approx(float(exchange.wallet["BTC"]))
    assert venue.ledger.cash == pytest.approx(float(exchange.wallet["USDT"]))
    assert exchange.wallet["BTC"] == Decimal("0.00999")
    again = venue.execute(order)
    assert again["status"] == "duplicate" and exchange.count(*CREATE) == 1


def test_a_lost_reply_is_settled_by_asking_bybit_never_by_sending_again(
    exchange: BybitExchange,
) -> None:
    exchange.faults.append(TradeFault(status=502, after_accept=True))
    sleeps: list[float] = []
    order = approve("by-2")
    status = executor(exchange, sleeps).submit(order, reference_price=110_000.0)
    assert status.status == "FILLED" and status.fills[0].commission_asset == "BTC"
    assert len(exchange.orders_with(order.client_order_id)) == 1
    assert exchange.count(*CREATE) == 1 and sleeps  # it waited, asked, and did not resend


def test_an_order_bybit_never_took_is_sent_once_more_under_the_same_link_id(
    exchange: BybitExchange,
) -> None:
    exchange.faults.append(TradeFault(status=502))
    order = approve("by-3")
    status = executor(exchange).submit(order, reference_price=110_000.0)
    assert status.status == "FILLED" and exchange.count(*CREATE) == 2
    assert len(exchange.orders_with(order.client_order_id)) == 1


def test_a_server_error_on_every_attempt_leaves_the_outcome_unknown_for_reconciliation(
    exchange: BybitExchange,
) -> None:
    exchange.faults.extend(TradeFault(ret_code=10016) for _ in range(3))
    trader = executor(exchange, max_attempts=3)
    venue = BinanceVenue(
        trader, {"BTCUSDT": trader.symbol_rules("BTCUSDT")}, GrowingFeed(["BTCUSDT"]),
        cash=10_000.0, exchange="Bybit",
    )  # fmt: skip
    answer = venue.execute(approve("by-4"))
    assert answer["status"] == "unknown" and "reconcile" in answer["reason"]
    assert exchange.count(*CREATE) == 3 and not exchange.orders


def test_a_wrong_secret_is_refused_and_never_retried(exchange: BybitExchange) -> None:
    with pytest.raises(BybitAuthError, match="retCode 10004"):
        executor(exchange, api_secret="wrong-secret-0000").submit(
            approve("by-5"), reference_price=110_000.0
        )
    assert exchange.count(*CREATE) == 1


def test_bybits_own_refusal_is_a_rejection_and_a_filter_breach_is_never_sent(
    exchange: BybitExchange,
) -> None:
    exchange.faults.append(TradeFault(ret_code=170131))
    trader = executor(exchange)
    with pytest.raises(BybitOrderRejected, match="retCode 170131"):
        trader.submit(approve("by-6"), reference_price=110_000.0)
    with pytest.raises(BybitOrderRejected, match="breaks Bybit's filters"):
        trader.submit(approve("by-7"), reference_price=1.0)  # 0.001 USDT: under minOrderAmt
    assert exchange.count(*CREATE) == 1


def test_an_order_bybit_refuses_is_booked_rejected_and_the_next_one_goes(
    exchange: BybitExchange,
) -> None:
    """Bybit refuses a buy (retCode 170131, insufficient balance): the venue books the order as
    rejected with Bybit's reason, as it books Binance's refusals, rather than raising out of an
    unattended loop with the order left 'accepted', which held every later order of the symbol
    back as an outcome not known yet."""
    trader = executor(exchange)
    rules = {"BTCUSDT": trader.symbol_rules("BTCUSDT")}
    venue = BinanceVenue(trader, rules, GrowingFeed(["BTCUSDT"]), cash=10_000.0, exchange="Bybit")
    exchange.faults.append(TradeFault(ret_code=170131))
    refused = approve("by-r1", quantity=0.01)
    answer = venue.execute(refused)
    assert answer["status"] == "rejected" and "retCode 170131" in answer["reason"]
    assert venue.orders[refused.client_order_id].status == "rejected"
    assert venue.execute(approve("by-r2", quantity=0.01))["status"] == "filled"
    assert exchange.count(*CREATE) == 2


def test_a_key_bybit_refuses_mid_run_stops_the_run_instead_of_rejecting_every_order(
    exchange: BybitExchange,
) -> None:
    """An order Bybit refuses is booked rejected and the loop goes on; a key it refuses is not
    one order's problem: every order after it, exits included, would be refused too."""
    trader = executor(exchange)
    rules = {"BTCUSDT": trader.symbol_rules("BTCUSDT")}
    venue = BinanceVenue(trader, rules, GrowingFeed(["BTCUSDT"]), cash=10_000.0, exchange="Bybit")
    exchange.secret = "rotated"  # the key is revoked while the loop runs
    with pytest.raises(BybitAuthError, match="10004"):
        venue.execute(approve("by-k1", quantity=0.01))
    assert exchange.count(*CREATE) == 1


def test_reconcile_reports_the_wallet_and_a_ledger_bybit_cannot_back(
    exchange: BybitExchange,
) -> None:
    trader = executor(exchange)
    snapshot = trader.reconcile()
    assert snapshot.balances["USDT"].total == Decimal("10000") and snapshot.open_orders == []
    venue = BinanceVenue(
        trader, {"BTCUSDT": trader.symbol_rules("BTCUSDT")}, GrowingFeed(["BTCUSDT"]),
        cash=20_000.0, exchange="Bybit",
    )  # fmt: skip
    assert venue.reconcile() == ["the ledger has 20,000.00 USDT but Bybit holds 10000"]


# --- safety -------------------------------------------------------------------------------------


def test_testnet_is_the_default_and_live_needs_confirmation() -> None:
    assert BybitExecutor(API_KEY, API_SECRET).base_url == TESTNET_URL
    with pytest.raises(UserError, match=r"testnet mode refuses https://api\.bybit\.com"):
        BybitExecutor(API_KEY, API_SECRET, base_url="https://api.bybit.com")
    with pytest.raises(UserError, match="LIVE_TRADING_CONFIRM=yes"):
        BybitExecutor(API_KEY, API_SECRET, live=True)
    with pytest.raises(UserError, match="BYBIT_API_KEY"):
        BybitExecutor(None, None)


@pytest.mark.parametrize(
    ("permissions", "read_only", "refusal"),
    [
        ({"Spot": ["SpotTrade"], "Wallet": ["AccountTransfer", "Withdraw"]}, 0, "Withdraw is on"),
        ({"Spot": ["SpotTrade"], "Wallet": ["SubMemberTransfer"]}, 0, "SubMemberTransfer is on"),
        ({"Spot": [], "ContractTrade": ["Order"]}, 0, "SpotTrade is off"),
        ({"Spot": ["SpotTrade"]}, 1, "read-only"),
    ],
)
def test_a_key_that_can_move_funds_or_cannot_trade_spot_is_refused(
    permissions: dict[str, list[str]], read_only: int, refusal: str
) -> None:
    with (
        BybitExchange(permissions=permissions, read_only=read_only) as exchange,
        pytest.raises(UserError, match=refusal) as caught,
    ):
        check_bybit_key(executor(exchange).api_key_info, "testnet", print)
    assert "\n" not in str(caught.value)


def test_a_trade_only_key_passes_and_an_unbound_one_is_warned_about() -> None:
    said: list[str] = []
    with BybitExchange(ips=["*"]) as exchange:
        check_bybit_key(executor(exchange).api_key_info, "testnet", said.append)
    assert said[0].startswith("warning: the Bybit API key is bound to no IP")
    assert said[1] == "key permissions: no IP restriction; Spot: SpotTrade; Wallet: AccountTransfer"


# --- agent-trade ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_agent_trade_on_bybit_testnet_checks_the_key_and_reconciles(cli) -> None:
    from loopback_bybit import BybitRest, BybitSocket, SocketThread

    with BybitRest() as rest, BybitExchange() as exchange, SocketThread(BybitSocket()) as socket:
        env = {
            "AGENT_BYBIT__BASE_URL": rest.url,
            "AGENT_BYBIT__STREAM_URL": socket.url,
            "AGENT_BYBIT__TRADE_URL": exchange.url,
            "BYBIT_API_KEY": API_KEY,
            "BYBIT_API_SECRET": API_SECRET,
        }
        args = ("--feed", "bybit", "--mode", "testnet", "--strategy", "sma_cross")
        run = cli("agent-trade", *args, "--symbol", "BTCUSDT", "--account", "bt",
                  "--cash", "10000", "--max-bars", "1", env=env)  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "key permissions: bound to 1 IP(s); Spot: SpotTrade" in run.stderr
        assert "orders: Bybit testnet, reconciled (0 known orders)" in run.stderr
        assert exchange.count("GET", "/v5/account/wallet-balance") == 1
        exchange.key_info["permissions"] = {"Spot": ["SpotTrade"], "Wallet": ["Withdraw"]}
        refused = cli(
            "agent-trade",
            *args,
            "--symbol",
            "BTCUSDT",
            "--account",
            "bt2",
            "--max-bars",
            "1",
            env=env,
        )
    assert refused.returncode == 2
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: refusing Bybit testnet trading with this API key: Wallet permission Withdraw"
        )
    )
    assert API_SECRET not in run.stderr + refused.stderr
    shown = cli("agent-trade", "status", "--account", "bt", "--json", env=env)
    key = json.loads(shown.stdout)["key_permissions"]
    assert key["exchange"] == "bybit" and key["permissions"]["Spot"] == ["SpotTrade"]
    assert key["read_only"] is False
    text = cli("agent-trade", "status", "--account", "bt", env=env).stdout
    assert "key       Bybit bound to 1 IP(s); Spot: SpotTrade" in text
    assert API_KEY not in shown.stdout + text


def test_agent_trade_on_bybit_testnet_needs_keys(cli) -> None:
    from loopback_bybit import BybitRest

    with BybitRest() as rest:
        env = {"AGENT_BYBIT__BASE_URL": rest.url}
        run = cli("agent-trade", "--feed", "bybit", "--mode", "testnet", "--symbol", "BTCUSDT",
                  "--max-bars", "1", env=env)  # fmt: skip
    assert run.returncode == 2 and "BYBIT_API_KEY and BYBIT_API_SECRET" in run.stderr
