"""The Binance order executor against a fake exchange on 127.0.0.1 that verifies signatures,
enforces the real filters and keeps orders: placement, idempotency after unknown outcomes,
rate limits, rejections, reconciliation, the live-mode guard and secret hygiene."""

# The loopback fixture is imported, so its name reappears as a test parameter.
# ruff: noqa: F811

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest
from loopback_exchange import (  # noqa: F401 (pytest fixture)
    API_KEY,
    API_SECRET,
    NO_SUCH_ORDER,
    ExchangeFault,
    LoopbackExchange,
    exchange,
)

from core.errors import UserError
from core.logging import HumanFormatter, Redactor
from execution.binance_executor import (
    LIVE_URL,
    TESTNET_URL,
    BinanceExecutor,
    BinanceKeyRefused,
    ExchangeRejected,
    OrderOutcomeUnknown,
    RuleBreach,
)
from execution.binance_signing import clock_offset_ms, sign, signed_query
from execution.signed_access import check_live_allowed
from market.binance_rest import BinanceBanned, BinanceUnavailable
from market.sample import sample_rules
from risk import (
    Approved,
    ApprovedOrder,
    MarketView,
    PortfolioView,
    RiskLimits,
    RiskState,
    SignalSource,
    TradeSignal,
    UnapprovedOrderError,
    assess,
    client_order_id,
)

NOW = 1_761_782_400_000  # the gate's clock; the exchange runs on the machine's
RULES = sample_rules()
ORDER = ("POST", "/api/v3/order")
QUERY = ("GET", "/api/v3/order")


def approve(decision_id: str, quantity: float = 0.001, **fields: Any) -> ApprovedOrder:
    """A real, sealed order from the risk gate (a classic strategy's BTCUSDT buy)."""
    signal = TradeSignal(
        decision_id=decision_id,
        source=SignalSource.STRATEGY,
        symbol="BTCUSDT",
        action=fields.pop("action", "buy"),
        quantity=quantity,
        created_ms=NOW,
        **fields,
    )
    portfolio = PortfolioView(
        cash=10_000.0, equity=10_000.0, peak_equity=10_000.0, day_start_equity=10_000.0
    )
    market = MarketView(
        symbol="BTCUSDT", last_price=65_000.0, data_time_ms=NOW, rules=RULES["BTCUSDT"]
    )
    verdict = assess(signal, portfolio, market, NOW, RiskLimits(), RiskState())
    assert isinstance(verdict, Approved), verdict
    return verdict.order


@pytest.fixture
def sleeps() -> list[float]:
    return []


def executor(exchange: LoopbackExchange, sleeps: list[float], **kw: Any) -> BinanceExecutor:
    return BinanceExecutor(
        kw.pop("api_key", API_KEY),
        kw.pop("api_secret", API_SECRET),
        base_url=exchange.base_url,
        sleep=sleeps.append,
        timeout_s=kw.pop("timeout_s", 2.0),
        **kw,
    )


# --- signing -----------------------------------------------------------------------------------

BINANCE_DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
BINANCE_DOC_TOTAL = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
    "&recvWindow=5000&timestamp=1499827319559"
)
BINANCE_DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def test_signing_reproduces_binances_documented_example() -> None:
    assert sign(BINANCE_DOC_TOTAL, BINANCE_DOC_SECRET) == BINANCE_DOC_SIGNATURE
    params = {
        "symbol": "LTCBTC",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "1",
        "price": "0.1",
    }
    query = signed_query(params, BINANCE_DOC_SECRET, timestamp_ms=1499827319559)
    assert query == f"{BINANCE_DOC_TOTAL}&signature={BINANCE_DOC_SIGNATURE}"


def test_clock_offset_takes_the_server_reading_at_the_round_trip_midpoint() -> None:
    assert clock_offset_ms(server_time_ms=10_400, sent_ms=10_000, received_ms=10_200) == 300


