"""The gateway's store adapters: `IdempotencyStore` in process memory, backed by Cassandra.

Every signed write passes through the idempotency store, so it must not cost Paxos rounds: two
lightweight transactions per order (claim, then answer) measured 3.5 ms alone and at most ~590
orders/s on this machine's Cassandra, before anything else ran. So the store is tiered:

* **in process** (`LocalIdempotencyStore`): claims and answers, atomic under a lock, expiring on
  the monotonic clock, bounded (oldest first out). This is where a retry to the same replica is
  answered, and where a concurrent duplicate is told IDEMPOTENCY_IN_PROGRESS.
* **Cassandra** (`CassandraAnswers`, table `gateway_idempotency`): completed answers only, written
  after the answer without waiting (plain writes with the TTL, gathered for up to 20 ms into one
  request by a writer thread), and read only when a command comes
  back refused as already used (`idempotency.recover`): a retry that lands on another replica, or
  after a restart, is refused NONCE_REUSED by risk — its signed nonce was spent by the first — and
  then gets the first answer instead, or IDEMPOTENCY_KEY_REUSED if the key answered another body.
  A new key costs no Cassandra read: the read was ~1 ms of Cassandra CPU and a thread-pool round
  trip on every order (docs/performance.md, session 9).

What is given up: atomicity *across* replicas — two copies of one request racing on two replicas
both proceed; neither runs twice (the second is refused NONCE_REUSED) and the stored answer is the
last one written — and, across replicas only, the refusal of a key reused for *another* body that is
itself new and validly signed: it runs, as the distinct signed command it is, instead of being
refused IDEMPOTENCY_KEY_REUSED (the replica that saw the first body still refuses it). See
docs/gateway.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from cassandra import ConsistencyLevel, OperationTimedOut, RequestExecutionException
from cassandra.cluster import NoHostAvailable, Session

from services.common.stores import cassandra
from services.gateway.core.idempotency import AnswersUnavailable, IdempotencyEntry, IdempotencyState

log = logging.getLogger(__name__)

TABLE = "gateway_idempotency"
MAX_LOCAL_ENTRIES = 200_000


class LocalIdempotencyStore:
    """`IdempotencyStore` in this process: a bounded, expiring map of (trader, key) → entry."""

    def __init__(
        self, *, max_entries: int = MAX_LOCAL_ENTRIES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[IdempotencyEntry, float]] = OrderedDict()
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, trader: str, key: str) -> IdempotencyEntry | None:
        with self._lock:
            return self._live(trader, key)

    def put_if_absent(self, entry: IdempotencyEntry, *, ttl_s: int) -> IdempotencyEntry | None:
        with self._lock:
            existing = self._live(entry.trader, entry.key)
            if existing is None:
                self._store(entry, ttl_s)
            return existing

    def complete(
        self, trader: str, key: str, fingerprint: str, status: int, body: bytes, *, ttl_s: int
    ) -> bool:
        with self._lock:
            existing = self._live(trader, key)
            if existing is None or existing.fingerprint != fingerprint:
                return False
            self._store(replace(existing, state=IdempotencyState.COMPLETED, status=status, body=body), ttl_s)
            return True

    def release(self, trader: str, key: str, fingerprint: str) -> bool:
        with self._lock:
            existing = self._live(trader, key)
            if existing is None or existing.fingerprint != fingerprint:
                return False
            del self._entries[(trader, key)]
            return True

    def answered(self, trader: str, key: str) -> IdempotencyEntry | None:
        """Nothing: this store shares no answers with other processes."""
        return None

    def _live(self, trader: str, key: str) -> IdempotencyEntry | None:
        found = self._entries.get((trader, key))
        if found is None:
            return None
        if found[1] <= self._clock():
            del self._entries[(trader, key)]
            return None
        return found[0]

    def _store(self, entry: IdempotencyEntry, ttl_s: int) -> None:
        self._entries[(entry.trader, entry.key)] = (entry, self._clock() + ttl_s)
        self._entries.move_to_end((entry.trader, entry.key))
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


ANSWERS_FLUSH_S = 0.02
"""How long a completed answer may wait for others to share its write (one request for all)."""


class CassandraAnswers:
    """Completed answers in Cassandra (migration `0002_gateway_idempotency.cql`): plain reads and
    writes, no Paxos. Answers are written by a thread of their own, every `flush_s` all that came
    in since, in batches by replica (`cassandra.execute_grouped`): one request per flush instead of
    one per order."""

    def __init__(self, session: Session, keyspace: str, *, flush_s: float = ANSWERS_FLUSH_S) -> None:
        table = f"{keyspace}.{TABLE}"
        self._session = session
        self._get = session.prepare(
            f"SELECT fingerprint, state, status, body FROM {table} WHERE trader = ? AND idempotency_key = ?"
        )
        self._put = session.prepare(
            f"INSERT INTO {table} (trader, idempotency_key, fingerprint, state, status, body) "
            "VALUES (?, ?, ?, ?, ?, ?) USING TTL ?"
        )
        for statement in (self._get, self._put):
            statement.consistency_level = ConsistencyLevel.LOCAL_QUORUM
        self._pending: deque[tuple[Any, ...]] = deque()
        self._flush_s = flush_s
        self._closed = threading.Event()
        self._writer = threading.Thread(target=self._write_pending, name="idempotency-answers", daemon=True)
        self._writer.start()

    def get(self, trader: str, key: str) -> IdempotencyEntry | None:
        try:
            row = self._session.execute(self._get, (trader, key)).one()
        except (NoHostAvailable, OperationTimedOut, RequestExecutionException) as error:
            raise AnswersUnavailable(str(error)) from error
        return None if row is None else _entry(trader, key, row)

    def save(self, entry: IdempotencyEntry, *, ttl_s: int) -> None:
        """Queue `entry` for the next flush, without waiting; a failed write is logged (it only
        loses a replay on another replica)."""
        values = (
            entry.trader,
            entry.key,
            entry.fingerprint,
            entry.state.value,
            entry.status,
            entry.body,
            ttl_s,
        )
        self._pending.append(values)

    def close(self) -> None:
        """Write what is pending, then stop the writer."""
        self._closed.set()
        self._writer.join()

    def _write_pending(self) -> None:
        while not self._closed.wait(self._flush_s):
            self.flush()
        self.flush()

    def flush(self) -> None:
        """Write every queued answer now."""
        values = [self._pending.popleft() for _ in range(len(self._pending))]
        if not values:
            return
        try:
            cassandra.execute_grouped(self._session, [(self._put, v) for v in values])
        except Exception as error:  # noqa: BLE001 - logged: a lost answer only loses a replay
            log.warning("%d idempotency answers not stored: %s", len(values), error)


class TieredIdempotencyStore:
    """`IdempotencyStore` of a process: local claims and answers, answers shared through Cassandra.
    Only `answered` waits on Cassandra; the rest never blocks (the event loop calls it directly)."""

    def __init__(self, local: LocalIdempotencyStore, shared: CassandraAnswers) -> None:
        self.local = local
        self.shared = shared

    def get(self, trader: str, key: str) -> IdempotencyEntry | None:
        return self.local.get(trader, key)

    def put_if_absent(self, entry: IdempotencyEntry, *, ttl_s: int) -> IdempotencyEntry | None:
        return self.local.put_if_absent(entry, ttl_s=ttl_s)

    def complete(
        self, trader: str, key: str, fingerprint: str, status: int, body: bytes, *, ttl_s: int
    ) -> bool:
        if not self.local.complete(trader, key, fingerprint, status, body, ttl_s=ttl_s):
            return False
        done = IdempotencyEntry(trader, key, fingerprint, IdempotencyState.COMPLETED, status, body)
        self.shared.save(done, ttl_s=ttl_s)
        return True

    def release(self, trader: str, key: str, fingerprint: str) -> bool:
        return self.local.release(trader, key, fingerprint)

    def answered(self, trader: str, key: str) -> IdempotencyEntry | None:
        return self.shared.get(trader, key)


def _field(row: Any, name: str) -> Any:
    # Works whatever row factory the session uses (named tuples by default, dicts if configured).
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def _entry(trader: str, key: str, row: Any) -> IdempotencyEntry:
    return IdempotencyEntry(
        trader=trader,
        key=key,
        fingerprint=_field(row, "fingerprint"),
        state=IdempotencyState(_field(row, "state")),
        status=_field(row, "status") or 0,
        body=bytes(_field(row, "body") or b""),
    )
