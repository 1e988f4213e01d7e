"""Projector service: the log → Cassandra, idempotently, at least once.

Two consumers in one process, each committing its offsets only after its writes have landed:

* `AccountsProjector` (group `projector.accounts`): every account event into the account history,
  `account_events_by_trader` (Cassandra); ClickHouse's `account_events` is written by the metrics
  service, the only process that opens the metrics database (docs/analytics.md);
* `ReadModelProjector` (group `projector.read-model.<keyspace>`): trade.log and accounts.events
  into the gateway's read model (`docs/read-model.md`) through the pure core in `views.py`.

The read model's group is named after its keyspace, so its committed offsets say how far that
keyspace is projected: pointing the projector at a fresh keyspace rebuilds it from offset 0.
A failed write stops the process (nothing is committed; the restart projects the batch again).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from cassandra import ConsistencyLevel
from cassandra.cluster import Session

from services.common.bus import Bus, ProjectionConsumer, run_until_stopped
from services.common.failpoints import failpoint, skipped
from services.common.records import TradeLogEntry
from services.common.settings import Settings
from services.common.stores import cassandra
from services.common.topics import ACCOUNTS_EVENTS, TRADE_LOG
from services.projector.core import AccountEventRow, account_event_row
from services.projector.prices import PricesProjector
from services.projector.tables import Writer
from services.projector.views import OrderStates, Write, account_writes, coalesce

log = logging.getLogger(__name__)

GROUP_ID = "projector.accounts"
READ_MODEL_GROUP = "projector.read-model.{keyspace}"


class AccountsProjector:
    """Writes every `AccountEvent` to the account history, then commits its offsets."""

    def __init__(self, bus: Bus, session: Session, *, group_id: str = GROUP_ID) -> None:
        settings = bus.settings
        self._session = session
        self._insert = session.prepare(
            f"INSERT INTO {settings.cassandra_keyspace}.account_events_by_trader "
            "(trader, ts_event, event_id, kind, amount, detail) VALUES (?, ?, ?, ?, ?, ?)"
        )
        self._insert.consistency_level = ConsistencyLevel.LOCAL_QUORUM
        self._consumer = ProjectionConsumer(
            bus, group_id=group_id, inputs=[ACCOUNTS_EVENTS], linger_s=settings.projector_linger_ms / 1000
        )

    def run_once(self, max_records: int = 500, timeout_s: float = 0.2) -> int:
        """Project one batch; returns how many records it wrote."""
        rows = [account_event_row(m.value) for m in self._consumer.poll_batch(max_records, timeout_s)]
        if rows:
            self._write_cassandra(rows)
        self._consumer.commit()
        return len(rows)

    def run(self, stop: threading.Event) -> None:
        run_until_stopped(self.run_once, self.close, stop)

    def close(self) -> None:
        self._consumer.close()

    def _write_cassandra(self, rows: list[AccountEventRow]) -> None:
        cassandra.execute_grouped(
            self._session,
            [
                (self._insert, (r.trader, _utc(r.ts_event_us), r.event_id, r.kind, r.amount, r.detail))
                for r in rows
            ],
        )


class ReadModelProjector:
    """trade.log and accounts.events → orders, open orders, markets, balances and positions."""

    def __init__(self, bus: Bus, session: Session, *, group_id: str | None = None) -> None:
        keyspace = bus.settings.cassandra_keyspace
        self.states = OrderStates()
        self.writer = Writer(session, keyspace)
        self.writes_sent = 0
        self.orders_loaded = 0
        self._trade_log = bus.topic(TRADE_LOG).name
        self._consumer = ProjectionConsumer(
            bus,
            group_id=group_id or READ_MODEL_GROUP.format(keyspace=keyspace),
            inputs=[TRADE_LOG, ACCOUNTS_EVENTS],
            linger_s=bus.settings.projector_linger_ms / 1000,
        )

    def run_once(self, max_records: int = 500, timeout_s: float = 0.2) -> int:
        """Project one batch, then commit its offsets; returns how many records it read."""
        batch = self._consumer.poll_batch(max_records, timeout_s)
        try:
            pending: list[Write] = []
            for message in batch:
                if message.topic != self._trade_log:
                    pending += account_writes(message.record, message.offset)
                    continue
                if skipped("projector.skip_entry"):
                    continue  # a deliberately broken projector (the soak's checker must catch it)
                entry: TradeLogEntry = message.record
                missing = self.states.needs(entry)
                if missing:  # read back after this run's own writes have landed
                    self._write(pending)
                    pending = []
                    self.states.load(self.writer.load_orders(missing))
                    self.orders_loaded += len(missing)
                pending += self.states.apply(entry)
            self._write(pending)
        except BaseException:
            self.states.forget()  # what was folded may not be what the store holds
            raise
        if batch:
            failpoint("projector.before_commit")  # written, not committed: a restart writes it again
        self._consumer.commit()
        return len(batch)

    def run(self, stop: threading.Event) -> None:
        run_until_stopped(self.run_once, self.close, stop)

    def close(self) -> None:
        self._consumer.close()

    def _write(self, writes: list[Write]) -> None:
        if writes:
            self.writes_sent += self.writer.execute(coalesce(writes))


class Projector:
    """The projectors of one process, each in a thread of its own (so one's gathering window does not
    hold up another): what `python -m services.projector` runs."""

    def __init__(
        self, *parts: AccountsProjector | ReadModelProjector | PricesProjector, session: Session | None = None
    ) -> None:
        self.parts = parts
        self.session = session
        """The Cassandra session the parts share, shut down with them (None: the caller owns it)."""

    def run(self, stop: threading.Event) -> None:
        """Run every part until `stop` is set, or until one fails (which stops the others: the
        process exits and is restarted, projecting again what was not committed)."""
        failed = threading.Event()

        def loop(part: AccountsProjector | ReadModelProjector | PricesProjector) -> None:
            try:
                while not (stop.is_set() or failed.is_set()):
                    part.run_once(timeout_s=0.1)
            except BaseException:
                failed.set()
                log.exception("%s failed; stopping the projector", type(part).__name__)
            finally:
                part.close()

        threads = [threading.Thread(target=loop, args=(p,), name=type(p).__name__) for p in self.parts]
        for thread in threads:
            thread.start()
        try:
            while not (stop.is_set() or failed.is_set()):
                stop.wait(0.2)
        finally:
            failed.set()  # the parts finish their batch in flight, then close
            for thread in threads:
                thread.join()
            if self.session is not None:
                self.session.cluster.shutdown()
        if not stop.is_set():
            raise RuntimeError("a projection failed (logged above)")


def _utc(ts_us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_us / 1_000_000, tz=dt.UTC)


PARTS = ("accounts", "read-model", "prices")


def build(settings: Settings, parts: tuple[str, ...] = PARTS) -> Projector:
    """Connect to the stores, apply their migrations, and return a ready projector running `parts`
    (the account history, the read model, the oracle prices, or any of them)."""
    session = cassandra.connect(settings)
    cassandra.migrate(session, settings.cassandra_keyspace, settings.cassandra_replication)
    bus = Bus(settings)
    running: list[AccountsProjector | ReadModelProjector | PricesProjector] = []
    if "accounts" in parts:
        running.append(AccountsProjector(bus, session))
    if "read-model" in parts:
        running.append(ReadModelProjector(bus, session))
    if "prices" in parts:
        running.append(PricesProjector(bus, session))
    return Projector(*running, session=session)
