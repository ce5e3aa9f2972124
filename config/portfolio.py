"""`[portfolio]`: accounts that form one portfolio across venues, counted in USD."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from core.config_model import ConfigModel


class PortfolioSettings(ConfigModel):
    """A stock account is in USD, a crypto one in USDT; exposure limits add them up in USD."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    usdt_usd: float = Field(
        1.0, gt=0, description="USD per USDT when a portfolio adds crypto and stock accounts"
    )
    accounts: list[str] = Field(
        default_factory=list,
        description="paper accounts that form one portfolio: each one's exposure limit counts "
        "the others' positions and equity, in USD",
    )
