"""The funding/expiry service on real Kafka: marks and funding go to matcher.commands, and a
restarted service does not resend an interval the trade log shows applied.

No matcher runs here: the test writes the trade-log entries a matcher would have written (the
listing, the marks it recorded, a FundingApplied), so what the service reads is fully known.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from msgspec import structs

from services.common.binding import to_avro
from services.common.bus import Bus, Outbound, TypedProducer
from services.common.presets import preset
from services.common.records import (
    ApplyFunding,
    FundingApplied,
    IndexPrice,
    MarketCreated,
    MarkPriceSet,
    MatcherCommand,
    SetMarkPrice,
    TradeLogEntry,
)
from services.common.topics import FUNDING_SNAPSHOTS, MATCHER_COMMANDS, ORACLE_PRICES, TRADE_LOG
from services.funding.core.funding import first_interval_after
from services.funding.core.scheduler import Scheduler
from services.funding.service import FundingService
from tests.integration.readback import read_all

S = 1_000_000
INDEX_E9 = 65_000 * 10**9  # 650,000 ticks of BTC-PERP


def test_funding_intervals_go_out_once_and_a_restart_resends_none_the_log_shows_applied(bus: Bus) -> None:
    # State: BTC-PERP listed a minute ago; the log holds its marks over three 2 s intervals
    # [a, a+2 s), [a+2 s, a+4 s), [a+4 s, a+6 s) (and one at a+6 s, closing the third), and the first
    # interval already applied. An oracle round now.
    log, now, a = perp_listed_a_minute_ago(bus)
    for k in range(7):
        log.entry(a + k * S, MarkPriceSet(mark_price=650_000 + 65 * (k < 2), index_price=650_000))
    log.entry(a + 6 * S + 1, _applied(a, a + 2 * S))
    log.oracle(now)
    log.flush()
    # Action: run the service for a few ticks.
    run_service(bus, seconds=4)
    # Expectation: one mark for the fresh round, and funding for the 2nd and 3rd intervals only,
    # at rate 0 (mark = index there), each once.
    commands = sent(bus)
    assert [c.body for c in commands if isinstance(c.body, SetMarkPrice)] == [
        SetMarkPrice(mark_price=650_000, index_price=650_000)
    ]
    fundings = [c for c in commands if isinstance(c.body, ApplyFunding)]
    assert [(c.body.interval_start - a) // S for c in fundings] == [2, 4]  # type: ignore[union-attr]
    assert {c.body.rate_e9 for c in fundings} == {0}  # type: ignore[union-attr]
    assert {c.market for c in fundings} == {"BTC-PERP"}

    # State: the matcher applied the second interval (not the third), then the service restarts.
    second = fundings[0].body
    assert isinstance(second, ApplyFunding)
    log.entry(a + 6 * S + 2, _applied(second.interval_start, second.interval_end))
    log.flush()
    before = len(commands)
    # Action: a new process, rebuilt from the logs.
    run_service(bus, seconds=4)
    # Expectation: it resends the third interval (the log does not show it applied), with the same
    # id as before, and neither of the applied ones. (It may send the latest round's mark again: a
    # mark is a level, not a flow, so a repeat changes nothing.)
    again = [c for c in sent(bus)[before:] if isinstance(c.body, ApplyFunding)]
    assert [(c.command_id, c.body) for c in again] == [(fundings[1].command_id, fundings[1].body)]


def test_a_restart_loads_the_snapshot_and_reads_only_the_tail_of_the_logs(bus: Bus) -> None:
    # State: BTC-PERP listed, marks over two intervals and a round; the service ran (a snapshot
    # at the end of its catch-up), then three more marks and a round arrived.
    log, now, a = perp_listed_a_minute_ago(bus)
    for k in range(4):
        log.entry(a + k * S, MarkPriceSet(mark_price=650_000, index_price=650_000))
    log.oracle(now)
    log.flush()
    run_service(bus, seconds=2)
    (snapshot,) = [r.record for r in read_all(bus, FUNDING_SNAPSHOTS, expect=1)][-1:]
    assert {(p.topic, p.partition) for p in snapshot.positions} >= {("trade.log", 0), ("oracle.prices", 0)}
    for k in range(4, 7):
        log.entry(a + k * S, MarkPriceSet(mark_price=650_000 + k, index_price=650_000))
    log.oracle(now + S)
    log.flush()
    # Action: a new process catches up.
    restored = FundingService(bus)
    restored.catch_up()
    # Expectation: it read the four new records only, and knows what a whole read knows.
    assert restored.read == 4
    # Action: the snapshot made unreadable (another version's), and a new process again.
    producer = TypedProducer(bus)
    producer.send(Outbound(FUNDING_SNAPSHOTS, key="funding", value=structs.replace(snapshot, codec="v999")))
    producer.flush()
    rebuilt = FundingService(bus)
    rebuilt.catch_up()
    # Expectation: it read the logs whole, and learnt the same markets, marks and rounds.
    assert rebuilt.read == 10
    assert learnt(rebuilt.scheduler) == learnt(restored.scheduler)
    assert learnt(restored.scheduler)[0]["BTC-PERP"][0][-1][1] == 650_006
    restored.close()
    rebuilt.close()


def perp_listed_a_minute_ago(bus: Bus) -> tuple[Log, int, int]:
    """2 s funding intervals; BTC-PERP's listing on the log a minute ago. Returns the log, now, and
    the start of the first interval after the listing (all µs)."""
    bus.settings = bus.settings.model_copy(update={"funding_interval_s": 2})
    now = time.time_ns() // 1_000
    listed = now - 60 * S
    a, _ = first_interval_after(listed, 2)
    log = Log(bus)
    log.entry(listed, MarketCreated(definition=preset("BTC-PERP")))
    return log, now, a


def learnt(scheduler: Scheduler) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a scheduler knows from the logs alone (not what it sent itself)."""
    markets = {m: (k.mark_log, k.status_history, k.next_start) for m, k in scheduler.markets.items()}
    return markets, {i: x.samples for i, x in scheduler.indexes.items()}


class Log:
    """Writes trade-log entries and oracle rounds as the matcher and the oracle would."""

    def __init__(self, bus: Bus) -> None:
        self.producer = TypedProducer(bus)
        self.n = 0

    def entry(self, ts: int, event: Any) -> None:
        self.n += 1
        entry = TradeLogEntry(
            market="BTC-PERP", first_seq=self.n, source=f"matcher.commands:0:{self.n}",
            command_id=f"test-{self.n}", ts_event=ts, events=[event],
        )  # fmt: skip
        self.producer.send(Outbound(TRADE_LOG, key="BTC-PERP", value=to_avro(entry)))

    def oracle(self, ts: int) -> None:
        price = IndexPrice(index_symbol="BTC-USD", ts_event=ts, price_e9=INDEX_E9, quotes=[], twaps=[])
        self.producer.send(Outbound(ORACLE_PRICES, key="BTC-USD", value=to_avro(price)))

    def flush(self) -> None:
        self.producer.flush()


def run_service(bus: Bus, *, seconds: float) -> None:
    stop = threading.Event()
    service = FundingService(bus)
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join(30)
    assert not thread.is_alive()


def sent(bus: Bus) -> list[MatcherCommand]:
    return [r.record for r in read_all(bus, MATCHER_COMMANDS, expect=1, timeout_s=15)]


def _applied(start: int, end: int) -> FundingApplied:
    return FundingApplied(
        interval_start=start, interval_end=end, rate_e9=0, index_price=650_000, mark_twap=650_000,
        index_twap=650_000,
    )  # fmt: skip
