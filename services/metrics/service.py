"""The metrics service: the log → ClickHouse, the only process that opens the metrics database.

One consumer reads trade.log, accounts.events, oracle.prices and options.iv from offset 0 on
every start, without a consumer group's commits (`assign`, never `commit`): the fold's state —
the depth of every book, the acceptance time of every open order — is a function of the whole
log, so it is rebuilt by reading it. What it writes is not repeated: on start it reads, per cold
table and per partition, the highest log offset stored, and inserts only rows past it
(`core.fold.past_watermark`). A crash between two inserts therefore resumes exactly where each
table stopped, the materialized views (which sum what they are given) never see a row twice, and
the ReplacingMergeTrees (keyed by each event's identity) would drop one anyway at merge / FINAL.

The same process runs the daily roll-up at 00:00 UTC and serves the dashboards and the analysts'
read-only SQL over HTTP (`services/metrics/app.py`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from clickhouse_connect.driver.client import Client
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from services.common.bus import Bus, Inbound, decode_message, is_fatal, run_until_stopped, take_batch
from services.common.observability import watch_consumer
from services.common.serde import UndecodableRecord
from services.common.settings import Settings
from services.common.stores import clickhouse
from services.common.topics import ACCOUNTS_EVENTS, OPTIONS_IV, ORACLE_PRICES, TRADE_LOG, TopicSpec
from services.metrics.core.fold import (
    COLUMNS,
    POSITIONED,
    LogPosition,
    MetricsFold,
    Rows,
    advance,
    merge,
    past_watermark,
)
from services.metrics.core.sql import day_to_roll, next_midnight
from services.metrics.rollup import rollup
from services.metrics.store import Store

log = logging.getLogger(__name__)

INPUTS: tuple[TopicSpec, ...] = (TRADE_LOG, ACCOUNTS_EVENTS, ORACLE_PRICES, OPTIONS_IV)
HOT_HOURS = 48


def load_watermarks(store: Store) -> dict[str, dict[int, int]]:
    """Per cold table, per source partition: the highest log offset already stored."""
    marks: dict[str, dict[int, int]] = {}
    for table in POSITIONED:
        rows = store.rows(f"SELECT log_partition, max(log_offset) FROM {{db}}.{table} GROUP BY log_partition")
        marks[table] = {int(p): int(o) for p, o in rows}
    return marks


class MetricsProjector:
    """Reads the four input topics from offset 0 and writes the rows past each table's watermark."""

    def __init__(self, bus: Bus, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.bus = bus
        self.store = store
        self.fold = MetricsFold()
        self.watermarks = load_watermarks(store)
        self.records = 0
        self.rows_written = 0
        self._clock = clock
        self._inputs = {bus.topic(s).name: s for s in INPUTS}
        # The group id is required by the client and never used: offsets are never committed.
        config = bus.consumer_config(f"metrics.{store.database}") | {"enable.partition.eof": True}
        self._consumer = Consumer(config)
        watch_consumer(self._consumer, "metrics")  # its lag is how stale the hot tier is
        self._partitions = {(name, p) for name, s in self._inputs.items() for p in range(s.partitions)}
        self._at_end: set[tuple[str, int]] = set()
        self._consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in sorted(self._partitions)])

    def run_once(self, max_records: int = 2_000, timeout_s: float = 0.2) -> int:
        """Fold one batch and write its new rows; returns how many records it read."""
        rows: Rows = {}
        read = 0
        for msg in take_batch(self._consumer, max_records, timeout_s, linger_s=0.01):
            where = (msg.topic() or "", msg.partition() or 0)
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._at_end.add(where)
                elif is_fatal(error):
                    raise KafkaException(error)
                else:
                    log.warning("consumer error (will retry): %s", error)
                continue
            self._at_end.discard(where)
            read += 1
            try:
                inbound = decode_message(self.bus, msg, self._inputs[where[0]])
            except UndecodableRecord as exc:  # the projectors dead-letter it; here it is only skipped
                log.warning("skipping undecodable %s@%s: %s", where, msg.offset(), exc)
                continue
            pos = LogPosition(inbound.partition, inbound.offset, inbound.timestamp_ms)
            merge(rows, self._fold(self._inputs[where[0]], inbound, pos))
        self.write(rows)
        self.records += read
        return read

    def _fold(self, spec: TopicSpec, inbound: Inbound, pos: LogPosition) -> Rows:
        if spec is TRADE_LOG:
            return self.fold.trade_entry(inbound.record, pos)
        if spec is ACCOUNTS_EVENTS:  # its ledger row is built from the Avro dict
            return self.fold.account_event(inbound.record, inbound.value, pos)
        if spec is ORACLE_PRICES:
            return self.fold.index_price(inbound.record, pos)
        return self.fold.implied_vol(inbound.record, pos)

    def write(self, rows: Rows) -> None:
        """Insert the rows past the watermarks, table by table, then raise the watermarks."""
        fresh = past_watermark(rows, self.watermarks)
        if "depth" in fresh:  # depth matters for 48 h only; a replay from offset 0 skips the rest
            horizon = dt.datetime.fromtimestamp(self._clock() - HOT_HOURS * 3600, tz=dt.UTC)
            fresh["depth"] = [r for r in fresh["depth"] if r[1] >= horizon]
        for table, found in fresh.items():
            if found:
                self.store.insert(table, found, COLUMNS[table])
                self.rows_written += len(found)
        advance(self.watermarks, fresh)

    def caught_up(self) -> bool:
        """Whether every input partition has been read to its end (as of the last poll)."""
        return self._at_end >= self._partitions

    def run(self, stop: threading.Event) -> None:
        run_until_stopped(self.run_once, self.close, stop)

    def close(self) -> None:
        self._consumer.close()