def test_a_skewed_local_clock_is_corrected_from_server_time(
    exchange: LoopbackExchange, sleeps: list[float]
) -> None:
    exchange.skew_ms = -90_000  # our clock is 90 s ahead: unsynced, Binance refuses with -1021
    with executor(exchange, sleeps) as ex:
        status = ex.submit(approve("dec-skew"))
        assert status.status == "FILLED"
        assert ex.clock_offset_ms is not None and abs(ex.clock_offset_ms + 90_000) < 1_000
    assert exchange.count(*ORDER) == 1


# --- placement ---------------------------------------------------------------------------------


def test_market_buy_fills_through_signed_rest(
    exchange: LoopbackExchange, sleeps: list[float]
) -> None:
    order = approve("dec-happy")
    with executor(exchange, sleeps) as ex:
        status = ex.submit(order)
    assert status.client_order_id == order.client_order_id == client_order_id("dec-happy")
    assert (status.symbol, status.status, status.side, status.order_type) == (
        "BTCUSDT",
        "FILLED",
        "BUY",
        "MARKET",
    )
    assert status.executed_qty == Decimal("0.001")
    assert status.cummulative_quote_qty == Decimal("65")
    assert status.average_price == Decimal("65000")
    [fill] = status.fills
    assert (fill.price, fill.qty, fill.commission, fill.commission_asset) == (
        Decimal("65000"),
        Decimal("0.001"),
        Decimal("0.000001"),
        "BTC",
    )
    [sent] = [r for r in exchange.received if (r.method, r.path) == ORDER]
    assert sent.api_key == API_KEY and exchange.bad_signatures == 0
    assert sent.params["quantity"] == "0.00100"  # a Decimal string on stepSize 0.00001
    assert sent.params["newClientOrderId"] == order.client_order_id
    assert sent.query.endswith(f"&signature={sent.params['signature']}")
    assert exchange.balance("USDT") == (Decimal("9935"), Decimal(0))
    assert exchange.balance("BTC") == (Decimal("0.000999"), Decimal(0))


def test_a_limit_order_sends_its_price_on_ticksize(
    exchange: LoopbackExchange, sleeps: list[float]
) -> None:
    order = approve("dec-limit", 0.01, order_type="limit", limit_price=60_000.0)
    with executor(exchange, sleeps) as ex:
        status = ex.submit(order)
    assert status.status == "NEW" and status.price == Decimal("60000")
    [sent] = [r for r in exchange.received if (r.method, r.path) == ORDER]
    assert (sent.params["price"], sent.params["timeInForce"]) == ("60000.00", "GTC")


def test_a_wrong_secret_is_refused_by_the_exchange_and_not_retried(
    exchange: LoopbackExchange, sleeps: list[float]
) -> None:
    """No order is at fault: a user error naming the key's variables, which ends a run."""
    ex = executor(exchange, sleeps, api_secret="not-the-secret-0123456789")
    with ex, pytest.raises(BinanceKeyRefused, match="BINANCE_API_SECRET") as caught:
        ex.submit(approve("dec-badsig"))
    assert isinstance(caught.value, UserError)
    assert (caught.value.code, caught.value.msg) == (
        -1022,
        "Signature for this request is not valid.",
    )
    assert exchange.count(*ORDER) == 1 and exchange.bad_signatures == 1
    assert exchange.orders == []


# --- idempotency after an unknown outcome ------------------------------------------------------

UNKNOWN_AFTER_ACCEPT = {
    "500": ExchangeFault(status=500, after_accept=True),
    "503": ExchangeFault(status=503, after_accept=True),
    "dropped": ExchangeFault(drop=True, after_accept=True),
    "reset": ExchangeFault(reset=True, after_accept=True),
    "timeout": ExchangeFault(delay_s=1.0, after_accept=True),
}


