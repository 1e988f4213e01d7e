"""Writes grouped by replica (`cassandra.execute_grouped`) and the gateway's coalesced answer writer,
against the real Cassandra node."""

from __future__ import annotations

from cassandra.cluster import Session

from services.common.stores import cassandra
from services.gateway.core.idempotency import IdempotencyEntry, IdempotencyState
from services.gateway.stores import TABLE, CassandraAnswers


def _answer(n: int) -> IdempotencyEntry:
    return IdempotencyEntry(
        trader=f"0x{n:040x}",
        key=f"key-{n}",
        fingerprint=f"fp-{n}",
        state=IdempotencyState.COMPLETED,
        status=201,
        body=b'{"n": %d}' % n,
    )


def test_writes_to_many_partitions_of_one_replica_go_as_few_batches(
    cassandra_session: Session, session_keyspace: str
) -> None:
    # State: 250 answers for 250 traders — 250 partitions, all on the one node.
    insert = cassandra_session.prepare(
        f"INSERT INTO {session_keyspace}.{TABLE} (trader, idempotency_key, fingerprint, state, status, "
        "body) VALUES (?, ?, ?, ?, ?, ?)"
    )
    answers = [_answer(n) for n in range(250)]
    rows = [(a.trader, a.key, a.fingerprint, a.state.value, a.status, a.body) for a in answers]

    # Action
    requests = cassandra.execute_grouped(cassandra_session, [(insert, row) for row in rows])

    # Expectation: five batches (at most 50 statements each), and every row is there.
    assert requests == 5
    select = f"SELECT trader, body FROM {session_keyspace}.{TABLE} WHERE trader = %s AND idempotency_key = %s"
    stored = [cassandra_session.execute(select, (row[0], row[1])).one() for row in rows]
    assert [(r.trader, r.body) for r in stored] == [(row[0], row[5]) for row in rows]


def test_answers_queued_at_close_are_written_before_the_writer_stops(
    cassandra_session: Session, session_keyspace: str
) -> None:
    # State: a writer that would not flush by itself within the test.
    answers = CassandraAnswers(cassandra_session, session_keyspace, flush_s=3600)
    saved = [_answer(n) for n in range(1_000, 1_040)]
    for entry in saved:
        answers.save(entry, ttl_s=600)

    # Action
    answers.close()

    # Expectation: every answer is readable, byte for byte.
    found = [answers.get(entry.trader, entry.key) for entry in saved]
    assert [(f.fingerprint, f.status, f.body) if f else None for f in found] == [
        (e.fingerprint, e.status, e.body) for e in saved
    ]