class RollupScheduler:
    """Rolls up the day that just ended at every 00:00 UTC (and yesterday once, on start)."""

    def __init__(self, store: Store, *, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.store = store
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def run(self, stop: threading.Event) -> None:
        self.roll(day_to_roll(self._clock()))
        while not stop.is_set():
            wait_s = (next_midnight(self._clock()) - self._clock()).total_seconds()
            if stop.wait(max(wait_s, 0.0)):
                return
            self.roll(day_to_roll(self._clock()))

    def roll(self, day: dt.date) -> None:
        try:
            log.info("roll-up of %s: %s", day, rollup(self.store, day))
        except Exception:  # a failed roll-up must not stop the metrics; re-run it by hand
            log.exception("roll-up of %s failed; re-run: services.metrics rollup --day %s", day, day)


def rebuild_into(
    settings: Settings, database: str, *, client: Client | None = None, timeout_s: float = 600
) -> MetricsProjector:
    """Project the log from offset 0 into `database` (created and migrated if needed) until every
    input partition is read to its end; returns the finished projector (its counters).

    `client`: the process's ClickHouse client, when this process already holds one — with the
    embedded engine a second process cannot open the same data path (the replay engineer's path:
    rebuild into a fresh database next to the live one, then `compare`).
    """
    store = Store(client, database) if client is not None else Store.open(settings.clickhouse_dsn, database)
    if client is not None:
        clickhouse.migrate(client, database)
    projector = MetricsProjector(Bus(settings), store)
    deadline = time.monotonic() + timeout_s
    try:
        while not projector.caught_up():
            if time.monotonic() > deadline:
                raise TimeoutError(f"rebuild of {database} not caught up within {timeout_s} s")
            projector.run_once()
    finally:
        projector.close()
    return projector


# Per table, the rows compared by `compare`: cold and warm tables as stored (log positions left
# out, so a log replayed elsewhere compares too), hot tables finalised, within 47 h (TTL drops
# older buckets at merge time, which differs between two databases).
_HOT = "WHERE bucket >= now() - INTERVAL 47 HOUR"
CANONICAL: dict[str, str] = {
    **{
        t: f"SELECT * EXCEPT (log_partition, log_offset) FROM {{db}}.{t} FINAL"
        for t in POSITIONED
        if t != "account_events"
    },
    "account_events": "SELECT event_id, trader, ts_event, kind, amount, detail "
    "FROM {db}.account_events FINAL",
    "daily_markets": "SELECT * FROM {db}.daily_markets FINAL",
    "daily_traders": "SELECT * FROM {db}.daily_traders FINAL",
    "depth": "SELECT * FROM {db}.depth FINAL WHERE ts >= now() - INTERVAL 47 HOUR",
    "open_interest": "SELECT market, sum(open_interest) FROM {db}.open_interest GROUP BY market",
    **{
        t: "SELECT bucket, market, sum(trades), sum(volume), sum(notional), sum(fees), max(high), "
        f"min(low), argMinMerge(open), argMaxMerge(close) FROM {{db}}.{t} {_HOT} GROUP BY bucket, market"
        for t in ("trades_1m", "trades_5s")
    },
    "latency_1m": "SELECT bucket, market, immediate, sum(orders), max(worst_us) FROM {db}.latency_1m "
    f"{_HOT} GROUP BY bucket, market, immediate",
    "open_interest_1m": "SELECT bucket, market, sum(fills), sum(oi_delta) "
    f"FROM {{db}}.open_interest_1m {_HOT} GROUP BY bucket, market",
    "marks_1m": "SELECT bucket, market, argMaxMerge(mark_price), argMaxMerge(index_price) "
    f"FROM {{db}}.marks_1m {_HOT} GROUP BY bucket, market",
    "funding_1m": "SELECT bucket, market, argMaxMerge(rate_e9), max(last_interval_end) "
    f"FROM {{db}}.funding_1m {_HOT} GROUP BY bucket, market",
    "iv_1m": f"SELECT bucket, market, sum(trades), argMaxMerge(iv_last) FROM {{db}}.iv_1m {_HOT} "
    "GROUP BY bucket, market",
    "depth_1m": f"SELECT bucket, market, max(last_seq), argMaxMerge(depth) FROM {{db}}.depth_1m {_HOT} "
    "GROUP BY bucket, market",
}


def compare(client: Client, db_a: str, db_b: str) -> list[str]:
    """The differences between two metrics databases, one line per table that differs (empty:
    the same rows everywhere). Each table is compared by row count and an order-free hash of its
    canonical rows (`CANONICAL`)."""
    differences = []
    for table, template in CANONICAL.items():
        found = []
        for db in (db_a, db_b):
            query = f"SELECT count(), sum(cityHash64(*)) FROM ({template.format(db=db)})"
            found.append(tuple(client.query(query).result_rows[0]))
        if found[0] != found[1]:
            (rows_a, hash_a), (rows_b, hash_b) = found
            differences.append(
                f"{table}: {rows_a} rows (hash {hash_a}) in {db_a}, {rows_b} rows (hash {hash_b}) in {db_b}"
            )
    return differences
