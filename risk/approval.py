"""The approval seal: a MAC with a per-process key, and one mint the gate claims at import,
so only the gate can make an ApprovedOrder that executors accept."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from operator import itemgetter
from typing import Any

from risk.models import ApprovedOrder
from risk.trusted import trusted

_KEY = secrets.token_bytes(32)
_KEYED = hashlib.blake2b(key=_KEY, digest_size=32)
_CLIENT_ID_PREFIX = "agt-"


class UnapprovedOrderError(Exception):
    """Raised by executors for any order that did not come, unaltered, from the risk gate."""


def client_order_id(decision_id: str, leg: str = "entry") -> str:
    """Deterministic per decision and leg, so a resubmission after a crash is recognisable."""
    digest = hashlib.sha256(f"{decision_id}|{leg}".encode()).hexdigest()
    return f"{_CLIENT_ID_PREFIX}{digest[:28]}"  # Binance allows up to 36 chars


_SEALED = tuple(name for name in ApprovedOrder.model_fields if name != "seal")
"""Every field but the seal itself, in a fixed order."""
_pick_sealed = itemgetter(*_SEALED)


def _digest(fields: dict[str, Any]) -> str:
    """A keyed BLAKE2b MAC of the sealed fields' text in a fixed order. One f-string keeps
    the text unambiguous: the free-text fields are quoted by repr, and every other field's
    text (enums, decimals, None, a bool, an int) holds no quote or separator."""
    cid, did, symbol, side, kind, qty, limit, stop, loss, profit, trail, reduce, source, ms = (
        _pick_sealed(fields)
    )
    text = (
        f"{cid!r}|{did!r}|{symbol!r}|{side!s}|{kind!s}|{qty!s}|{limit!s}|{stop!s}|{loss!s}"
        f"|{profit!s}|{trail!s}|{reduce!s}|{source!s}|{ms!s}"
    )
    mac = _KEYED.copy()  # the key's block is hashed once per process, not once per order
    mac.update(text.encode())
    return mac.hexdigest()


class _Mint:
    """Seals orders. There is one, and `claim_mint` hands it to the gate alone."""

    def seal(self, fields: dict[str, Any]) -> ApprovedOrder:
        """The gate passes every field in order and of its exact type, so the order is built
        without re-validation and `verify_approved` recomputes the same digest."""
        fields["seal"] = _digest(fields)
        return trusted(ApprovedOrder, fields)


_unclaimed: list[_Mint] = [_Mint()]


def claim_mint() -> _Mint:
    """The gate takes the only mint when it is imported; any later claim raises, so nothing
    else in the process can seal an order."""
    if not _unclaimed:
        raise UnapprovedOrderError("only the risk gate seals orders: the mint is already held")
    return _unclaimed.pop()


def verify_approved(order: object) -> ApprovedOrder:
    """Return the order if the gate sealed it and nobody changed it since; raise otherwise."""
    if not isinstance(order, ApprovedOrder):
        raise UnapprovedOrderError(
            f"executors accept only ApprovedOrder, got {type(order).__name__}"
        )
    if not hmac.compare_digest(order.seal, _digest(order.__dict__)):
        raise UnapprovedOrderError(
            f"order {order.client_order_id} was not approved by the risk gate or was altered"
        )
    return order
