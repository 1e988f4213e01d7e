"""The gateway's reads of the read model: plain functions of a Cassandra session.

Each answers one endpoint with one or a few single-partition reads (costs in docs/read-model.md).
Rows are the projector's own frozen dataclasses (`services.projector.views`; `dataclasses.asdict`
gives their JSON shape, enums being strings): prices in ticks, sizes in lots, money in micro-USDC,
times in microseconds (held to the millisecond). The read model trails the log by the projector's
lag; `markets()` says up to which seq each market is projected.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

from cassandra.cluster import Session
from cassandra.query import PreparedStatement

from services.common.lifecycle import OrderStatus
from services.projector.tables import (
    BALANCE_COLUMNS,
    MARKET_COLUMNS,
    ORDER_COLUMNS,
    POSITION_COLUMNS,
    balance_row,
    market_row,
    order_row,
    position_row,
    select,
)
from services.projector.views import USDC, BalanceRow, MarketRow, OrderRow, PositionRow

MAX_LIMIT = 500
_CURSOR_PREFIX = "o1."


class InvalidCursor(ValueError):
    """A cursor this module did not make (or from another version of it)."""


@dataclass(frozen=True, slots=True)
class Balance:
    """A trader's USDC buckets (micro-USDC) and synth holdings per spot market (lots)."""

    usdc: BalanceRow | None
    holdings: tuple[BalanceRow, ...]


S = OrderStatus
STATUS_FILTERS: dict[str, tuple[tuple[OrderStatus, str | None], ...]] = {
    **{status.value: ((status, None),) for status in OrderStatus},
    "NEW": ((S.ACCEPTED, None), (S.RESTING, None)),
    "OPEN": ((S.ACCEPTED, None), (S.RESTING, None), (S.PARTIALLY_FILLED, None)),
    "EXPIRED": ((S.CANCELLED, "EXPIRED"),),
}
"""Status filters by name: the lifecycle's statuses, and the public names NEW (not yet filled),
OPEN (not closed) and EXPIRED (a GTT order cancelled at its expiry; CANCELLED includes those too)."""


def orders_for(
    session: Session,
    keyspace: str,
    trader: str,
    *,
    market: str | None = None,
    status: str | Iterable[str] | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[OrderRow], str | None]:
    """A trader's orders, newest first: one page of at most `limit`, and the cursor of the next page
    (None when this is the last).

    Filters: `market`; `status`, one or several names of `STATUS_FILTERS`; creation time in
    [`since_us`, `until_us`), compared at millisecond precision. Pass the returned cursor, with the
    same filters, to continue. Raises `InvalidCursor` for a cursor that is not one of ours, and
    `ValueError` for an unknown status or a limit outside 1..MAX_LIMIT.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {limit}")
    names = [] if status is None else [status] if isinstance(status, str) else sorted(set(status))
    unknown = [name for name in names if name not in STATUS_FILTERS]
    if unknown:
        raise ValueError(f"unknown order status {unknown[0]!r}; one of {', '.join(STATUS_FILTERS)}")
    filters = sorted({f for name in names for f in STATUS_FILTERS[name]}, key=str) if names else [None]
    after = _decode(cursor) if cursor is not None else None
    where: list[str] = ["trader = ?"]
    values: list[object] = [trader]
    if market is not None:
        where.append("market = ?")
        values.append(market)
    if since_us is not None:
        where.append("created_at >= ?")
        values.append(since_us // 1000)
    until_ms = None if until_us is None else -(-until_us // 1000)
    if after is not None and (until_ms is None or after[0] < until_ms):
        where.append("(created_at, order_id) < (?, ?)")
        values += [after[0], after[1]]
    elif until_ms is not None:
        where.append("created_at < ?")
        values.append(until_ms)
    # An index answers one value per query: one query per status (concurrently), merged newest first.
    futures = []
    for one in filters:
        clauses, bound = list(where), list(values)
        if one is not None:
            clauses.append("status = ?")
            bound.append(one[0].value)
            if one[1] is not None:
                clauses.append("reason = ?")
                bound.append(one[1])
        cql = f"SELECT {select(ORDER_COLUMNS)} FROM {keyspace}.orders_by_trader WHERE {' AND '.join(clauses)}"
        statement = _prepared(session, cql + " LIMIT ?")
        futures.append(session.execute_async(statement, (*bound, limit + 1)))
    pages = [[order_row(r) for r in future.result()] for future in futures]
    merged = list(heapq.merge(*pages, key=lambda o: (o.created_at // 1000, o.order_id), reverse=True))
    rows = merged[:limit]
    more = len(merged) > limit
    return rows, _encode(rows[-1]) if more else None


def order(session: Session, keyspace: str, order_id: str) -> OrderRow | None:
    """One order by venue order id."""
    statement = _prepared(
        session, f"SELECT {select(ORDER_COLUMNS)} FROM {keyspace}.orders_by_id WHERE order_id = ?"
    )
    found = session.execute(statement, (order_id,)).one()
    return None if found is None else order_row(found)


def open_orders(session: Session, keyspace: str, market: str) -> list[OrderRow]:
    """Every order resting on `market`'s book, by order id (UUIDv7: oldest first)."""
    statement = _prepared(
        session, f"SELECT {select(ORDER_COLUMNS)} FROM {keyspace}.open_orders_by_market WHERE market = ?"
    )
    return [order_row(r) for r in session.execute(statement, (market,))]


