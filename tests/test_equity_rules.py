"""Equity instruments and costs: the class of a symbol, the tick by price level, whole shares,
and the SEC Section 31 fee and FINRA TAF on a sale (and nothing on a buy)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from script_strategy import NO_COSTS, backtest, candles, order

from core.errors import UserError
from execution.equity_fees import EquityFees
from execution.fees import Liquidity
from market.instruments import AssetClass, equity_rules, parse_instrument, require_class
from risk.models import SignalAction


def test_a_sale_pays_the_sec_fee_on_dollars_and_the_taf_per_share() -> None:
    fees = EquityFees()
    # 1,000 shares at $150.00: SEC 150,000 x 27.80 / 1M = $4.17; TAF 1,000 x 0.000166 = $0.166
    # rounded up to $0.17.
    assert fees.sec_fee(1_000, 150.0) == pytest.approx(4.17)
    assert fees.taf(1_000) == pytest.approx(0.17)
    assert fees.on_sale(1_000, 150.0) == pytest.approx(4.34)
    # 100,000 shares: TAF would be $16.60, capped at $8.30.
    assert fees.taf(100_000) == pytest.approx(8.30)
    # One share at $10: each fee rounds up to a cent.
    assert fees.on_sale(1, 10.0) == pytest.approx(0.02)


def test_commission_is_per_share_plus_per_order_and_zero_by_default() -> None:
    assert EquityFees()(500, 100.0, Liquidity.TAKER) == 0.0
    priced = EquityFees(commission_per_share=0.005, commission_per_order=1.0)
    assert priced(200, 100.0, Liquidity.MAKER) == pytest.approx(2.0)


def test_a_backtest_charges_regulatory_fees_on_the_sale_only() -> None:
    frame = candles([(100, 100, 100, 100)] * 4)
    fees = EquityFees()
    buy = lambda ctx: order(ctx, SignalAction.BUY, quantity=10)  # noqa: E731
    sell = lambda ctx: order(ctx, SignalAction.CLOSE)  # noqa: E731
    result = backtest(
        {"EA": frame},
        {("EA", 0): [buy], ("EA", 1): [sell]},
        NO_COSTS,
        symbol_rules={"EA": equity_rules("EA", 100.0)},
        fee_fn=fees,
    )
    entry, exit_ = result.fills
    assert entry.fee == 0.0
    assert exit_.fee == pytest.approx(fees.sec_fee(10, 100.0) + fees.taf(10)) == pytest.approx(0.04)


@given(st.floats(min_value=0.0001, max_value=100_000, allow_nan=False))
def test_the_tick_is_a_penny_from_one_dollar_and_a_hundredth_of_it_below(price: float) -> None:
    tick = equity_rules("EA", price).tick_size
    assert tick == (Decimal("0.01") if price >= 1 else Decimal("0.0001"))


def test_whole_shares_unless_fractionable() -> None:
    assert equity_rules("EA", 200.0).floor_qty(Decimal("7.9")) == 7
    assert equity_rules("EA", 200.0, fractionable=True).floor_qty(Decimal("7.9")) == Decimal("7.9")
    assert equity_rules("EA", 200.0).quote_asset == "USD"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("goog", ("GOOG", AssetClass.EQUITY)),
        ("BRK.B", ("BRK.B", AssetClass.EQUITY)),
        ("GOOGL", ("GOOGL", AssetClass.EQUITY)),
        ("btcusdt", ("BTCUSDT", AssetClass.CRYPTO)),
        ("ETHBTC", ("ETHBTC", AssetClass.CRYPTO)),
    ],
)
def test_a_symbol_is_a_stock_or_a_crypto_pair(raw: str, expected: tuple) -> None:
    assert parse_instrument(raw) == expected


def test_a_stock_on_a_crypto_venue_is_refused_in_one_line() -> None:
    with pytest.raises(
        UserError, match="GOOG is a US stock; the binance venue trades crypto spot pairs only"
    ):
        require_class("GOOG", AssetClass.CRYPTO, "binance")
    with pytest.raises(UserError, match="BTCUSDT is a crypto pair"):
        require_class("BTCUSDT", AssetClass.EQUITY, "alpaca")
