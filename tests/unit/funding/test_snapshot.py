"""The scheduler's snapshot: what `encode_state` writes, `decode_state` reads back into a scheduler
that behaves exactly like the one it was taken from, and like one rebuilt from the whole log."""

from __future__ import annotations

import msgspec
import pytest

from services.common.records import OptionType, Side
from services.funding.core.scheduler import SchedulerConfig, decode_state, encode_state
from tests.kit import ALICE, BOB
from tests.unit.funding.loop import BTC_PERP, T0, Loop, S, btc_future, btc_option


def busy_loop() -> Loop:
    """A perpetual, a future and an option listed; resting orders on the perpetual; 9 s of rounds
    and ticks (marks and funding sent and applied)."""
    loop = Loop(config=SchedulerConfig(interval_s=2, option_vols={"BTC-USD": 0.6}))
    for definition in (
        BTC_PERP,
        btc_future(T0 + 3600 * S),
        btc_option(T0 + 86_400 * S, 650_000, OptionType.CALL),
    ):
        loop.list_market(definition)
    loop.order("BTC-PERP", ALICE, Side.BUY, 3, 649_990, at=T0)
    loop.order("BTC-PERP", BOB, Side.SELL, 2, 650_020, at=T0)
    loop.run(T0, T0 + 9 * S)
    return loop


def test_a_restored_scheduler_sends_what_the_original_sends() -> None:
    # State: a busy scheduler, and a copy restored from its snapshot.
    loop = busy_loop()
    restored = decode_state(loop.config, encode_state(loop.scheduler))
    seen, sent_before = len(loop.log), len(loop.sent)
    sent_by_restored = []

    def catch_up() -> int:
        for item in loop.log[seen:]:
            restored.apply(item)
        return len(loop.log)

    # Action: 9 more seconds of rounds and ticks; the log the original's commands make goes to both.
    for at in range(T0 + 9 * S, T0 + 18 * S, S):
        loop.index(at)
        seen = catch_up()
        loop.tick(at)
        sent_by_restored += restored.on_tick(at)
        seen = catch_up()
    # Expectation: the same commands, and the same state at the end.
    assert loop.sent[sent_before:] == sent_by_restored
    assert any(c.market == "BTC-PERP" for c in sent_by_restored)
    assert encode_state(restored) == encode_state(loop.scheduler)


def test_bytes_that_are_not_a_state_are_refused() -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode_state(SchedulerConfig(), msgspec.msgpack.encode({"markets": [1, 2]}))