def positions_for(session: Session, keyspace: str, trader: str) -> list[PositionRow]:
    """A trader's positions by market, flat ones included (their realised PnL stays)."""
    statement = _prepared(
        session, f"SELECT {select(POSITION_COLUMNS)} FROM {keyspace}.positions_by_trader WHERE trader = ?"
    )
    return [position_row(r) for r in session.execute(statement, (trader,))]


def balance_for(session: Session, keyspace: str, trader: str) -> Balance:
    """A trader's USDC balance (None before any change) and synth holdings."""
    statement = _prepared(
        session, f"SELECT {select(BALANCE_COLUMNS)} FROM {keyspace}.balances_by_trader WHERE trader = ?"
    )
    rows = [balance_row(r) for r in session.execute(statement, (trader,))]
    usdc = next((r for r in rows if r.asset == USDC), None)
    return Balance(usdc, tuple(r for r in rows if r.asset != USDC))


def markets(session: Session, keyspace: str) -> list[MarketRow]:
    """Every listed market with its parameters and status, by symbol (a scan of a small table)."""
    statement = _prepared(session, f"SELECT {select(MARKET_COLUMNS)} FROM {keyspace}.markets")
    # A row with progress but no listing means the listing never reached the read model (e.g. it
    # went to dead letters): the market is unknown here, not half-known.
    listed = (r for r in session.execute(statement) if r.kind is not None)
    return sorted((market_row(r) for r in listed), key=lambda m: m.market)


# -- plumbing --------------------------------------------------------------------------------------

_PREPARED: weakref.WeakKeyDictionary[Session, dict[str, PreparedStatement]] = weakref.WeakKeyDictionary()


def _prepared(session: Session, cql: str) -> PreparedStatement:
    """`cql` prepared once per session."""
    cache = _PREPARED.setdefault(session, {})
    statement = cache.get(cql)
    if statement is None:
        statement = cache[cql] = session.prepare(cql)
    return statement


def _encode(last: OrderRow) -> str:
    """The cursor after `last`: its place in the clustering order, opaque to callers."""
    raw = f"{last.created_at // 1000}:{last.order_id}".encode()
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[int, str]:
    if not cursor.startswith(_CURSOR_PREFIX):
        raise InvalidCursor("not an orders cursor")
    body = cursor[len(_CURSOR_PREFIX) :]
    try:
        created_ms, order_id = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode().split(":", 1)
        return int(created_ms), order_id
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor("malformed orders cursor") from exc
