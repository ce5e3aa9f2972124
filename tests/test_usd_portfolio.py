"""One portfolio across venues in USD: a crypto account's exposure limit counts a stock
account's positions, USDT counting as USD at `portfolio.usdt_usd`; a limit that the stock and
the crypto position break together is vetoed, and the rate changes the verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from script_strategy import rules
from test_corporate_actions import _yahoo

from risk.gate import assess
from risk.limits import RiskLimits, SourceLimits
from risk.models import (
    Approved,
    MarketView,
    PortfolioView,
    ReasonCode,
    SignalAction,
    SignalSource,
    TradeSignal,
    Vetoed,
)
from risk.state import RiskState
from risk.usd import VenueBook, elsewhere

NOW = 1_761_711_720_000
HALF = RiskLimits(strategy=SourceLimits(max_exposure_pct=0.5, max_position_pct=1.0,
                                        max_order_notional=None, risk_per_trade_pct=None,
                                        atr_stop_multiple=None, min_confidence=0.0,
                                        require_stop_loss=False, fat_finger_pct=0.1))  # fmt: skip
STOCKS = VenueBook(venue="stocks", quote="USD", equity=10_000.0, exposure=10_000.0)


def _buy() -> TradeSignal:
    return TradeSignal(decision_id="d1", source=SignalSource.STRATEGY, symbol="BTCUSDT",
                       action=SignalAction.BUY, size_pct=1.0, created_ms=NOW)  # fmt: skip


def _judge(books: list[VenueBook], usdt_usd: float):
    view = PortfolioView(
        cash=10_000.0,
        equity=10_000.0,
        peak_equity=10_000.0,
        day_start_equity=10_000.0,
        elsewhere=elsewhere(books, "USDT", usdt_usd) if books else None,
    )
    market = MarketView(symbol="BTCUSDT", last_price=100.0, data_time_ms=NOW, rules=rules())
    return assess(_buy(), view, market, NOW, HALF, RiskState())


def test_a_stock_position_and_a_crypto_buy_together_break_the_limit_and_the_rate_decides() -> None:
    alone = _judge([], 1.0)
    assert isinstance(alone, Approved)  # half of this account's 10,000 USDT
    assert float(alone.order.quantity) * 100 == pytest.approx(5_000, rel=1e-3)
    # 10,000 USD of stock at 1 USD per USDT: half of 20,000 is already held.
    together = _judge([STOCKS], 1.0)
    assert isinstance(together, Vetoed)
    assert [r.code for r in together.reasons] == [ReasonCode.MAX_EXPOSURE]
    assert "this account, stocks" in together.reasons[0].message
    # At 1.25 USD per USDT the stock is 8,000 USDT: 0.5 × 18,000 − 8,000 leaves 1,000 USDT.
    dearer = _judge([STOCKS], 1.25)
    assert isinstance(dearer, Approved)
    assert float(dearer.order.quantity) * 100 == pytest.approx(1_000, rel=1e-3)


@given(
    rate=st.floats(0.2, 5.0),
    equity=st.floats(1.0, 1e7),
    exposure=st.floats(0.0, 1e7),
)
def test_usd_books_convert_through_usd_and_back(
    rate: float, equity: float, exposure: float
) -> None:
    """A USDT account seen from a USD account and back again is the same account."""
    book = VenueBook(venue="crypto", quote="USDT", equity=equity, exposure=exposure)
    in_usd = elsewhere([book], "USD", rate)
    assert in_usd.equity == pytest.approx(equity * rate)
    back = VenueBook(venue="c", quote="USD", equity=in_usd.equity, exposure=in_usd.exposure)
    assert elsewhere([back], "USDT", rate).exposure == pytest.approx(exposure)


def test_a_quote_with_no_usd_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="no USD rate for EUR"):
        elsewhere([VenueBook(venue="e", quote="EUR", equity=1.0, exposure=0.0)], "USDT", 1.0)


@pytest.mark.slow
def test_agent_trade_counts_a_stock_account_in_a_crypto_accounts_exposure(cli, tmp_path) -> None:
    """A stock account fully invested (USD), then a crypto account in the same portfolio: at 1
    USD per USDT its buys break the 50% exposure limit together with the stock; at 1.25 they
    fit. Status and agent-config show the rate."""
    closes = 100 + 0.5 * np.arange(30)
    data = tmp_path / "xyz.csv"
    _yahoo(data, closes, np.zeros(30))
    stock = cli("agent-trade", "--feed", "replay", "--speed", "max", "--strategy", "momentum",
                "--lookback", "1", "--symbol", "XYZ", "--data", str(data), "--account", "xyz")  # fmt: skip
    assert stock.returncode == 0, stock.stderr
    half = {"AGENT_RISK__STRATEGY__MAX_EXPOSURE_PCT": "0.5"}
    for account, rate, vetoed in (("btc", "1.0", True), ("btc2", "1.25", False)):
        env = {**half, "AGENT_PORTFOLIO__USDT_USD": rate,
               "AGENT_PORTFOLIO__ACCOUNTS": json.dumps(["xyz", account])}  # fmt: skip
        run = cli("agent-trade", "--feed", "replay", "--speed", "max", "--strategy",
                  "sma_cross", "--symbol", "BTCUSDT", "--account", account, "--max-bars", "400",
                  env=env)  # fmt: skip
        assert run.returncode == 0, run.stderr
        shown = json.loads(cli("agent-trade", "status", "--account", account, "--json",
                               env=env).stdout)  # fmt: skip
        assert shown["portfolio"] == {"usdt_usd": float(rate), "accounts": ["xyz", account]}
        assert ("MAX_EXPOSURE" in shown["vetoes"]) is vetoed
        assert (shown["fills"] > 0) is not vetoed
    text = cli("agent-trade", "status", "--account", "btc", env=env).stdout
    assert "portfolio USDT = 1.25 USD (portfolio.usdt_usd)" in text
    config = cli("agent-config", "show", env={"AGENT_PORTFOLIO__USDT_USD": "0.99"}).stdout
    assert any(line.split()[:2] == ["portfolio.usdt_usd", "0.99"] for line in config.splitlines())
    bad = cli("agent-config", "show", env={"AGENT_PORTFOLIO__USDT_USD": "0"})
    assert bad.returncode == 2 and "portfolio.usdt_usd" in bad.stderr
