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


def _digest(fields: dict[str, Any]) -> str:
    canonical = "|".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "seal")
    return hmac.new(_KEY, canonical.encode(), hashlib.sha256).hexdigest()


def _issue(**fields: Any) -> ApprovedOrder:
    """Mint a sealed order. Private to the gate: nothing else in the project calls this."""
    order = ApprovedOrder(**fields, seal="")
    return order.model_copy(update={"seal": _digest(order.__dict__)})


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
