"""Oracle prices in Cassandra: oracle.prices → `prices` and `latest_prices`, and their queries.

Tables: `services/common/stores/migrations/cassandra/0004_prices.cql`; docs/oracle.md.

Idempotent and order-safe, like the read model: a row is a pure function of one `IndexPrice`,
keyed by (index, day, ts_event), and written `USING TIMESTAMP ts_event` (µs). Re-projecting a
round writes the same values at the same timestamp; for `latest_prices` (one row per index) a
later round has a later timestamp, so an older round projected late never wins.

Every row lives 7 days from its *round*, not from its write: the TTL bound is 604,800 s minus the
round's age, and a round already older than that is not written. So a rebuild from offset 0
writes the same live rows, expiring when they would have — not 7 more days of old prices.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cassandra.cluster import Session
from cassandra.query import UNSET_VALUE, PreparedStatement

from services.common.bus import Bus, ProjectionConsumer, run_until_stopped
from services.common.records import IndexPrice, QuoteStatus
from services.common.topics import ORACLE_PRICES

TTL_S = 7 * 24 * 3600
US = 1_000_000
DAY_US = 24 * 3600 * US
EPOCH = dt.date(1970, 1, 1)
GROUP_ID = "projector.prices.{keyspace}"
COLUMNS = ("index_symbol", "ts_event", "price_e9", "twaps", "accepted", "sources")


@dataclass(frozen=True, slots=True)
class PriceRow:
    """One oracle round of one index as stored (times in µs, held to the millisecond)."""

    index_symbol: str
    ts_event: int
    price_e9: int | None
    twaps: dict[int, int] = field(default_factory=dict)
    """window_s → TWAP × 1e9; windows without a price are left out."""
    accepted: int = 0
    sources: int = 0
    quotes: str = "[]"
    """The round's quotes and verdicts, JSON (`latest_prices` does not keep them: empty list)."""


def price_row(record: IndexPrice) -> PriceRow:
    """The row of a round. Pure."""
    quotes = [
        {
            "source": q.source, "feed": q.feed, "price_e9": q.price_e9, "confidence_e9": q.confidence_e9,
            "published_at": q.published_at, "status": str(q.status), "reason": q.reason,
        }
        for q in record.quotes
    ]  # fmt: skip
    return PriceRow(
        index_symbol=record.index_symbol,
        ts_event=record.ts_event // 1000 * 1000,
        price_e9=record.price_e9,
        twaps={t.window_s: t.price_e9 for t in record.twaps if t.price_e9 is not None},
        accepted=sum(1 for q in record.quotes if q.status is QuoteStatus.ACCEPTED),
        sources=len(record.quotes),
        quotes=json.dumps(quotes, separators=(",", ":")),
    )


def ttl_for(ts_event_us: int, now_us: int) -> int:
    """Seconds the round's row has left to live (≤ 0: already expired). Pure."""
    return TTL_S - max(0, now_us - ts_event_us) // US


