"""An executor that sends nothing: it checks the gate's seal and reports what would have gone
out. Chat uses it when no paper or live account is attached."""

from __future__ import annotations

import logging
from typing import Any

from risk.approval import verify_approved
from risk.models import ApprovedOrder

log = logging.getLogger(__name__)


class DryRunExecutor:
    def __init__(self) -> None:
        self.orders: list[ApprovedOrder] = []

    def execute(self, order: ApprovedOrder) -> dict[str, Any]:
        verify_approved(order)
        self.orders.append(order)
        log.info("dry run: %s %s %s not sent", order.side, order.quantity, order.symbol)
        return {
            "status": "not_sent_dry_run",
            "client_order_id": order.client_order_id,
            "symbol": order.symbol,
            "side": order.side.value,
            "quantity": str(order.quantity),
        }