@pytest.mark.parametrize("fault", UNKNOWN_AFTER_ACCEPT.values(), ids=UNKNOWN_AFTER_ACCEPT.keys())
def test_an_order_accepted_before_a_failed_reply_is_found_not_duplicated(
    exchange: LoopbackExchange, sleeps: list[float], fault: ExchangeFault
) -> None:
    order = approve("dec-accepted")
    exchange.script(fault)
    with executor(exchange, sleeps, timeout_s=0.3) as ex:
        status = ex.submit(order)
    assert status.client_order_id == order.client_order_id
    assert status.status == "FILLED" and status.executed_qty == Decimal("0.001")
    assert len(exchange.orders_with(order.client_order_id)) == 1
    assert exchange.count(*ORDER) == 1  # queried, never resubmitted
    assert exchange.count(*QUERY) == 1
    assert exchange.balance("USDT")[0] == Decimal("9935")  # charged once


def test_an_order_the_exchange_never_accepted_is_resubmitted_once_with_the_same_id(
    exchange: LoopbackExchange, sleeps: list[float]
) -> None:
    order = approve("dec-lost")
    exchange.script(ExchangeFault(status=503))
    with executor(exchange, sleeps) as ex:
        status = ex.submit(order)
    assert status.status == "FILLED"
    posts = [r for r in exchange.received if (r.method, r.path) == ORDER]
    assert [p.params["newClientOrderId"] for p in posts] == [order.client_order_id] * 2
    trading = [(r.method, r.path) for r in exchange.received if r.path == "/api/v3/order"]
    assert trading == [ORDER, QUERY, QUERY, ORDER]  # absent twice before resubmitting
    assert len(exchange.orders_with(order.client_order_id)) == 1


def test_when_the_status_query_cannot_answer_nothing_is_resubmitted(
    exchange: LoopbackExchange, sleeps: list[float]
) -> None:
    order = approve("dec-dark")
    exchange.script(
        ExchangeFault(status=500, after_accept=True),
        *[ExchangeFault(method="GET", status=503) for _ in range(4)],
    )
    with executor(exchange, sleeps) as ex, pytest.raises(OrderOutcomeUnknown) as caught:
        ex.submit(order)
    assert caught.value.client_order_id == order.client_order_id
    assert "reconcile" in str(caught.value)
    assert exchange.count(*ORDER) == 1
    assert len(exchange.orders_with(order.client_order_id)) == 1


def test_an_order_a_lagging_query_misses_once_is_found_not_bought_twice(
    exchange: LoopbackExchange, sleeps: list[float]
) -> None:
    """The buy executed, its reply was lost, and the first status query lagged ("does not
    exist"): a resend then would have bought again under the reused id (Binance keeps ids
    unique among open orders only). The second query, a wait later, finds it."""
    order = approve("dec-lag-once")
    exchange.script(
        ExchangeFault(drop=True, after_accept=True),
        ExchangeFault(method="GET", status=400, body=NO_SUCH_ORDER),
    )
    with executor(exchange, sleeps) as ex:
        status = ex.submit(order)
    assert status.status == "FILLED"
    assert exchange.count(*ORDER) == 1 and exchange.count(*QUERY) == 2
    assert exchange.balance("USDT")[0] == Decimal("9935")  # charged once


def test_a_resend_refused_after_a_lost_reply_is_asked_about_not_booked_rejected(
    sleeps: list[float],
) -> None:
    """The first send executed, its reply was lost, and both status queries lagged ("does
    not exist"), so the order went again; Binance refused that (the first spent the cash).
    The refusal says nothing about the first send: the order is asked for again and found
    filled, never reported as rejected."""
    exchange = LoopbackExchange(balances={"USDT": "100", "BTC": "0"}).start()
    try:
        order = approve("dec-lagged")
        exchange.script(
            ExchangeFault(drop=True, after_accept=True),
            *[ExchangeFault(method="GET", status=400, body=NO_SUCH_ORDER)] * 2,
        )
        with executor(exchange, sleeps) as ex:
            status = ex.submit(order)
        assert status.status == "FILLED" and status.executed_qty == Decimal("0.001")
        assert exchange.count(*ORDER) == 2  # the resend, refused
        assert len(exchange.orders_with(order.client_order_id)) == 1
        assert exchange.balance("USDT")[0] == Decimal("35")  # charged once
    finally:
        exchange.stop()


