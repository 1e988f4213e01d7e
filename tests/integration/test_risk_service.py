"""The risk service through Kafka, with the real matcher: pre-trade, post-trade, replays, SIGKILLs.

The matcher runs in this process (a thread); risk runs in-process for the scenario and as a
subprocess (`tests.integration.run_until_idle risk`) for the crash tests, where it is SIGKILLed
mid-flow. Commands are signed as by a client with a correct clock (nonce = ts_init); replays send
a body again, nonce included, as a new command.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from msgspec.structs import replace

from services.common.binding import from_avro, to_avro
from services.common.bus import Bus, Inbound, Outbound, TypedProducer, decode_message
from services.common.codes import RiskReject
from services.common.records import (
    CancelOrder,
    MarketKind,
    PlaceOrder,
    Side,
    TimeInForce,
    TraderCommand,
)
from services.common.settings import REPO_ROOT, Settings
from services.common.topics import (
    ACCOUNTS_EVENTS,
    MATCHER_COMMANDS,
    ORDERS_COMMANDS,
    TRADE_LOG,
    TRADER_PARTITIONS,
    TopicSpec,
)
from services.matcher.service import MatcherService
from services.risk.core import RiskEngine
from services.risk.service import RiskService, rebuild
from tests.integration.readback import log_end, wait_for_growth
from tests.kit import (
    ALICE,
    BOB,
    TS_2026_11_23,
    Commands,
    deposit_event,
    limit_order,
    order_id,
    trader_address,
)

USDC = 1_000_000
PRICE = 650_000
"""65,000.0 USDC in BTC-PERP ticks; one lot (0.001 BTC) is worth 65 USDC there."""
BALANCE = "exchange.cxpt.BalanceChanged"
POSITION = "exchange.cxpt.PositionChanged"
REJECTED = "exchange.cxpt.OrderRejected"


# -- plumbing -------------------------------------------------------------------------------------


class Tail:
    """Every committed record of a topic, read from the beginning as they arrive."""

    def __init__(self, bus: Bus, spec: TopicSpec) -> None:
        self.bus, self.spec = bus, spec
        self.records: list[Inbound] = []
        self._consumer = Consumer(bus.consumer_config(f"tail-{uuid.uuid4().hex}"))
        name = bus.topic(spec).name
        self._consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in range(spec.partitions)])

    def until(self, done: Callable[[list[Inbound]], bool], timeout_s: float = 30) -> list[Inbound]:
        deadline = time.monotonic() + timeout_s
        while not done(self.records):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.spec.name}: condition not met in {timeout_s} s")
            for message in self._consumer.consume(500, 0.2):
                if message.error() is None:
                    self.records.append(decode_message(self.bus, message, self.spec))
        return self.records

    def close(self) -> None:
        self._consumer.close()


def _read_to_end(bus: Bus, spec: TopicSpec) -> list[Inbound]:
    """Every committed record of `spec` up to the current end of each partition."""
    name = bus.topic(spec).name
    consumer = Consumer(bus.consumer_config(f"tail-{uuid.uuid4().hex}") | {"enable.partition.eof": True})
    found: list[Inbound] = []
    try:
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in range(spec.partitions)])
        pending = set(range(spec.partitions))
        while pending:
            message = consumer.poll(10)
            assert message is not None, f"{name}: no end in sight"
            error = message.error()
            if error is None:
                found.append(decode_message(bus, message, spec))
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition() or 0)
    finally:
        consumer.close()
    return found


@contextmanager
def running(service: MatcherService | RiskService) -> Iterator[None]:
    """`service` processing in a thread of this process until the block ends."""
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def _send(bus: Bus, items: list[tuple[TopicSpec, str, dict[str, Any]]]) -> None:
    producer = TypedProducer(bus)
    for spec, key, value in items:
        producer.send(Outbound(spec, key=key, value=value))
    producer.flush()


def _send_and_await_forwarding(bus: Bus, items: list[tuple[TopicSpec, str, dict[str, Any]]]) -> None:
    """Send `items`, then wait until risk forwarded something more (committed work of its own)."""
    before = log_end(bus, MATCHER_COMMANDS)
    _send(bus, items)
    wait_for_growth(bus, MATCHER_COMMANDS, beyond=before)


def _command(
    trader: str, n: int, body: PlaceOrder | CancelOrder, *, nonce: int | None = None
) -> tuple[TopicSpec, str, dict[str, Any]]:
    """The n-th trader command, at TS_2026_11_23 + n ms, its body signed at that instant (or with
    `nonce`: a replay)."""
    ts_init = TS_2026_11_23 + n * 1_000
    body = replace(body, nonce=ts_init if nonce is None else nonce)
    command = TraderCommand(command_id=order_id(5_000_000 + n), trader=trader, ts_init=ts_init, body=body)
    return ORDERS_COMMANDS, trader, to_avro(command)


def _place(
    trader: str, n: int, side: Side, size: int, price: int, **options: Any
) -> tuple[TopicSpec, str, dict[str, Any]]:
    return _command(trader, n, limit_order(n, side, size, price, **options))


def _deposit(trader: str, usdc: int, n: int) -> tuple[TopicSpec, str, dict[str, Any]]:
    return ACCOUNTS_EVENTS, trader, deposit_event(trader=trader, amount=usdc * USDC, n=n)


def _list_btc_perp(bus: Bus) -> None:
    create = Commands().create()
    _send(bus, [(MATCHER_COMMANDS, create.market, to_avro(create))])


def _holder(engines: dict[int, RiskEngine], trader: str) -> RiskEngine:
    """The engine (partition) holding `trader`'s account."""
    return next(e for e in engines.values() if trader in e.ledger.accounts)


