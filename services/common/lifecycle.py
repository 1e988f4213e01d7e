"""The order lifecycle as a transition table; illegal transitions raise.

Every projection of orders (Cassandra, ws-push, the Python client) folds trade-log events through
`next_status`, and the matcher's tests check that every order's events walk a legal path.
"""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    """Where an order is in its life."""

    ACCEPTED = "ACCEPTED"
    RESTING = "RESTING"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


class Transition(StrEnum):
    """What happened to the order, as the trade log tells it."""

    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    REST = "REST"
    PARTIAL_FILL = "PARTIAL_FILL"
    FULL_FILL = "FULL_FILL"
    AMEND = "AMEND"
    CANCEL = "CANCEL"


S, T = OrderStatus, Transition

TRANSITIONS: dict[tuple[OrderStatus | None, Transition], OrderStatus] = {
    (None, T.ACCEPT): S.ACCEPTED,
    (None, T.REJECT): S.REJECTED,
    (S.ACCEPTED, T.REST): S.RESTING,
    (S.ACCEPTED, T.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.ACCEPTED, T.FULL_FILL): S.FILLED,
    (S.ACCEPTED, T.CANCEL): S.CANCELLED,
    (S.RESTING, T.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.RESTING, T.FULL_FILL): S.FILLED,
    (S.RESTING, T.AMEND): S.RESTING,
    (S.RESTING, T.CANCEL): S.CANCELLED,
    (S.PARTIALLY_FILLED, T.PARTIAL_FILL): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, T.FULL_FILL): S.FILLED,
    (S.PARTIALLY_FILLED, T.REST): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, T.AMEND): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, T.CANCEL): S.CANCELLED,
}

TERMINAL = frozenset({S.FILLED, S.CANCELLED, S.REJECTED})


class IllegalTransition(Exception):
    """An event that cannot happen to an order in its current status: a broken invariant."""


def next_status(current: OrderStatus | None, transition: Transition) -> OrderStatus:
    """The status after `transition`; raises IllegalTransition if the table has no such move."""
    try:
        return TRANSITIONS[(current, transition)]
    except KeyError:
        raise IllegalTransition(f"{transition} is not allowed from {current}") from None
