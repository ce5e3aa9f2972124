"""What a Bybit API key may do, checked before every signed start (Bybit's testnet answers
/v5/user/query-api too): a key that can withdraw or move funds to another account is refused, a
read-only key or one without spot trading is refused, a key bound to no IP is warned about."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import UserError

QUERY_API_PATH = "/v5/user/query-api"
# Wallet permissions that take money out of this account, not just trade it.
_MOVES_FUNDS = ("Withdraw", "SubMemberTransfer", "SubMemberTransferList")


class BybitKeyPermissions(BaseModel):
    """The fields of /v5/user/query-api's result that decide whether the key may trade here."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    read_only: int = Field(alias="readOnly")
    permissions: dict[str, list[str]]
    ips: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        granted = [f"{k}: {', '.join(v)}" for k, v in sorted(self.permissions.items()) if v]
        bound = "no IP restriction" if self.unbound else f"bound to {len(self.ips)} IP(s)"
        return f"{bound}; {'; '.join(granted) or 'no permissions'}"

    @property
    def unbound(self) -> bool:
        return not self.ips or "*" in self.ips


def problems(key: BybitKeyPermissions) -> tuple[list[str], list[str]]:
    """(refusals, warnings) for trading spot unattended with this key."""
    wallet = key.permissions.get("Wallet", [])
    refusals = [
        f"Wallet permission {name} is on: a leaked key could move your funds out; untick it in "
        "Bybit's API management (a spot-trade-only key is all this needs)"
        for name in _MOVES_FUNDS
        if name in wallet
    ]
    if key.read_only:
        refusals.append("the key is read-only: it cannot place orders; make it read-write")
    elif "SpotTrade" not in key.permissions.get("Spot", []):
        refusals.append("Spot permission SpotTrade is off: this key cannot place spot orders")
    warnings = []
    if key.unbound:
        warnings.append(
            "warning: the Bybit API key is bound to no IP: anyone who obtains it can trade from "
            "anywhere; bind it to this machine's IP on Bybit"
        )
    return refusals, warnings


def check_bybit_key(
    fetch: Callable[[], Any],
    mode: str,
    notify: Callable[[str], None],
    record: Callable[[BybitKeyPermissions], None] | None = None,
) -> BybitKeyPermissions:
    """Fetch the key's permissions and refuse it, in one line, unless it is fit to trade;
    `record` keeps what was found (a refused key too) for `agent-trade status`."""
    try:
        key = BybitKeyPermissions.model_validate(fetch())
    except ValidationError as exc:
        field = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise UserError(
            f"Bybit's {QUERY_API_PATH} answer lacks {field}: cannot tell whether the key can "
            f"withdraw, so Bybit {mode} trading is refused"
        ) from None
    refusals, warnings = problems(key)
    if record is not None:
        record(key)
    if refusals:
        raise UserError(f"refusing Bybit {mode} trading with this API key: " + "; ".join(refusals))
    for warning in warnings:
        notify(warning)
    notify(f"key permissions: {key.summary()}")
    return key
