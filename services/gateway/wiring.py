"""Build the gateway from settings: Kafka tracker, Cassandra idempotency store and read model."""

from __future__ import annotations

import dataclasses
import logging
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
from services.projector.views import MarketRow, PositionRow

log = logging.getLogger(__name__)

FRESH_EVERY_S = 0.1
"""Most often an order for a market the gateway does not know reads the markets again."""


class CassandraReadModel:
    """The gateway's reads over the projector's Cassandra tables (services/projector/queries.py).

    Market statuses are asked on every order, in the event loop, so they are held in memory and
    read again every `market_ttl_s` by a thread of their own: a pause takes effect at the gateway
    within that time, and at risk and the matcher at once.
    """

    def __init__(self, session: Session, keyspace: str, *, market_ttl_s: float = 1.0) -> None:
        self._session = session
        self._keyspace = keyspace
        self._ttl_s = market_ttl_s
        self._statuses = self._load_statuses()
        self._fresh_at = 0.0
        self._stop = threading.Event()
        self._refresher = threading.Thread(target=self._refresh, name="market-statuses", daemon=True)
        self._refresher.start()

    def close(self) -> None:
        self._stop.set()
        self._refresher.join(5)

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
        """Positions with the market's latest mark, the unrealized PnL and the value at it (None
        before the market's first mark)."""
        markets = {m.market: m for m in queries.markets(self._session, self._keyspace)}
        return [
            _json(row) | _at_mark(row, markets.get(row.market))
            for row in queries.positions_for(self._session, self._keyspace, trader)
        ]

    def balance(self, trader: str) -> dict[str, Any]:
        """USDC buckets and holdings, plus equity and margin ratio at the latest marks."""
        found = queries.balance_for(self._session, self._keyspace, trader)
        usdc = (
            _json(found.usdc)
            if found.usdc is not None
            else {"free": 0, "reserved": 0, "withdrawing": 0, "locked": 0}
        )
        holdings = [_json(h) for h in found.holdings]
        buckets = {k: usdc[k] for k in ("free", "reserved", "withdrawing", "locked")}
        return (
            {"trader": trader}
            | buckets
            | self._equity(trader, sum(buckets.values()))
            | {"holdings": holdings}
        )

    def _equity(self, trader: str, cash: int) -> dict[str, Any]:
        """equity = every USDC bucket + Σ unrealized PnL at the marks (positions without a mark count
        at entry); marginRatioBps = Σ |position value at the mark| × 10 000 / equity (None without
        positions or when equity ≤ 0): 10 000 means the positions are worth all the trader has."""
        marked = [p for p in self.positions(trader) if p["size"]]
        equity = cash + sum(p["unrealizedPnl"] or 0 for p in marked)
        exposure = sum(p["valueAtMark"] if p["valueAtMark"] is not None else p["basis"] for p in marked)
        ratio = exposure * 10_000 // equity if marked and equity > 0 else None
        return {"unrealizedPnl": equity - cash, "equity": equity, "marginRatioBps": ratio}

    def markets(self) -> list[dict[str, Any]]:
        return [_json(row) for row in queries.markets(self._session, self._keyspace)]

    def market_status(self, market: str, *, fresh: bool = False) -> MarketStatus | None:
        """From memory; `fresh`: read the markets again first, at most every `FRESH_EVERY_S`
        (orders for unknown markets cannot make the gateway hammer Cassandra)."""
        if fresh and time.monotonic() - self._fresh_at > FRESH_EVERY_S:
            self._fresh_at = time.monotonic()
            self._statuses = self._load_statuses()
        return self._statuses.get(market)

    def _load_statuses(self) -> dict[str, MarketStatus]:
        return {row.market: row.status for row in queries.markets(self._session, self._keyspace)}

    def _refresh(self) -> None:
        while not self._stop.wait(self._ttl_s):
            try:
                self._statuses = self._load_statuses()  # one reference swap: readers need no lock
            except Exception:  # keep the last statuses; the next round retries
                log.warning("market statuses not refreshed", exc_info=True)


def _at_mark(row: PositionRow, market: MarketRow | None) -> dict[str, Any]:
    mark = market.mark_price if market is not None else None
    if not row.size:
        return {"markPrice": mark, "unrealizedPnl": 0, "valueAtMark": 0}
    if market is None or mark is None:
        return {"markPrice": None, "unrealizedPnl": None, "valueAtMark": None}
    qptl = MicroUsdc(market.quote_per_tick_lot)
    pnl = unrealized_pnl(Lots(row.size), MicroUsdc(row.basis), Ticks(mark), qptl)
    return {"markPrice": mark, "unrealizedPnl": pnl, "valueAtMark": abs(row.size) * mark * qptl}


def _json(row: Any) -> dict[str, Any]:
    """A read-model row as the API shows it: camelCase keys, like every other body."""
    return {to_camel(key): value for key, value in dataclasses.asdict(row).items()}


def build_gateway(settings: Settings) -> Gateway:
    """A gateway wired to the configured Kafka and Cassandra (migrations applied)."""
    session = cassandra.connect(settings)
    cassandra.migrate(session, settings.cassandra_keyspace, settings.cassandra_replication)
    tracker = CommandTracker(Bus(settings))
    reads = CassandraReadModel(session, settings.cassandra_keyspace)
    answers = CassandraAnswers(session, settings.cassandra_keyspace)
    return Gateway(
        settings=settings,
        sender=tracker,
        reads=reads,
        idempotency=TieredIdempotencyStore(LocalIdempotencyStore(), answers),
        tracker=tracker,
        on_close=(reads.close, answers.close, session.cluster.shutdown),
    )


def build_app(settings: Settings) -> FastAPI:
    return create_app(build_gateway(settings))
