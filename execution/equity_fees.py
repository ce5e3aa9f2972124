"""What a US stock trade costs: the broker's commission (per share or per order, zero at the
commission-free brokers) on every fill, and on sales only the SEC Section 31 fee (a rate on
the dollars sold) and the FINRA Trading Activity Fee (per share sold, capped per trade). Each
regulatory fee is rounded up to the cent, as brokers pass it on.

Defaults are published rates: SEC $27.80 per million (fiscal 2025, Release 34-99973's successor
order; the SEC resets it each fiscal year and set it to $0.00 from 2025-05-14 once the year's
target was met), FINRA TAF $0.000166 per share with an $8.30 cap (FINRA Schedule A, 2024).
Set `equity_fees.*` in config when they change."""

from __future__ import annotations

import math

from pydantic import ConfigDict, Field

from core.config_model import ConfigModel
from execution.fees import Liquidity

CENT = 0.01


def _cents_up(amount: float) -> float:
    """Up to the next cent; a float product just above a cent boundary is not a cent more."""
    return math.ceil(round(amount / CENT, 6)) * CENT


class EquityFees(ConfigModel):
    """A fee function (quantity, price, liquidity) -> commission, plus `on_sale` for the
    regulatory fees a sale adds; the simulator charges both."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    commission_per_share: float = Field(0.0, ge=0)
    commission_per_order: float = Field(0.0, ge=0)
    sec_fee_per_million: float = Field(27.80, ge=0, description="SEC Section 31, $ per $1M sold")
    taf_per_share: float = Field(0.000166, ge=0, description="FINRA TAF, $ per share sold")
    taf_cap: float = Field(8.30, ge=0, description="FINRA TAF cap per trade")

    def __call__(self, quantity: float, price: float, liquidity: Liquidity) -> float:
        del price, liquidity  # a stock commission is per share or per order, not on notional
        return self.commission_per_share * quantity + self.commission_per_order

    def sec_fee(self, quantity: float, price: float) -> float:
        return _cents_up(quantity * price * self.sec_fee_per_million / 1_000_000)

    def taf(self, quantity: float) -> float:
        return _cents_up(min(quantity * self.taf_per_share, self.taf_cap))

    def on_sale(self, quantity: float, price: float) -> float:
        """The regulatory fees on selling `quantity` shares at `price`."""
        return self.sec_fee(quantity, price) + self.taf(quantity)


def sale_fees(fees: object, quantity: float, price: float) -> float:
    """What a sale adds to a fill's fee under `fees`: the regulatory fees for equities, nothing
    for a crypto fee schedule."""
    return fees.on_sale(quantity, price) if isinstance(fees, EquityFees) else 0.0