def _listed_and_credited(engines: dict[int, RiskEngine], traders: list[str]) -> bool:
    """BTC-PERP known to every partition, and every trader credited somewhere."""
    return all("BTC-PERP" in e.markets for e in engines.values()) and all(
        any(e.ledger.free_usdc(t) > 0 for e in engines.values()) for t in traders
    )


def _wait_for_state(
    bus: Bus, check: Callable[[dict[int, RiskEngine]], bool], timeout_s: float = 30
) -> dict[int, RiskEngine]:
    """Poll the committed risk state (rebuilt from the changelog) until `check` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        engines = rebuild(bus, range(TRADER_PARTITIONS))
        if check(engines):
            return engines
        if time.monotonic() > deadline:
            raise TimeoutError("the risk state did not reach the expected point")
        time.sleep(0.3)


def _body(record: Inbound) -> tuple[str, dict[str, Any]]:
    name, body = record.value["body"]
    return name, body


def _log_events(entries: list[Inbound]) -> list[tuple[str, dict[str, Any]]]:
    """The (record name, fields) of every event in these trade-log entries, in order."""
    return [event for entry in entries for event in entry.value["events"]]


# -- the scenario ---------------------------------------------------------------------------------


def test_orders_pass_risk_trade_and_come_back_as_balances_and_positions(bus: Bus, settings: Settings) -> None:
    accounts, trades = Tail(bus, ACCOUNTS_EVENTS), Tail(bus, TRADE_LOG)
    with running(MatcherService(Bus(settings))), running(RiskService(Bus(settings))):
        # State: BTC-PERP listed through the matcher, Alice and Bob credited 1,000 USDC each.
        _list_btc_perp(bus)
        _send(bus, [_deposit(ALICE, 1_000, 1), _deposit(BOB, 1_000, 2)])
        _wait_for_state(bus, lambda e: _listed_and_credited(e, [ALICE, BOB]))
        # Action: Bob rests a sell of 3 lots; Alice buys 5 through it; Alice tries 100 lots (6,500
        # USDC), Bob an order on a market that does not exist.
        _send(bus, [_place(BOB, 1, Side.SELL, 3, PRICE)])
        trades.until(lambda r: any(name.endswith("OrderRested") for name, _ in _log_events(r)))
        _send(
            bus,
            [
                _place(ALICE, 2, Side.BUY, 5, PRICE + 10),
                _place(ALICE, 3, Side.BUY, 100, PRICE),
                _place(BOB, 4, Side.SELL, 1, PRICE, market="ETH-PERP"),
            ],
        )
        # Expectation: the good orders traded 3 lots at Bob's price, 2 rest.
        log = _log_events(
            trades.until(lambda r: sum(n.endswith("OrderRested") for n, _ in _log_events(r)) >= 2)
        )
        executed = [b for n, b in log if n.endswith("TradeExecuted")]
        assert [(t["price"], t["size"]) for t in executed] == [(PRICE, 3)]
        # The bad ones are refused on accounts.events with their codes.
        events = accounts.until(lambda r: sum(_body(m)[0] == REJECTED for m in r) >= 2)
        rejections = {b["order_id"]: b["reason_code"] for n, b in map(_body, events) if n == REJECTED}
        assert rejections == {
            order_id(3): RiskReject.INSUFFICIENT_COLLATERAL,
            order_id(4): RiskReject.UNKNOWN_MARKET,
        }
        # Positions and balances follow the fills.
        events = accounts.until(lambda r: sum(_body(m)[0] == POSITION for m in r) >= 2)
        positions = {b["trader"]: b["size"] for n, b in map(_body, events) if n == POSITION}
        assert positions == {ALICE: 3, BOB: -3}
        engines = _wait_for_state(
            bus, lambda e: _holder(e, ALICE).ledger.positions.get((ALICE, "BTC-PERP")) is not None
        )
        _check_outputs_match_state(accounts.until(lambda r: True), engines)
    for engine in engines.values():
        engine.validate()
    alice = _holder(engines, ALICE).ledger
    assert alice.positions[(ALICE, "BTC-PERP")].size == 3
    assert [o.leaves for o in alice.trader_orders(ALICE)] == [2]
    accounts.close()
    trades.close()


# -- the crash test -------------------------------------------------------------------------------

TRADERS = [trader_address(0x7000 + i) for i in range(12)]
FLOW = 320


def _flow(rng: random.Random) -> list[tuple[TopicSpec, str, dict[str, Any]]]:
    """Orders around the price (some too big, some on an unknown market), cancels, deposits, and
    replays of earlier commands (their nonce is not their ts_init)."""
    placed: dict[str, list[str]] = {t: [] for t in TRADERS}
    sent: dict[str, list[PlaceOrder | CancelOrder]] = {t: [] for t in TRADERS}
    items = []
    for n in range(100, 100 + FLOW):
        trader = rng.choice(TRADERS)
        roll = rng.random()
        if roll < 0.08:
            items.append(_deposit(trader, 200, n))
            continue
        if roll < 0.13 and sent[trader]:  # a signed command again, as a new command
            original = rng.choice(sent[trader])
            items.append(_command(trader, n, original, nonce=original.nonce))
            continue
        if roll < 0.22 and placed[trader]:
            oid = rng.choice(placed[trader])
            body = CancelOrder(market="BTC-PERP", order_id=oid, nonce=0, signature=b"")  # nonce: see _command
            items.append(_command(trader, n, body))
        elif roll < 0.25:
            items.append(_place(trader, n, Side.BUY, 10_000, PRICE))  # far beyond the collateral
        elif roll < 0.27:
            items.append(_place(trader, n, Side.SELL, 1, PRICE, market="DOGE-PERP"))
        else:
            side = rng.choice((Side.BUY, Side.SELL))
            lean = 1 if side is Side.BUY else -1
            price = PRICE + 10 * (rng.randint(-3, 3) + lean)
            tif = rng.choice((TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC))
            items.append(_place(trader, n, side, rng.randint(1, 5), price, time_in_force=tif))
            placed[trader].append(order_id(n))
        command: TraderCommand = from_avro(TraderCommand, items[-1][2])
        assert isinstance(command.body, PlaceOrder | CancelOrder)
        sent[trader].append(command.body)
    return items


def _replays(
    flow: list[tuple[TopicSpec, str, dict[str, Any]]], rng: random.Random, count: int = 24
) -> list[tuple[TopicSpec, str, dict[str, Any]]]:
    """`count` of the flow's trader commands sent again (same body, same nonce) as new commands."""
    sent = [from_avro(TraderCommand, value) for spec, _, value in flow if spec is ORDERS_COMMANDS]
    return [
        _command(c.trader, 1_000 + i, c.body, nonce=c.body.nonce)
        for i, c in enumerate(rng.sample(sent, count))
    ]


