"""The per-connection outbox: batching, the bound, the drop, the state table."""

from __future__ import annotations

import json

import pytest

from services.wspush.core.outbox import IllegalTransition, Outbox, OutboxState


def test_messages_queued_in_one_tick_go_out_as_one_array_frame() -> None:
    # State: an outbox with three messages queued.
    outbox = Outbox(10)
    for n in range(3):
        assert outbox.put(json.dumps({"n": n}))
    # Action: the sender takes.
    taken = outbox.take()
    # Expectation: one frame, a JSON array of the three in order; nothing left.
    assert taken is not None
    frame, count = taken
    assert count == 3
    assert json.loads(frame) == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert outbox.take() is None


def test_a_lone_message_goes_out_as_itself() -> None:
    outbox = Outbox(10)
    outbox.put('{"n":0}')
    assert outbox.take() == ('{"n":0}', 1)


def test_a_put_past_the_bound_behind_a_blocked_write_drops_the_connection_and_its_queue() -> None:
    # State: an outbox of 2; a frame taken and not written (the client's window is shut); then 2
    # more messages queued behind it.
    outbox = Outbox(2)
    outbox.put("0")
    assert outbox.take() is not None
    assert outbox.put("1") and outbox.put("2")
    # Action: a third message arrives.
    accepted = outbox.put("3")
    # Expectation: refused; the connection is DROPPED; nothing is left to send, nor accepted later.
    assert not accepted
    assert outbox.state is OutboxState.DROPPED
    assert len(outbox) == 0 and outbox.take() is None
    assert not outbox.put("4")


def test_an_idle_sender_takes_a_burst_bigger_than_the_bound() -> None:
    # State: an outbox of 2 whose last write went through.
    outbox = Outbox(2)
    outbox.put("0")
    outbox.take()
    outbox.written()
    # Action: one tick queues 5 messages.
    accepted = [outbox.put(str(n)) for n in range(1, 6)]
    # Expectation: all kept, and they go out as one frame: keeping up is not being slow.
    assert all(accepted) and outbox.state is OutboxState.OPEN
    assert outbox.take() == ("[1,2,3,4,5]", 5)


def test_a_closed_outbox_ignores_puts_and_cannot_be_closed_twice() -> None:
    outbox = Outbox(2)
    outbox.close()
    assert not outbox.put("1")
    with pytest.raises(IllegalTransition):
        outbox.close()
