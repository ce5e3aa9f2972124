"""The approval seal: a MAC with a per-process key, and one mint the gate claims at import,
so only the gate can make an ApprovedOrder that executors accept."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from decimal import Decimal
from operator import itemgetter
from typing import Final

from risk.models import ApprovedOrder, OrderType, Side, SignalSource
from risk.trusted import trusted

_KEY: Final = secrets.token_bytes(32)
_KEYED: Final = hashlib.blake2b(key=_KEY, digest_size=32)
_KEYED.update(b"order|")
"""BLAKE2b holds the last full block back until more input comes: these bytes after the key's
block have it hashed here, once per process, rather than in every order's `_digest`."""
_CLIENT_ID_PREFIX: Final = "agt-"
_SHA256: Final = hashlib.sha256()
"""Copied for each id: a new hash object looks its algorithm up in OpenSSL, a copy does not."""


class UnapprovedOrderError(Exception):
    """Raised by executors for any order that did not come, unaltered, from the risk gate."""


def client_order_id(decision_id: str, leg: str = "entry") -> str:
    """Deterministic per decision and leg, so a resubmission after a crash is recognisable.
    The first 14 bytes of the SHA-256 in hex: the 28 hex digits Binance's 36 allow."""
    digest = _SHA256.copy()
    digest.update(f"{decision_id}|{leg}".encode())
    return _CLIENT_ID_PREFIX + digest.hexdigest()[:28]


_SEALED: Final = tuple(name for name in ApprovedOrder.model_fields if name != "seal")
"""Every field but the seal itself, in a fixed order."""
_pick_sealed: Final = itemgetter(*_SEALED)


def _digest(sealed: tuple[object, ...]) -> str:
    """A keyed BLAKE2b MAC of the sealed fields' text, in `_SEALED` order. The text is
    unambiguous: the free-text fields (client order id, decision id, symbol) are quoted by
    repr, so each ends itself; every other field's text (enums, decimals, a bool as 0 or 1, an
    int) holds no quote or separator, and a missing price is empty, which no decimal's text is.
    Short, it fits with `_KEYED`'s prefix in one 128-byte BLAKE2b block, one compression per
    order (an exit's text does). Joined, not an f-string: compiled, its conversions (`!r`,
    `!s`) became a str.format call; read by index, as a compiled tuple read is plain."""
    mac = _KEYED.copy()
    text = "|".join(
        (
            repr(sealed[0]) + repr(sealed[1]) + repr(sealed[2]) + str(sealed[3]),
            str(sealed[4]),
            str(sealed[5]),
            _text(sealed[6]),
            _text(sealed[7]),
            _text(sealed[8]),
            _text(sealed[9]),
            _text(sealed[10]),
            "1" if sealed[11] else "0",
            str(sealed[12]),
            str(sealed[13]),
        )
    )
    mac.update(text.encode())
    return mac.hexdigest()


def _text(price: object) -> str:
    return "" if price is None else str(price)


_last_sealed: tuple[str, tuple[object, ...]] = ("", (object(),) * len(_SEALED))  # none yet
"""The last order's seal and the field objects it sealed: a runner hands the order it was
just given straight to its venue, and an order that holds that very seal string and those very
objects needs no second digest (nor a comparison), as the digest of those objects is that seal.
Anything else is checked by its digest."""


class _Mint:
    """Seals orders. There is one, and `claim_mint` hands it to the gate alone."""

    def seal(
        self,
        cid: str,
        did: str,
        symbol: str,
        side: Side,
        kind: OrderType,
        qty: Decimal,
        limit: Decimal | None,
        stop: Decimal | None,
        loss: Decimal | None,
        profit: Decimal | None,
        trail: Decimal | None,
        reduce: bool,
        source: SignalSource,
        ms: int,
    ) -> ApprovedOrder:
        """The gate passes every field of its exact type, so the order is built without
        re-validation; `verify_approved` knows the last one by its objects (`_last_sealed`)
        and recomputes the same digest from the fields of any other."""
        # Compiled, an `int` parameter is a machine integer, boxed anew at each use: boxed once
        # here, the order and `_last_sealed` hold the same int object.
        created: object = ms
        sealed = (
            cid,
            did,
            symbol,
            side,
            kind,
            qty,
            limit,
            stop,
            loss,
            profit,
            trail,
            reduce,
            source,
            created,
        )
        seal = _digest(sealed)
        order = trusted(
            ApprovedOrder,
            {
                "client_order_id": cid,
                "decision_id": did,
                "symbol": symbol,
                "side": side,
                "order_type": kind,
                "quantity": qty,
                "limit_price": limit,
                "stop_price": stop,
                "stop_loss": loss,
                "take_profit": profit,
                "trailing_stop_pct": trail,
                "reduce_only": reduce,
                "source": source,
                "created_ms": created,
                "seal": seal,
            },
        )
        global _last_sealed
        _last_sealed = (seal, sealed)
        return order


_unclaimed: Final[list[_Mint]] = [_Mint()]


def claim_mint() -> _Mint:
    """The gate takes the only mint when it is imported; any later claim raises, so nothing
    else in the process can seal an order."""
    if not _unclaimed:
        raise UnapprovedOrderError("only the risk gate seals orders: the mint is already held")
    return _unclaimed.pop()


def _same_objects(sealed: tuple[object, ...], values: tuple[object, ...]) -> bool:
    """Each value is the very object sealed (the tuples are as long: both hold `_SEALED`). An
    indexed loop compiles to plain reads; `map(is_, ...)` made a Python call per field and
    `zip` an object per order."""
    return all(sealed[at] is values[at] for at in range(len(sealed)))


def verify_approved(order: object) -> ApprovedOrder:
    """Return the order if the gate sealed it and nobody changed it since; raise otherwise."""
    if not isinstance(order, ApprovedOrder):
        raise UnapprovedOrderError(
            f"executors accept only ApprovedOrder, got {type(order).__name__}"
        )
    fields = order.__dict__
    values = _pick_sealed(fields)
    seal, sealed = _last_sealed
    if fields.get("seal") is seal and _same_objects(sealed, values):
        return order  # the very seal and objects the gate sealed: their digest is the seal
    if not hmac.compare_digest(order.seal, _digest(values)):
        raise UnapprovedOrderError(
            f"order {order.client_order_id} was not approved by the risk gate or was altered"
        )
    return order