def test_resubmitting_an_order_that_is_still_open_returns_it(
    exchange: LoopbackExchange, sleeps: list[float]
) -> None:
    """A restart that replays the same decision gets the open order back, not a second one."""
    order = approve("dec-replay", 0.01, order_type="limit", limit_price=60_000.0)
    with executor(exchange, sleeps) as ex:
        first = ex.submit(order)
    with executor(exchange, sleeps) as restarted:
        again = restarted.submit(order)
    assert again.order_id == first.order_id and again.status == "NEW"
    assert len(exchange.orders_with(order.client_order_id)) == 1
    assert exchange.balance("USDT") == (Decimal("9400"), Decimal("600"))


# --- rate limits and clock -----------------------------------------------------------------------


def test_a_429_waits_for_retry_after_then_places_the_order(
    exchange: LoopbackExchange, sleeps: list[float]
) -> None:
    exchange.script(ExchangeFault(status=429, headers={"Retry-After": "7"}))
    with executor(exchange, sleeps) as ex:
        status = ex.submit(approve("dec-429"))
    assert status.status == "FILLED"
    assert sleeps == [7.0]
    assert exchange.count(*ORDER) == 2 and len(exchange.orders) == 1


def test_a_retry_after_beyond_the_cap_gives_up_without_waiting(
    exchange: LoopbackExchange, sleeps: list[float]
) -> None:
    exchange.script(ExchangeFault(status=429, headers={"Retry-After": "3600"}))
    ex = executor(exchange, sleeps, max_retry_after_s=30)
    with ex, pytest.raises(BinanceUnavailable, match="3600 s, more than the 30 s cap"):
        ex.submit(approve("dec-429-long"))
    assert sleeps == [] and exchange.count(*ORDER) == 1 and exchange.orders == []


def test_an_ip_ban_stops_every_request_until_it_ends(
    exchange: LoopbackExchange, sleeps: list[float]
) -> None:
    exchange.script(ExchangeFault(status=418, headers={"Retry-After": "600"}))
    with executor(exchange, sleeps) as ex:
        with pytest.raises(BinanceBanned):
            ex.submit(approve("dec-418"))
        sent = exchange.count()
        with pytest.raises(BinanceBanned):
            ex.balances()
    assert exchange.count() == sent  # the second call never left the machine
    assert exchange.orders == []


def test_a_timestamp_outside_recv_window_resyncs_the_clock_and_places(
    exchange: LoopbackExchange, sleeps: list[float]
) -> None:
    with executor(exchange, sleeps) as ex:
        ex.sync_time()
        exchange.skew_ms = 30_000  # the exchange's clock jumps: our stamps are now too old
        status = ex.submit(approve("dec-1021"))
    assert status.status == "FILLED"
    assert exchange.count("GET", "/api/v3/time") == 2
    assert exchange.count(*ORDER) == 2 and len(exchange.orders) == 1


# --- rejections ----------------------------------------------------------------------------------


def test_insufficient_balance_is_a_typed_rejection_never_retried(sleeps: list[float]) -> None:
    exchange = LoopbackExchange(balances={"USDT": "10", "BTC": "0"}).start()
    try:
        with executor(exchange, sleeps) as ex, pytest.raises(ExchangeRejected) as caught:
            ex.submit(approve("dec-poor"))
    finally:
        exchange.stop()
    assert (caught.value.code, caught.value.msg) == (
        -2010,
        "Account has insufficient balance for requested action.",
    )
    assert exchange.count(*ORDER) == 1 and exchange.orders == []


def test_an_exchange_filter_failure_is_a_typed_rejection_never_retried(
    exchange: LoopbackExchange, sleeps: list[float]
) -> None:
    exchange.prices["BTCUSDT"] = Decimal("3000")  # the market fell: 0.001 BTC is now 3 USDT
    with executor(exchange, sleeps) as ex, pytest.raises(ExchangeRejected) as caught:
        ex.submit(approve("dec-filter"), reference_price=Decimal("65000"))
    assert (caught.value.code, caught.value.msg) == (-1013, "Filter failure: NOTIONAL")
    assert exchange.count(*ORDER) == 1 and exchange.orders == []


