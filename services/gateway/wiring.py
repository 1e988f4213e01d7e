"""Build the gateway from settings: Kafka tracker, Cassandra idempotency store and read model."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from cassandra.cluster import Session
from fastapi import FastAPI
from pydantic.alias_generators import to_camel

from services.common.bus import Bus
from services.common.money import Lots, MicroUsdc, Ticks, unrealized_pnl
from services.common.records import MarketStatus
from services.common.settings import Settings
from services.common.stores import cassandra
from services.gateway.app import Gateway, create_app
from services.gateway.stores import CassandraAnswers, LocalIdempotencyStore, TieredIdempotencyStore
from services.gateway.tracker import CommandTracker
from services.projector import queries


class CassandraReadModel:
    """The gateway's reads over the projector's Cassandra tables (services/projector/queries.py).

    Market statuses are asked on every order, so they are cached for `market_ttl_s`: a pause takes
    effect at the gateway within that time, and at risk and the matcher at once.
    """

    def __init__(self, session: Session, keyspace: str, *, market_ttl_s: float = 1.0) -> None:
        self._session = session
        self._keyspace = keyspace
        self._ttl_s = market_ttl_s
        self._statuses: dict[str, MarketStatus] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def orders(
        self,
        trader: str,
        *,
        market: str | None,
        status: str | None,
        since_us: int | None,
        until_us: int | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        rows, next_cursor = queries.orders_for(
            self._session, self._keyspace, trader, market=market, status=status, since_us=since_us,
            until_us=until_us, limit=limit, cursor=cursor,
        )  # fmt: skip
        return [_json(row) for row in rows], next_cursor

    def order(self, trader: str, order_id: str) -> dict[str, Any] | None:
        row = queries.order(self._session, self._keyspace, order_id)
        return _json(row) if row is not None and row.trader == trader else None

    def positions(self, trader: str) -> list[dict[str, Any]]:
        """Positions with the market's latest mark and the unrealized PnL at it (None before a mark)."""
        markets = {m.market: m for m in queries.markets(self._session, self._keyspace)}
        answer = []
        for row in queries.positions_for(self._session, self._keyspace, trader):
            market = markets.get(row.market)
            mark = market.mark_price if market is not None else None
            pnl = None
            if market is not None and mark is not None and row.size:
                pnl = unrealized_pnl(
                    Lots(row.size), MicroUsdc(row.basis), Ticks(mark), MicroUsdc(market.quote_per_tick_lot)
                )
            answer.append(_json(row) | {"markPrice": mark, "unrealizedPnl": pnl if row.size else 0})
        return answer

    def balance(self, trader: str) -> dict[str, Any]:
        found = queries.balance_for(self._session, self._keyspace, trader)
        usdc = (
            _json(found.usdc)
            if found.usdc is not None
            else {"free": 0, "reserved": 0, "withdrawing": 0, "locked": 0}
        )
        holdings = [_json(h) for h in found.holdings]
        return (
            {"trader": trader}
            | {k: usdc[k] for k in ("free", "reserved", "withdrawing", "locked")}
            | {"holdings": holdings}
        )

    def markets(self) -> list[dict[str, Any]]:
        return [_json(row) for row in queries.markets(self._session, self._keyspace)]

    def market_status(self, market: str) -> MarketStatus | None:
        with self._lock:
            if time.monotonic() - self._loaded_at > self._ttl_s:
                rows = queries.markets(self._session, self._keyspace)
                self._statuses = {row.market: row.status for row in rows}
                self._loaded_at = time.monotonic()
            return self._statuses.get(market)


def _json(row: Any) -> dict[str, Any]:
    """A read-model row as the API shows it: camelCase keys, like every other body."""
    return {to_camel(key): value for key, value in dataclasses.asdict(row).items()}


def build_gateway(settings: Settings) -> Gateway:
    """A gateway wired to the configured Kafka and Cassandra (migrations applied)."""
    session = cassandra.connect(settings)
    cassandra.migrate(session, settings.cassandra_keyspace, settings.cassandra_replication)
    tracker = CommandTracker(Bus(settings))
    return Gateway(
        settings=settings,
        sender=tracker,
        reads=CassandraReadModel(session, settings.cassandra_keyspace),
        idempotency=TieredIdempotencyStore(
            LocalIdempotencyStore(), CassandraAnswers(session, settings.cassandra_keyspace)
        ),
        tracker=tracker,
    )


def build_app(settings: Settings) -> FastAPI:
    return create_app(build_gateway(settings))
