"""What the Binance API key may do, checked before a live start: a key that can move funds out
(withdrawals, internal or universal transfers) is refused, a key that cannot trade spot is
refused, a key without an IP restriction is warned about. The result is stored per account for
`agent-trade status`; the key itself never is."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import UserError
from market.models import iso_ms
from store.db import Store
from venues.alpaca.account import AlpacaAccountCheck
from venues.bybit.key_info import BybitKeyPermissions

API_RESTRICTIONS_PATH = "/sapi/v1/account/apiRestrictions"
# Flags that let a leaked key take money out of the account rather than just trade it.
_MOVES_FUNDS = ("enableWithdrawals", "enableInternalTransfer", "permitsUniversalTransfer")
_SPOT = "enableSpotAndMarginTrading"
_EXCHANGE = "exchange"  # the stored answer's tag; rows without it are Binance's


class KeyPermissions(BaseModel):
    """Binance's answer to GET /sapi/v1/account/apiRestrictions (its field names as aliases)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    ip_restrict: bool = Field(alias="ipRestrict")
    create_time: int | None = Field(None, alias="createTime")
    enable_reading: bool = Field(False, alias="enableReading")
    enable_spot_and_margin_trading: bool = Field(alias=_SPOT)
    enable_withdrawals: bool = Field(alias="enableWithdrawals")
    enable_internal_transfer: bool = Field(alias="enableInternalTransfer")
    permits_universal_transfer: bool = Field(False, alias="permitsUniversalTransfer")
    enable_margin: bool = Field(False, alias="enableMargin")
    enable_futures: bool = Field(False, alias="enableFutures")
    enable_vanilla_options: bool = Field(False, alias="enableVanillaOptions")
    enable_portfolio_margin_trading: bool = Field(False, alias="enablePortfolioMarginTrading")

    def flags(self) -> dict[str, bool]:
        """Binance's flag names with their values, as the user sees them on Binance."""
        return {k: v for k, v in self.model_dump(by_alias=True).items() if isinstance(v, bool)}

    def summary(self) -> str:
        on = [name for name, value in self.flags().items() if value and name != "ipRestrict"]
        restricted = "IP-restricted" if self.ip_restrict else "no IP restriction"
        return f"{restricted}; enabled: {', '.join(on) or 'nothing'}"


def problems(permissions: KeyPermissions) -> tuple[list[str], list[str]]:
    """(refusals, warnings) for trading spot unattended with this key."""
    flags = permissions.flags()
    refusals = [
        f"{name} is on: a leaked key could move your funds out; untick it in Binance's API "
        "Management (a trade-only key is all this needs)"
        for name in _MOVES_FUNDS
        if flags[name]
    ]
    if not flags[_SPOT]:
        refusals.append(f"{_SPOT} is off: this key cannot place spot orders; enable it")
    warnings = []
    if not permissions.ip_restrict:
        warnings.append(
            "warning: the API key has no IP restriction (ipRestrict false): anyone who obtains "
            "it can trade from anywhere; restrict it to this machine's IP on Binance"
        )
    return refusals, warnings


def check_key(
    fetch: Callable[[], Any],
    mode: str,
    store: Store,
    account: str,
    now_ms: int,
    notify: Callable[[str], None],
) -> KeyPermissions | None:
    """Before trading on Binance: on live, fetch the key's permissions, refuse a key that can
    move funds or cannot trade spot, warn without an IP restriction, and record what was
    found for `status`. Testnet has no such endpoint, so it says so and checks nothing."""
    if mode != "live":
        notify(
            f"key permissions: not checked on {mode} (Binance's testnet has no "
            f"{API_RESTRICTIONS_PATH}); live refuses a key that can withdraw or transfer"
        )
        return None
    answer = fetch()
    try:
        permissions = KeyPermissions.model_validate(answer)
    except ValidationError as exc:
        field = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise UserError(
            f"Binance's {API_RESTRICTIONS_PATH} answer lacks {field}: cannot tell whether the "
            "key can withdraw, so live trading is refused"
        ) from None
    refusals, warnings = problems(permissions)
    save_key_check(store, account, permissions, now_ms)
    if refusals:
        raise UserError("refusing live trading with this API key: " + "; ".join(refusals))
    for warning in warnings:
        notify(warning)
    notify(f"key permissions: {permissions.summary()}")
    return permissions


def save_key_check(
    store: Store,
    account: str,
    permissions: KeyPermissions | BybitKeyPermissions | AlpacaAccountCheck,
    now_ms: int,
) -> None:
    """Record what the exchange said of the key (Bybit's answer tagged as such), never the key."""
    found = permissions.model_dump(by_alias=True)
    if isinstance(permissions, BybitKeyPermissions):
        found[_EXCHANGE] = "bybit"
    if isinstance(permissions, AlpacaAccountCheck):
        found = {**permissions.model_dump(mode="json"), _EXCHANGE: "alpaca"}
    from sqlalchemy import delete, insert

    from store.tables import KeyCheckRow

    with store.engine.begin() as conn:
        conn.execute(delete(KeyCheckRow).where(KeyCheckRow.account == account))
        conn.execute(
            insert(KeyCheckRow),
            [
                {
                    "account": account,
                    "checked_ms": now_ms,
                    "permissions_json": json.dumps(found),
                }
            ],
        )


def last_key_check(store: Store, account: str) -> dict[str, Any] | None:
    """The permissions recorded at the account's last checked start (Binance live, Bybit testnet
    or live), for `status`."""
    rows = store.rows(
        "SELECT checked_ms, permissions_json FROM key_checks WHERE account = ?", (account,)
    )
    if not rows:
        return None
    checked_ms, permissions_json = rows[0]
    found = json.loads(permissions_json)
    checked = iso_ms(int(checked_ms))
    exchange = found.pop(_EXCHANGE, "binance")
    if exchange == "alpaca":
        summary = AlpacaAccountCheck.model_validate(found).summary()
        return {"checked": checked, "exchange": "alpaca", "summary": summary}
    if exchange == "bybit":
        bybit = BybitKeyPermissions.model_validate(found)
        return {
            "checked": checked,
            "exchange": "bybit",
            "summary": bybit.summary(),
            "permissions": bybit.permissions,
            "read_only": bool(bybit.read_only),
            "ips": bybit.ips,
        }
    permissions = KeyPermissions.model_validate(found)
    return {
        "checked": checked,
        "exchange": "binance",
        "summary": permissions.summary(),
        "flags": permissions.flags(),
    }
