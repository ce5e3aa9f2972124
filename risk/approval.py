"""The approval seal: an HMAC with a per-process key, so only the gate can mint ApprovedOrder."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from risk.models import ApprovedOrder

_KEY = secrets.token_bytes(32)
_CLIENT_ID_PREFIX = "agt-"


class UnapprovedOrderError(Exception):
    """Raised by executors for any order that did not come, unaltered, from the risk gate."""


def client_order_id(decision_id: str, leg: str = "entry") -> str:
    """Deterministic per decision and leg, so a resubmission after a crash is recognisable."""
    digest = hashlib.sha256(f"{decision_id}|{leg}".encode()).hexdigest()
    return f"{_CLIENT_ID_PREFIX}{digest[:28]}"  # Binance allows up to 36 chars


_SEALED = tuple(name for name in ApprovedOrder.model_fields if name != "seal")
"""Every field but the seal itself, in a fixed order."""


def _digest(fields: dict[str, Any]) -> str:
    """HMAC of the sealed fields' text in a fixed order; the repr of a list keeps the encoding
    unambiguous (quoted strings, None apart from "None") without formatting each field."""
    canonical = repr([None if (value := fields[name]) is None else str(value) for name in _SEALED])
    return hmac.new(_KEY, canonical.encode(), hashlib.sha256).hexdigest()


def _issue(**fields: Any) -> ApprovedOrder:
    """Mint a sealed order. Private to the gate: nothing else in the project calls this.
    The seal is computed from the arguments, which validation keeps as they are (the gate
    passes the exact types), so `verify_approved` on the order recomputes the same digest."""
    return ApprovedOrder(**fields, seal=_digest(fields))


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
