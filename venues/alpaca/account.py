"""An Alpaca account as the trading API shows it, and what `agent-trade status` keeps of it:
plain models, so reading the status loads no HTTP client."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict


class AlpacaAccount(BaseModel):
    model_config = ConfigDict(frozen=True)

    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    currency: str
    trading_blocked: bool


class AlpacaAccountCheck(BaseModel):
    """The account as Alpaca showed it when the loop started (`agent-trade status`): the
    account, never the key."""

    model_config = ConfigDict(frozen=True)

    mode: str
    account: AlpacaAccount

    def summary(self) -> str:
        a = self.account
        allowed = "BLOCKED from trading" if a.trading_blocked else "trading allowed"
        return (
            f"Alpaca {self.mode} account in {a.currency}: cash {a.cash:,.2f}, buying power "
            f"{a.buying_power:,.2f}, {allowed}"
        )