def _start_risk(settings: Settings, idle_exit: float = 4.0, failpoints: str = "") -> subprocess.Popen[bytes]:
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "BATCH_MAX_MESSAGES": "20",
        "LOG_JSON": "false",
        "CXPT_FAILPOINTS": failpoints,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.run_until_idle", "risk", "--idle-exit", str(idle_exit)],
        cwd=REPO_ROOT,
        env=env,
    )


def test_risk_survives_sigkills_exactly(bus: Bus, settings: Settings) -> None:
    rng = random.Random(20261124)
    matcher = MatcherService(Bus(settings))
    with running(matcher):
        # State: BTC-PERP listed, twelve traders credited 3,000 USDC each, risk running.
        victim = _start_risk(settings, idle_exit=60)
        _list_btc_perp(bus)
        _send(bus, [_deposit(t, 3_000, i) for i, t in enumerate(TRADERS)])
        _wait_for_state(bus, lambda e: _listed_and_credited(e, TRADERS))
        # Action: a few hundred commands, deposits and replays of earlier commands flow while risk is
        # SIGKILLed three times at random moments after it produced something, and once just before
        # a commit (after more replays, which only recovered incarnations see); then it runs until
        # the flow has settled.
        flow = _flow(rng)
        for attempt in range(3):
            if attempt:
                victim = _start_risk(settings, idle_exit=60)
            # Each incarnation gets a third of the flow (so it has work of its own even when the last
            # one finished everything sent before it died) and is killed only after it committed some.
            third = flow[attempt * len(flow) // 3 : (attempt + 1) * len(flow) // 3]
            _send_and_await_forwarding(bus, third)
            time.sleep(rng.uniform(0.0, 0.3))
            victim.send_signal(signal.SIGKILL)
            victim.wait(30)
        late = _replays(flow, rng)
        _send(bus, late)
        flow += late
        # One more dies by itself with a transaction open: outputs and changelog written, not committed.
        victim = _start_risk(settings, idle_exit=60, failpoints="bus.before_commit=kill@4")
        assert victim.wait(60) == -signal.SIGKILL
        assert _start_risk(settings).wait(120) == 0
        books = {
            oid: (o.price, o.leaves_qty)
            for engine in matcher.engines.values()
            for market in engine.markets.values()
            for oid, o in market.book.orders.items()
        }

    commands, forwarded, accounts, log = (
        _read_to_end(bus, spec) for spec in (ORDERS_COMMANDS, MATCHER_COMMANDS, ACCOUNTS_EVENTS, TRADE_LOG)
    )
    assert len(commands) == sum(spec is ORDERS_COMMANDS for spec, _, _ in flow)
    engines = rebuild(bus, range(TRADER_PARTITIONS))

    # Expectation: every trader command has exactly one outcome — forwarded once, or refused once.
    by_position = {f"{m.topic}:{m.partition}:{m.offset}:0": m.value["command_id"] for m in commands}
    outcomes = Counter(m.value["command_id"] for m in forwarded if m.value["trader"] is not None)
    outcomes.update(by_position[m.value["event_id"]] for m in accounts if _body(m)[0] == REJECTED)
    assert set(outcomes) == {m.value["command_id"] for m in commands}
    assert set(outcomes.values()) == {1}
    refused = {
        by_position[m.value["event_id"]]: _body(m)[1]["reason_code"]
        for m in accounts
        if _body(m)[0] == REJECTED
    }
    codes = Counter(refused.values())
    assert codes[RiskReject.INSUFFICIENT_COLLATERAL] and codes[RiskReject.UNKNOWN_MARKET]
    # Every replay, and nothing else, was refused as one: the nonces survived the kills.
    _check_replays_and_only_they_were_refused_as_reused(commands, refused)
    # No output of risk was committed twice.
    produced = [m.value["event_id"] for m in accounts if _body(m)[0] != "exchange.cxpt.DepositConfirmed"]
    assert len(produced) == len(set(produced))
    # The rebuilt state is valid and holds every deposit exactly once.
    for engine in engines.values():
        engine.validate()
    deposits = [m for m in accounts if _body(m)[0] == "exchange.cxpt.DepositConfirmed"]
    assert sum(e.ledger.deposited for e in engines.values()) == sum(_body(m)[1]["amount"] for m in deposits)
    # It agrees with the matcher: the same open orders, positions netting to zero, every fee.
    ledgers = [e.ledger for e in engines.values()]
    assert {oid: (o.price, o.leaves) for ledger in ledgers for oid, o in ledger.orders.items()} == books
    assert sum(p.size for ledger in ledgers for p in ledger.positions.values()) == 0
    fills = [b for n, b in _log_events(log) if n.endswith("OrderFilled")]
    assert fills, "the flow traded"
    assert sum(ledger.fees for ledger in ledgers) == sum(f["fee"] for f in fills)
    assert sum(ledger.clearing for ledger in ledgers) == -sum(
        p.realized_pnl for ledger in ledgers for p in ledger.positions.values()
    )
    assert all(e.markets["BTC-PERP"].definition.kind is MarketKind.PERPETUAL for e in engines.values())
    # And every trader's last reported balance and position is the state's.
    _check_outputs_match_state(accounts, engines)
    # Each accounts.events partition can be settled: it ends on a consistent cut, its exchange
    # accounts match the state's, and the money it reports nets to zero.
    _check_settleable(accounts, engines)


def _check_settleable(accounts: list[Inbound], engines: dict[int, RiskEngine]) -> None:
    """Per partition: Σ traders' balance changes (not deposits) + Σ exchange-account deltas is 0
    after the last ExchangeAccountsChanged, which is the partition's last risk record, and whose
    values are the partition's FEES, CLEARING and INSURANCE (docs/settlement.md)."""
    for partition in range(TRADER_PARTITIONS):
        totals: dict[str, int] = {}
        running, last_exchange = 0, None
        for record in (r for r in accounts if r.partition == partition):
            name, body = _body(record)
            if name == BALANCE:
                total = body["free"] + body["reserved"] + body["withdrawing"] + body["locked"]
                if body["reason"] != "DEPOSIT":
                    running += total - totals.get(body["trader"], 0)
                totals[body["trader"]] = total
            elif name == "exchange.cxpt.ExchangeAccountsChanged":
                assert body["partition"] == partition
                running += body["delta_fees"] + body["delta_clearing"] + body["delta_insurance"]
                assert running == 0, f"partition {partition}: a cut at {record.offset} does not net to 0"
                last_exchange = body
        assert running == 0, f"partition {partition} ends mid-transaction"
        ledger = engines[partition].ledger
        if last_exchange is not None:
            assert (last_exchange["fees"], last_exchange["clearing"], last_exchange["insurance"]) == (
                ledger.fees,
                ledger.clearing,
                ledger.insurance,
            )


def test_a_command_replayed_after_risk_was_killed_is_refused_as_reused(bus: Bus, settings: Settings) -> None:
    with running(MatcherService(Bus(settings))):
        # State: BTC-PERP listed, Alice credited; risk accepted her order, committed it, and was
        # SIGKILLed — what it knows of her nonces now lives only in its changelog.
        victim = _start_risk(settings, idle_exit=60)
        _list_btc_perp(bus)
        _send(bus, [_deposit(ALICE, 1_000, 1)])
        _wait_for_state(bus, lambda e: _listed_and_credited(e, [ALICE]))
        original = _place(ALICE, 1, Side.BUY, 1, PRICE)
        _send(bus, [original])
        _wait_for_state(bus, lambda e: order_id(1) in _holder(e, ALICE).ledger.orders)
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        # Action: the same signed order arrives again as a new command (another gateway, a retry),
        # then a freshly signed one; a new risk process handles both.
        signed: TraderCommand = from_avro(TraderCommand, original[2])
        assert isinstance(signed.body, PlaceOrder)
        _send(
            bus,
            [_command(ALICE, 2, signed.body, nonce=signed.body.nonce), _place(ALICE, 3, Side.BUY, 1, PRICE)],
        )
        assert _start_risk(settings).wait(120) == 0

    # Expectation: the replay is refused with NONCE_REUSED (not DUPLICATE_ORDER_ID: the nonce is
    # checked first); the original and the fresh order were forwarded once each.
    accounts, forwarded = _read_to_end(bus, ACCOUNTS_EVENTS), _read_to_end(bus, MATCHER_COMMANDS)
    refusals = [(b["order_id"], b["reason_code"]) for n, b in map(_body, accounts) if n == REJECTED]
    assert refusals == [(order_id(1), RiskReject.NONCE_REUSED)]
    orders = Counter(m.value["body"][1]["order_id"] for m in forwarded if m.value["trader"] == ALICE)
    assert orders == {order_id(1): 1, order_id(3): 1}


def _check_replays_and_only_they_were_refused_as_reused(
    commands: list[Inbound], refused: dict[str, int]
) -> None:
    """Replays are the commands whose nonce is not their ts_init (see `_command`)."""
    replays = {m.value["command_id"] for m in commands if m.value["body"][1]["nonce"] != m.value["ts_init"]}
    assert replays
    assert {cid for cid, code in refused.items() if code == RiskReject.NONCE_REUSED} == replays


def _check_outputs_match_state(accounts: list[Inbound], engines: dict[int, RiskEngine]) -> None:
    """The latest BalanceChanged / PositionChanged of each trader equals the committed state."""
    balances: dict[str, dict[str, Any]] = {}
    positions: dict[tuple[str, str], dict[str, Any]] = {}
    for record in accounts:  # per trader, in partition (= commit) order
        name, body = _body(record)
        if name == BALANCE:
            balances[body["trader"]] = body
        elif name == POSITION:
            positions[(body["trader"], body["market"])] = body
    for trader, body in balances.items():
        account = _holder(engines, trader).ledger.accounts[trader]
        assert (body["free"], body["reserved"], body["withdrawing"], body["locked"]) == account.snapshot()
    for (trader, market), body in positions.items():
        p = _holder(engines, trader).ledger.positions[(trader, market)]
        assert (body["size"], body["basis"], body["collateral"]) == (p.size, p.basis, p.collateral)