def day_of(ts_us: int) -> dt.date:
    """The UTC day of a time in µs (the partition's bucket)."""
    return EPOCH + dt.timedelta(days=ts_us // DAY_US)


class PricesTable:
    """Prepared, timestamped writes of price rows; one instance per (session, keyspace)."""

    def __init__(self, session: Session, keyspace: str) -> None:
        self._session = session
        self._insert = session.prepare(
            f"INSERT INTO {keyspace}.prices (index_symbol, day, ts_event, price_e9, twaps, accepted, "
            "sources, quotes) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?"
        )
        self._latest = session.prepare(
            f"INSERT INTO {keyspace}.latest_prices ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?) "
            "USING TTL ? AND TIMESTAMP ?"
        )

    def write(self, records: list[IndexPrice], now_us: int) -> int:
        """Write every still-live round (and, for priced ones, the latest row); returns statements."""
        futures = []
        for record in records:
            ttl = ttl_for(record.ts_event, now_us)
            if ttl <= 0:
                continue
            row = price_row(record)
            version = record.ts_event
            price = UNSET_VALUE if row.price_e9 is None else row.price_e9
            common = (row.index_symbol, row.ts_event // 1000)
            futures.append(self._session.execute_async(self._insert, (
                row.index_symbol, day_of(record.ts_event), common[1], price, row.twaps, row.accepted,
                row.sources, row.quotes, ttl, version,
            )))  # fmt: skip
            if row.price_e9 is not None:
                futures.append(self._session.execute_async(self._latest, (
                    *common, row.price_e9, row.twaps, row.accepted, row.sources, ttl, version,
                )))  # fmt: skip
        for future in futures:
            future.result()
        return len(futures)


class PricesProjector:
    """oracle.prices → `prices` and `latest_prices`, then commits its offsets (at least once).

    Its group is named after the keyspace, like the read model's: a fresh keyspace starts from
    offset 0 and gets the same live rows.
    """

    def __init__(
        self,
        bus: Bus,
        session: Session,
        *,
        group_id: str | None = None,
        clock: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        keyspace = bus.settings.cassandra_keyspace
        self.table = PricesTable(session, keyspace)
        self.statements = 0
        self._clock = clock
        self._consumer = ProjectionConsumer(
            bus, group_id=group_id or GROUP_ID.format(keyspace=keyspace), inputs=[ORACLE_PRICES]
        )

    def run_once(self, max_records: int = 500, timeout_s: float = 0.2) -> int:
        """Project one batch, then commit its offsets; returns how many records it read."""
        batch = self._consumer.poll_batch(max_records, timeout_s)
        records = [m.record for m in batch]
        if records:
            self.statements += self.table.write(records, self._clock())
        self._consumer.commit()
        return len(batch)

    def run(self, stop: threading.Event) -> None:
        run_until_stopped(self.run_once, self.close, stop)

    def close(self) -> None:
        self._consumer.close()


# -- queries (gateway, ws-push) ---------------------------------------------------------------

_PREPARED: weakref.WeakKeyDictionary[Session, dict[str, PreparedStatement]] = weakref.WeakKeyDictionary()
_SELECT = "index_symbol, toUnixTimestamp(ts_event) AS ts_event, price_e9, twaps, accepted, sources"


def latest_prices(session: Session, keyspace: str) -> list[PriceRow]:
    """The latest priced round of every index priced in the last 7 days, by symbol."""
    rows = session.execute(_prepared(session, f"SELECT {_SELECT} FROM {keyspace}.latest_prices"))
    return sorted((_row(r) for r in rows), key=lambda r: r.index_symbol)


def latest_price(session: Session, keyspace: str, index_symbol: str) -> PriceRow | None:
    """The latest priced round of one index, or None."""
    statement = _prepared(session, f"SELECT {_SELECT} FROM {keyspace}.latest_prices WHERE index_symbol = ?")
    found = session.execute(statement, (index_symbol,)).one()
    return None if found is None else _row(found)


def prices_between(
    session: Session, keyspace: str, index_symbol: str, *, since_us: int, until_us: int, limit: int = 1000
) -> list[PriceRow]:
    """Rounds of one index in [since_us, until_us), newest first, at most `limit` (one read per
    day partition, newest day first, stopping once `limit` rows are found)."""
    if until_us <= since_us or limit <= 0:
        return []
    statement = _prepared(
        session,
        f"SELECT {_SELECT}, quotes FROM {keyspace}.prices WHERE index_symbol = ? AND day = ? "
        "AND ts_event >= ? AND ts_event < ? LIMIT ?",
    )
    found: list[PriceRow] = []
    day = (until_us - 1) // DAY_US
    while day >= since_us // DAY_US and len(found) < limit:
        bound = (index_symbol, EPOCH + dt.timedelta(days=day), since_us // 1000, -(-until_us // 1000))
        found += [_row(r) for r in session.execute(statement, (*bound, limit - len(found)))]
        day -= 1
    return [r for r in found if since_us <= r.ts_event < until_us]


def _row(r: Any) -> PriceRow:
    return PriceRow(
        index_symbol=r.index_symbol,
        ts_event=r.ts_event * 1000,
        price_e9=r.price_e9,
        twaps=dict(r.twaps or {}),
        accepted=r.accepted or 0,
        sources=r.sources or 0,
        quotes=getattr(r, "quotes", None) or "[]",
    )


def _prepared(session: Session, cql: str) -> PreparedStatement:
    cache = _PREPARED.setdefault(session, {})
    statement = cache.get(cql)
    if statement is None:
        statement = cache[cql] = session.prepare(cql)
    return statement