BTC = RULES["BTCUSDT"]
BREACHES = {
    "below minNotional": (
        {"min_notional": Decimal("100")},
        {"quantity": 0.001},
        "MIN_NOTIONAL",
    ),
    "off stepSize": ({"step_size": Decimal("0.001")}, {"quantity": 0.0015}, "STEP_SIZE"),
    "off tickSize": (
        {"tick_size": Decimal("1")},
        {"quantity": 0.001, "order_type": "limit", "limit_price": 64_000.5},
        "TICK_SIZE",
    ),
}


@pytest.mark.parametrize(("venue", "signal", "code"), BREACHES.values(), ids=BREACHES.keys())
def test_a_rule_breach_is_rejected_before_any_request(
    exchange: LoopbackExchange,
    sleeps: list[float],
    venue: dict[str, Decimal],
    signal: dict[str, Any],
    code: str,
) -> None:
    """The gate saw the bundled filters; the venue's own (stricter) filters still bind."""
    order = approve(f"dec-breach-{code}", signal.pop("quantity"), **signal)
    rules = {"BTCUSDT": BTC.model_copy(update=venue)}
    with executor(exchange, sleeps, rules=rules) as ex, pytest.raises(RuleBreach) as caught:
        ex.submit(order, reference_price=Decimal("65000"))
    assert caught.value.code == code
    assert exchange.count() == 0


def test_a_market_order_is_checked_at_binances_average_price(
    exchange: LoopbackExchange, sleeps: list[float]
) -> None:
    exchange.prices["BTCUSDT"] = Decimal("3000")
    with executor(exchange, sleeps) as ex, pytest.raises(RuleBreach) as caught:
        ex.submit(approve("dec-avg"))
    assert caught.value.code == "MIN_NOTIONAL"
    assert exchange.count("GET", "/api/v3/avgPrice") == 1 and exchange.count(*ORDER) == 0


def test_only_orders_sealed_by_the_gate_are_accepted(
    exchange: LoopbackExchange, sleeps: list[float]
) -> None:
    real = approve("dec-real")
    forged = ApprovedOrder(**{**real.model_dump(), "seal": "0" * 64})
    altered = real.model_copy(update={"quantity": Decimal("1")})
    proposal = TradeSignal(
        decision_id="dec-raw",
        source=SignalSource.AI,
        symbol="BTCUSDT",
        action="buy",
        quantity=1.0,
        created_ms=NOW,
    )
    with executor(exchange, sleeps, rules=RULES) as ex:
        for order in (forged, altered, proposal):
            with pytest.raises(UnapprovedOrderError):
                ex.submit(order, reference_price=Decimal("65000"))
    assert exchange.count() == 0


# --- reconciliation and cancels ------------------------------------------------------------------


def test_reconcile_returns_the_open_orders_and_balances_the_exchange_holds(
    sleeps: list[float],
) -> None:
    exchange = LoopbackExchange(balances={"USDT": "10000", "BTC": "0.5", "ETH": "0"}).start()
    try:
        resting = approve("dec-rest", 0.01, order_type="limit", limit_price=60_000.0)
        with executor(exchange, sleeps) as ex:
            ex.submit(approve("dec-filled"))
            ex.submit(resting)
        with executor(exchange, sleeps) as restarted:
            snapshot = restarted.reconcile()
            [open_order] = snapshot.open_orders
            assert open_order.client_order_id == resting.client_order_id
            assert (open_order.status, open_order.price, open_order.orig_qty) == (
                "NEW",
                Decimal("60000"),
                Decimal("0.01"),
            )
            assert set(snapshot.balances) == {"USDT", "BTC"}  # zero ETH left out
            usdt, btc = snapshot.balances["USDT"], snapshot.balances["BTC"]
            assert (usdt.free, usdt.locked) == (Decimal("9335"), Decimal("600"))
            assert btc.total == Decimal("0.500999")
            assert snapshot.mode == "testnet"
            assert abs(snapshot.server_time_ms - exchange.now_ms()) < 5_000

            cancelled = restarted.cancel_order("BTCUSDT", resting.client_order_id)
            assert (cancelled.client_order_id, cancelled.status) == (
                resting.client_order_id,
                "CANCELED",
            )
            assert restarted.open_orders("BTCUSDT") == []
            assert restarted.balances()["USDT"].free == Decimal("9935")
            # A second cancel (say, a retry) reports the order as it ended.
            assert restarted.cancel_order("BTCUSDT", resting.client_order_id).status == "CANCELED"
    finally:
        exchange.stop()


