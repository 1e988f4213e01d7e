"""Replay on the real Kafka and Cassandra: a session recorded by the running services rebuilds,
from offset 0, into a keyspace identical to the live one; replaying its recorded commands gives
its recorded trade log; a tampered trade log is reported.

The session: matcher, risk and the projector (read model and account history) in threads on the
test's own topics and keyspace; a listing, deposits, and a seeded flow of orders from four
traders through risk (rests, trades, cancels, IOC remainders), with marks.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cassandra.cluster import Session
from msgspec.structs import replace

from services.common.binding import to_avro
from services.common.bus import Bus, Outbound, TypedProducer
from services.common.records import CancelOrder, Side, TimeInForce, TraderCommand
from services.common.settings import Settings
from services.common.stores import cassandra
from services.common.topics import ACCOUNTS_EVENTS, MATCHER_COMMANDS, ORDERS_COMMANDS, TRADE_LOG, TopicSpec
from services.projector.service import build
from services.replay import rebuild
from services.replay.cli import main
from services.replay.sources import read_entries, write_container
from tests.integration.readback import log_end, wait_for_growth
from tests.integration.stack import exchange
from tests.kit import TS_2026_11_23, Commands, deposit_event, limit_order, order_id, trader_address

MID = 650_000
TRADERS = [trader_address(0x5E55 + i) for i in range(4)]


@pytest.fixture
def live(cassandra_session: Session, settings: Settings) -> Iterator[Settings]:
    """The session's live keyspace (fresh and migrated), and every keyspace the test adds, dropped after."""
    keyspace = f"rp_live_{uuid.uuid4().hex[:8]}"
    cassandra.migrate(cassandra_session, keyspace, settings.cassandra_replication)
    yield settings.model_copy(update={"cassandra_keyspace": keyspace})
    rows = cassandra_session.execute("SELECT keyspace_name FROM system_schema.keyspaces")
    for row in rows:
        if row.keyspace_name == keyspace or row.keyspace_name.startswith(f"rp_rebuilt_{keyspace[8:]}"):
            cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {row.keyspace_name}")


def send(bus: Bus, items: list[tuple[TopicSpec, str, dict[str, Any]]]) -> None:
    producer = TypedProducer(bus)
    for spec, key, value in items:
        producer.send(Outbound(spec, key=key, value=value))
    producer.flush()


def session_flow(n: int) -> list[tuple[TopicSpec, str, dict[str, Any]]]:
    """`n` trader commands (1 ms apart, nonce = ts_init): limits near the mid, some crossing, some IOC,
    cancels of earlier orders."""
    rng = random.Random(42)
    items: list[tuple[TopicSpec, str, dict[str, Any]]] = []
    placed: list[tuple[str, str]] = []
    for k in range(1, n + 1):
        ts = TS_2026_11_23 + 10_000_000 + k * 1_000
        trader = rng.choice(TRADERS)
        if placed and rng.random() < 0.2:
            owner, oid = placed.pop(rng.randrange(len(placed)))
            body: Any = CancelOrder(market="BTC-PERP", order_id=oid, nonce=ts, signature=b"")
            trader = owner
        else:
            side = rng.choice((Side.BUY, Side.SELL))
            sign = 1 if side is Side.BUY else -1
            cross = rng.random() < 0.3
            price = MID + sign * rng.randint(0, 3) if cross else MID - sign * rng.randint(1, 5)
            tif = TimeInForce.IOC if cross and rng.random() < 0.5 else TimeInForce.GTC
            body = limit_order(10_000 + k, side, rng.randint(1, 4), price, time_in_force=tif, nonce=ts)
            placed.append((trader, body.order_id))
        command = TraderCommand(command_id=order_id(7_000_000 + k), trader=trader, ts_init=ts, body=body)
        items.append((ORDERS_COMMANDS, trader, to_avro(command)))
    return items


def wait_quiet(bus: Bus, specs: tuple[TopicSpec, ...], quiet_s: float = 3.0, timeout_s: float = 90) -> None:
    """Until none of `specs` has grown for `quiet_s`."""
    deadline, last, since = time.monotonic() + timeout_s, None, time.monotonic()
    while time.monotonic() < deadline:
        now = tuple(log_end(bus, s) for s in specs)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return
        time.sleep(0.3)
    raise TimeoutError(f"{[s.name for s in specs]} still growing after {timeout_s} s")


