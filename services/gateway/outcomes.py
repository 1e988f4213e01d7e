"""What became of a command the gateway sent: read from the records it caused. Pure.

Every record a command causes carries its correlation id (the command id, in the
`cxpt-correlation-id` header, which risk and the matcher copy from input to output). The gateway
waits for the first *decisive* one:

=================  ================================================  ===============================
topic              record                                            outcome
=================  ================================================  ===============================
accounts.events    `OrderRejected` (risk refused the command)        REJECTED with risk's 2xxx code
accounts.events    `WithdrawalRequested`                             ACCEPTED (money set aside)
trade.log          the command's entry (the matcher decided)         from the entry's events
=================  ================================================  ===============================

Risk's other outputs for the command (balance changes of the reservation) are not decisive.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.common import lifecycle
from services.common.records import (
    CommandRejected,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderRested,
    TradeLogEntry,
    WithdrawalRequested,
)


class OrderStatus(StrEnum):
    """A command's status as the gateway answers it: the order lifecycle's names
    (`services.common.lifecycle`, the same as `GET /orders` shows), and PENDING."""

    PENDING = "PENDING"
    """Sent, not decided within the wait: poll `GET /orders/{id}`."""
    ACCEPTED = "ACCEPTED"
    """An order the book took (and did not rest, fill or cancel in the same step: never seen), or a
    non-order command (cancel, withdrawal, admin) that took effect."""
    RESTING = "RESTING"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The decision about one command."""

    status: OrderStatus
    filled_qty: int = 0
    leaves_qty: int = 0
    cancelled_qty: int = 0
    code: int | None = None
    reason: str | None = None
    correlation_id: str | None = None
    """The command's correlation id (Kafka header, log field), once it was sent."""

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status.value,
            "filledQty": self.filled_qty,
            "leavesQty": self.leaves_qty,
        }
        if self.cancelled_qty:
            body["cancelledQty"] = self.cancelled_qty
        if self.code is not None:
            body |= {"code": self.code, "reason": self.reason}
        if self.correlation_id is not None:
            body["correlationId"] = self.correlation_id
        return body


PENDING = Outcome(OrderStatus.PENDING)


def account_outcome(body: object) -> Outcome | None:
    """The outcome an accounts.events body decides, or None if it is not decisive."""
    if isinstance(body, OrderRejected):
        return Outcome(OrderStatus.REJECTED, code=body.reason_code, reason=_reason(body.reason, body.detail))
    if isinstance(body, WithdrawalRequested):
        return Outcome(OrderStatus.ACCEPTED)
    return None


def entry_outcome(entry: TradeLogEntry, order_id: str | None) -> Outcome:
    """The outcome of the command behind `entry`: for `order_id`'s order if it placed one."""
    events = entry.events
    for event in events:
        if isinstance(event, OrderRejected | CommandRejected):
            return Outcome(
                OrderStatus.REJECTED, code=event.reason_code, reason=_reason(event.reason, event.detail)
            )
    if order_id is None:
        cancelled = sum(e.cancelled_qty for e in events if isinstance(e, OrderCancelled))
        return Outcome(OrderStatus.ACCEPTED, cancelled_qty=cancelled)
    return _order_outcome(events, order_id)


def _order_outcome(events: list[Any], order_id: str) -> Outcome:
    """Fold the order's events through the lifecycle table, as every projection does."""
    status: lifecycle.OrderStatus | None = None
    size = filled = cancelled = 0
    for event in events:
        if getattr(event, "order_id", None) != order_id:
            continue
        if isinstance(event, OrderAccepted):
            size, step = event.size, lifecycle.Transition.ACCEPT
        elif isinstance(event, OrderRested):
            step = lifecycle.Transition.REST
        elif isinstance(event, OrderFilled):
            filled = event.cum_qty
            step = (
                lifecycle.Transition.FULL_FILL if event.leaves_qty == 0 else lifecycle.Transition.PARTIAL_FILL
            )
        elif isinstance(event, OrderCancelled):
            cancelled += event.cancelled_qty
            step = lifecycle.Transition.CANCEL
        else:
            continue
        status = lifecycle.next_status(status, step)
    final = OrderStatus(status.value) if status is not None else OrderStatus.PENDING
    return Outcome(
        final, filled_qty=filled, leaves_qty=max(size - filled - cancelled, 0), cancelled_qty=cancelled
    )


def _reason(reason: str, detail: str) -> str:
    """The refusal's name and, when there is one, the detail that says by how much."""
    return f"{reason}: {detail}" if detail else reason