# --- modes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", [{}, {"LIVE_TRADING_CONFIRM": "no"}, {"LIVE_TRADING_CONFIRM": ""}])
def test_live_trading_needs_the_confirmation_variable(env: dict[str, str]) -> None:
    with pytest.raises(UserError, match="live trading needs LIVE_TRADING_CONFIRM=yes") as caught:
        check_live_allowed("live", env)
    assert caught.value.exit_code == 2


def test_confirmed_live_and_the_safe_modes_are_allowed() -> None:
    check_live_allowed("live", {"LIVE_TRADING_CONFIRM": "yes"})
    check_live_allowed("testnet", {})
    check_live_allowed("paper", {})
    with pytest.raises(UserError, match="unknown trading mode 'real'"):
        check_live_allowed("real", {"LIVE_TRADING_CONFIRM": "yes"})


def test_the_executor_is_testnet_unless_live_is_confirmed() -> None:
    assert BinanceExecutor(API_KEY, API_SECRET).base_url == TESTNET_URL
    with pytest.raises(UserError, match="LIVE_TRADING_CONFIRM=yes"):
        BinanceExecutor(API_KEY, API_SECRET, live=True)
    with pytest.raises(UserError, match=r"testnet mode refuses https://api\.binance\.com"):
        BinanceExecutor(API_KEY, API_SECRET, base_url="https://api.binance.com")
    live = BinanceExecutor(API_KEY, API_SECRET, live=True, live_confirmed=True)
    assert (live.mode, live.base_url) == ("live", LIVE_URL)
    with pytest.raises(UserError, match="BINANCE_API_KEY and BINANCE_API_SECRET"):
        BinanceExecutor("", None)


# --- secrets -------------------------------------------------------------------------------------


def _chain(exc: BaseException | None) -> list[str]:
    texts: list[str] = []
    while exc is not None:
        texts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    return texts


def test_secrets_never_reach_logs_or_errors(
    exchange: LoopbackExchange, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    wrong_secret = "planted-wrong-secret-9f8e7d6c5b4a"
    errors: list[str] = []
    caplog.set_level(logging.DEBUG)
    with executor(exchange, sleeps, timeout_s=0.3) as ex:
        errors.append(repr(ex))
        ex.submit(approve("dec-s1"))
        exchange.script(ExchangeFault(reset=True, after_accept=True))
        ex.submit(approve("dec-s2"))
        exchange.script(
            ExchangeFault(delay_s=1.0, after_accept=True),
            *[ExchangeFault(method="GET", status=500) for _ in range(4)],
        )
        with pytest.raises(OrderOutcomeUnknown) as unknown:
            ex.submit(approve("dec-s3"))
        errors += _chain(unknown.value)
    with executor(exchange, sleeps, api_secret=wrong_secret) as ex:
        with pytest.raises(BinanceKeyRefused) as rejected:
            ex.submit(approve("dec-s4"))
        errors += _chain(rejected.value)
    signatures = [r.params["signature"] for r in exchange.received if "signature" in r.params]
    planted = [API_KEY, API_SECRET, wrong_secret, *signatures]
    assert len(signatures) >= 6
    # The project's own log lines carry none, even before the formatter's redaction...
    own = [r.getMessage() for r in caplog.records if r.name.startswith("execution")]
    assert any("outcome unknown" in line for line in own)
    # ...and every line, httpx's included, leaves the app's formatter without any.
    formatter = HumanFormatter(Redactor())
    shown = [formatter.format(r) for r in caplog.records]
    for text in own + shown + errors:
        for secret in planted:
            assert secret not in text, f"a secret leaked into: {text[:120]}"