def record_session(bus: Bus, live: Settings) -> None:
    """The live stack processes a listing, deposits, 120 trader commands and two marks."""
    projector = build(live, ("accounts", "read-model"))
    btc = Commands(start_us=TS_2026_11_23)
    with exchange(live, projector):
        send(bus, [(MATCHER_COMMANDS, "BTC-PERP", to_avro(btc.create()))])
        wait_for_growth(bus, TRADE_LOG, 0)
        deposits = [
            (ACCOUNTS_EVENTS, t, deposit_event(trader=t, amount=10**10, n=i)) for i, t in enumerate(TRADERS)
        ]
        send(bus, deposits)
        time.sleep(3)  # risk credits the deposits before the orders arrive (different partitions)
        flow = session_flow(120)
        mark = btc.set_mark(MID + 2, at=TS_2026_11_23 + 10_000_000 + 60 * 1_000 + 500)
        send(bus, flow[:60])
        send(bus, [(MATCHER_COMMANDS, "BTC-PERP", to_avro(mark))])
        send(bus, flow[60:])
        wait_quiet(bus, (TRADE_LOG, ACCOUNTS_EVENTS, MATCHER_COMMANDS))
        time.sleep(2)  # the projector's last batch lands


def compare_until_identical(session: Session, live: str, rebuilt: str, timeout_s: float = 30) -> list[Any]:
    """The comparison, repeated while the live projector may still be catching up."""
    deadline = time.monotonic() + timeout_s
    while True:
        diffs = rebuild.compare_cassandra(session, live, rebuilt)
        if all(d.identical for d in diffs) or time.monotonic() > deadline:
            return diffs
        time.sleep(1)


def test_a_recorded_session_rebuilds_identically_and_replays_deterministically(
    bus: Bus, live: Settings, cassandra_session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # State: a session recorded by the running services into the live keyspace.
    record_session(bus, live)
    keyspace = live.cassandra_keyspace
    counts = {t: cassandra_session.execute(f"SELECT count(*) FROM {keyspace}.{t}").one()[0]
              for t in ("orders_by_id", "positions_by_trader", "account_events_by_trader")}  # fmt: skip
    assert all(counts.values()), counts

    # Action: rebuild from offset 0 into a fresh keyspace (the CLI's path), then compare.
    rebuilt = f"rp_rebuilt_{keyspace[8:]}"
    read = rebuild.rebuild_cassandra(live, rebuilt, session=cassandra_session)
    diffs = compare_until_identical(cassandra_session, keyspace, rebuilt)

    # Expectation: every table identical, write times included; the CLI says so too (exit 0).
    assert read["read-model"] > 120 and read["accounts"] > 0
    assert all(d.identical for d in diffs), "\n".join(d.describe() for d in diffs)
    assert {d.table for d in diffs} >= set(rebuild.READ_MODEL_TABLES) | set(rebuild.ACCOUNT_TABLES)
    assert main(["compare", "--live", keyspace, "--rebuilt", rebuilt], settings=live) == 0
    assert "IDENTICAL" in capsys.readouterr().out

    # Action / Expectation: the recorded commands replay to the recorded trade log (exit 0).
    assert main(["check-determinism"], settings=live) == 0
    # …and from exported files alike.
    commands, log = tmp_path / "cmds.avro", tmp_path / "log.avro"
    assert main(["export", "--topic", "matcher.commands", "--output", str(commands)], settings=live) == 0
    assert main(["export", "--topic", "trade.log", "--output", str(log)], settings=live) == 0
    assert (
        main(["check-determinism", "--commands", str(commands), "--trade-log", str(log)], settings=live) == 0
    )

    # State: a tampered trade log — one fill's fee changed in the file, and a forged entry on the topic.
    entries = list(read_entries(log))
    k = next(i for i, e in enumerate(entries) if any(type(ev).__name__ == "OrderFilled" for ev in e.events))
    j = next(i for i, ev in enumerate(entries[k].events) if type(ev).__name__ == "OrderFilled")
    events: list[Any] = list(entries[k].events)
    events[j] = replace(events[j], fee=events[j].fee + 1)
    entries[k] = replace(entries[k], events=events)
    write_container(tmp_path / "bad.avro", "TradeLogEntry", [to_avro(e) for e in entries])
    forged = replace(entries[-1], ts_event=entries[-1].ts_event + 1)
    send(bus, [(TRADE_LOG, forged.market, to_avro(forged))])
    capsys.readouterr()

    # Action / Expectation: both reported (exit 1), the file's at the changed field.
    assert main(["check-determinism", "--commands", str(commands), "--trade-log", str(tmp_path / "bad.avro")],
                settings=live) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert f"divergence at entry {k}" in err and f"events[{j}].fee" in err
    assert main(["check-determinism"], settings=live) == 1
