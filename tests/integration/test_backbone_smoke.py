"""The backbone end to end: Avro record in a Kafka transaction → projector → Cassandra, and the
metrics service → ClickHouse."""

from __future__ import annotations

import time

from cassandra.cluster import Session
from clickhouse_connect.driver.client import Client

from services.common.bus import Bus, Outbound, TypedProducer
from services.common.topics import ACCOUNTS_EVENTS, TOPICS, ensure_topics
from services.metrics.service import rebuild_into
from services.projector.service import AccountsProjector
from tests.kit import deposit_event, trader_address

ALICE = trader_address(0xA11CE)


def _project_until(projector: AccountsProjector, count: int, timeout_s: float = 30) -> int:
    done, deadline = 0, time.monotonic() + timeout_s
    while done < count and time.monotonic() < deadline:
        done += projector.run_once()
    return done


def test_deposits_reach_cassandra_and_clickhouse_and_reprojection_changes_nothing(
    bus: Bus, cassandra_session: Session, clickhouse_client: Client
) -> None:
    # State: three deposits for Alice committed in one transaction.
    producer = TypedProducer(bus, transactional_id=f"{bus.settings.topic_prefix}smoke")
    deposits = [deposit_event(trader=ALICE, amount=a, n=n) for n, a in enumerate([1_000_000, 2_500_000, 3])]
    with producer.transaction():
        for d in deposits:
            producer.send(Outbound(ACCOUNTS_EVENTS, key=ALICE, value=d))

    # Action: the projector reads them; later a second projector replays from offset 0. The
    # metrics service (ClickHouse's only writer) reads them, and later reads the log again.
    first = AccountsProjector(bus, cassandra_session, group_id="smoke-1")
    assert _project_until(first, 3) == 3
    replay = AccountsProjector(bus, cassandra_session, group_id="smoke-replay")
    assert _project_until(replay, 3) == 3
    for _ in range(2):
        rebuild_into(bus.settings, bus.settings.clickhouse_database, client=clickhouse_client, timeout_s=60)

    # Expectation: both stores hold exactly the three deposits, once each.
    keyspace, db = bus.settings.cassandra_keyspace, bus.settings.clickhouse_database
    rows = cassandra_session.execute(
        f"SELECT kind, amount FROM {keyspace}.account_events_by_trader WHERE trader = %s", (ALICE,)
    ).all()
    assert sorted(r.amount for r in rows) == [3, 1_000_000, 2_500_000]
    assert {r.kind for r in rows} == {"DepositConfirmed"}
    totals = clickhouse_client.query(
        f"SELECT count(), sum(amount) FROM {db}.account_events FINAL WHERE trader = %(t)s", {"t": ALICE}
    ).result_rows
    assert totals == [(3, 3_500_003)]


def test_topic_creation_is_idempotent(bus: Bus) -> None:
    assert ensure_topics(bus.client_config(), [bus.topic(t) for t in TOPICS]) == []
