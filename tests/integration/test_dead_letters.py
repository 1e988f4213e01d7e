"""Poison records go to dead.letters with a reason; the consumer keeps going."""

from __future__ import annotations

from confluent_kafka import Producer

from services.common.bus import Bus, InvalidRecord, Outbound, TransactionalProcessor, TypedProducer
from services.common.topics import ACCOUNTS_EVENTS, DEAD_LETTERS, ensure_topics
from tests.integration.echo_processor import ECHO_OUT, copy_with_source_id
from tests.integration.readback import read_all
from tests.kit import deposit_event, trader_address


def test_undecodable_and_invalid_records_are_dead_lettered_and_the_rest_flows(bus: Bus) -> None:
    # State: the input holds garbage bytes, a record the handler refuses, then a good record.
    ensure_topics(bus.client_config(), [bus.topic(ECHO_OUT)])
    raw = Producer({"bootstrap.servers": bus.settings.kafka_bootstrap_servers})
    raw.produce(bus.topic(ACCOUNTS_EVENTS).name, key=b"x", value=b"\x00\x00\x00\x00\x01garbage")
    raw.flush(10)
    typed = TypedProducer(bus)
    refused = deposit_event(trader=trader_address(1), amount=0, n=1)
    good = deposit_event(trader=trader_address(1), amount=7, n=2)
    for event in (refused, good):
        typed.send(Outbound(ACCOUNTS_EVENTS, key=event["trader"], value=event))
    typed.flush()

    def refuse_zero_amounts(message):  # type: ignore[no-untyped-def]
        if message.value["body"][1]["amount"] == 0:
            raise InvalidRecord("deposit of zero")
        return copy_with_source_id(message)

    # Action: one processor runs over all three.
    processor = TransactionalProcessor(
        bus,
        group_id="dlq-test",
        inputs=[ACCOUNTS_EVENTS],
        handler=refuse_zero_amounts,
        transactional_id=f"{bus.settings.topic_prefix}dlq-0",
    )
    for _ in range(50):
        processor.run_once()
        if processor.stats["records"] >= 3:
            break
    processor.close()

    # Expectation: two dead letters with their reasons, and the good record went through.
    letters = sorted(read_all(bus, DEAD_LETTERS, expect=2), key=lambda m: m.value["reason_code"])
    assert [m.value["reason_code"] for m in letters] == ["INVALID_RECORD", "UNDECODABLE"]
    assert letters[0].value["reason"] == "deposit of zero"
    assert letters[1].value["value"] == b"\x00\x00\x00\x00\x01garbage"
    assert letters[1].value["source_topic"] == bus.topic(ACCOUNTS_EVENTS).name
    echoed = read_all(bus, ECHO_OUT, expect=1)
    assert [m.value["body"][1]["amount"] for m in echoed] == [7]
