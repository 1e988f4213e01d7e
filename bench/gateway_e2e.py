"""Signed orders through the whole exchange: lone-order latency hop by hop, CPU per order, and the
most orders the box sustains, one order per request and in batches.

    python bench/gateway_e2e.py [--rate 100] [--seconds 30] [--lone-orders 12000]
                                [--batch-size 20] [--batch-rate 500] [--batch-orders 40000] [--quick]

Starts Kafka and Cassandra with the project launcher if needed, then runs the real services as
separate processes — risk, matcher, the read-model projector and one gateway (uvicorn) — on fresh
topics and a fresh keyspace, all on this machine. 50 traders are funded through accounts.events;
orders are signed beforehand (signing is the client's cost, not the exchange's) in crossing pairs,
so every second order fills. The load generator is a small asyncio HTTP/1.1 client (keep-alive,
requests encoded beforehand): what it costs is reported on its own line.

Phases, after a warm-up of the same traffic:

1. **lone** — `POST /orders` offered open-loop at `--rate` orders/s: p50/p95/p99 of the round
   trip, CPU per order of every process, and each order's time hop by hop (below);
2. **lone, most sustained** — `--lone-orders` orders from 64 connections, each sending its next
   order when the last is answered (closed loop): orders/s and CPU per order;
3. **batch** — `POST /orders/batch` of `--batch-size` orders of one trader, offered at
   `--batch-rate` orders/s: p95 of the batch's round trip;
4. **batch, most sustained** — `--batch-orders` orders in batches, closed loop: orders/s.

The hops of a lone order come from three clocks on this machine: the gateway's `Server-Timing`
marks (received, appended = Kafka acknowledged the command, decided = the outcome reached the event
loop, answered), the Kafka timestamps of the records risk and the matcher produced (when each
handled the command: millisecond resolution), and an observer process tailing matcher.commands and
trade.log read_committed (when each transaction became visible, i.e. committed). The observer is a
measuring instrument: its CPU is not counted.

The last line is one JSON object with the headline figures (keys `lone_cpu_ms_per_order`,
`lone_p50_ms`, `lone_p95_ms`, `lone_p99_ms`, `lone_most_sustained_per_s`,
`batch_most_sustained_per_s`, `batch_p95_ms_at_500`, …) and the details.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import coincurve
import httpx
import jwt
from confluent_kafka import Consumer, TopicPartition
from eth_account import Account
from tqdm import tqdm

from deploy.local.launcher import Launcher
from services.common.bus import CORRELATION_HEADER, Bus, Outbound, TypedProducer, watermarks
from services.common.logs import render_correlation_id
from services.common.presets import preset
from services.common.settings import REPO_ROOT, Settings
from services.common.stores import cassandra
from services.common.topics import ACCOUNTS_EVENTS, MATCHER_COMMANDS, TOPICS, TRADE_LOG, ensure_topics
from services.gateway.core import typed_data as td
from tests.integration.readback import delete_prefixed_topics
from tests.kit import deposit_event, wait_until_ready

ADMIN_KEY = "bench-admin-" + "k" * 32
PRICE = 650_000
TRADERS = 50
SERVICES = ("risk", "matcher", "gateway", "projector")
HOPS = (
    ("client → gateway", "sent", "received"),
    ("gateway checks, Kafka ack", "received", "appended"),
    ("→ risk handles", "appended", "risk_handled"),
    ("risk commits", "risk_handled", "risk_committed"),
    ("→ matcher handles", "risk_committed", "matcher_handled"),
    ("matcher commits", "matcher_handled", "matcher_committed"),
    ("→ gateway has the outcome", "matcher_committed", "decided"),
    ("gateway answers", "decided", "answered"),
    ("→ client has the answer", "answered", "done"),
)
"""The hops of a lone order: (name, from mark, to mark)."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- orders, signed beforehand ----------------------------------------------------------------------


def trader_key(i: int) -> bytes:
    return (0xBE00 + i).to_bytes(32, "big")


def signed_order(
    domain: td.ExchangeDomain, key: bytes, trader: str, side: str, *, nonce: int, price: int = PRICE
) -> dict[str, Any]:
    """The body of a signed 1-lot GTC limit order (coincurve signs: ~20x faster than eth-account)."""
    order_id = uuid.uuid4()
    struct = td.Order(
        trader=trader, market="BTC-PERP", order_id=order_id, client_order_id="", side=td.SideCode[side],
        order_type=td.OrderTypeCode.LIMIT, price=price, size=1, time_in_force=td.TimeInForceCode.GTC,
        post_only=False, reduce_only=False, expire_at=None, stp=td.StpCode.CANCEL_TAKER, nonce=nonce,
        deadline=nonce + 3_600_000_000,
    )  # fmt: skip
    rsv = coincurve.PrivateKey(key).sign_recoverable(td.digest(domain, struct), hasher=None)
    signature = rsv[:64] + bytes([rsv[64] + 27])
    return {
        "orderType": "limit", "market": "BTC-PERP", "orderId": str(order_id), "side": side, "price": price,
        "size": 1, "timeInForce": "GTC", "stp": "CANCEL_TAKER", "trader": trader, "nonce": nonce,
        "deadline": struct.deadline, "signature": "0x" + signature.hex(),
    }  # fmt: skip


def http_request(path: str, payload: Any, idempotency_key: str) -> bytes:
    """One HTTP/1.1 request, encoded."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        f"idempotency-key: {idempotency_key}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Orders:
    """Signed requests, made on demand in crossing pairs: a sell, then a buy of another trader."""

    def __init__(self, domain: td.ExchangeDomain) -> None:
        self.domain = domain
        self.keys = [trader_key(i) for i in range(TRADERS)]
        self.traders = [Account.from_key(k).address.lower() for k in self.keys]
        self._count = 0
        self._nonce = time.time_ns() // 1000

    def requests(self, orders: int, batch: int, desc: str) -> list[tuple[bytes, int]]:
        """`orders` orders as requests of `batch` orders of one trader: (request, orders in it)."""
        made = []
        with tqdm(total=orders, desc=f"sign {desc}", unit="order", leave=False) as progress:
            for _ in range(orders // batch):
                i, side = self._count % TRADERS, "SELL" if self._count % 2 == 0 else "BUY"
                self._count += 1
                bodies = []
                for _ in range(batch):
                    self._nonce += 1
                    key, trader = self.keys[i], self.traders[i]
                    bodies.append(signed_order(self.domain, key, trader, side, nonce=self._nonce))
                if batch == 1:
                    made.append((http_request("/orders", bodies[0], bodies[0]["orderId"]), 1))
                else:
                    made.append(
                        (http_request("/orders/batch", {"orders": bodies}, bodies[0]["orderId"]), batch)
                    )
                progress.update(batch)
        return made


# -- the load generator -----------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    sent_us: int
    done_us: int
    headers: bytes
    body: bytes


class Connection:
    """One keep-alive HTTP/1.1 connection: a request, then its answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> Answer:
        sent = time.time_ns() // 1000
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lower = head.lower()
        at = lower.index(b"content-length:") + 15
        length = int(lower[at : lower.index(b"\r\n", at)])
        body = await self.reader.readexactly(length)
        return Answer(int(head[9:12]), sent, time.time_ns() // 1000, head, body)

    def close(self) -> None:
        self.writer.close()


@dataclass
class Phase:
    """What one phase of requests gave."""

    answers: list[Answer] = field(default_factory=list)
    orders: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)

    def latencies_ms(self) -> list[float]:
        return [(a.done_us - a.sent_us) / 1000 for a in self.answers]

    def cpu_ms_per_order(self) -> dict[str, float]:
        return {name: round(s * 1000 / max(self.orders, 1), 3) for name, s in self.cpu_s.items()}


def _failures(answer: Answer, orders: int) -> list[str]:
    """The refusals in `answer` (of `orders` orders), by HTTP status and error name."""
    if answer.status not in (200, 201):
        return [f"{answer.status} {json.loads(answer.body).get('error', '')}"] * orders
    if orders == 1:
        return []
    results = json.loads(answer.body)["results"]
    return [f"{r['httpStatus']} {r.get('error', '')}" for r in results if r["httpStatus"] not in (200, 201)]


async def offer(
    requests: list[tuple[bytes, int]],
    port: int,
    *,
    rate: float | None,
    connections: int,
    pids: dict[str, int],
) -> Phase:
    """Send `requests`: open loop at `rate` requests/s, or closed loop from `connections` connections
    (`rate` None). CPU of every process in `pids` is taken over the phase."""
    phase = Phase()
    idle: deque[Connection] = deque([await Connection.open(port) for _ in range(connections)])
    progress = tqdm(total=sum(n for _, n in requests), unit="order", leave=False, mininterval=0.5)

    async def one(request: bytes, orders: int, connection: Connection) -> None:
        answer = await connection.exchange(request)
        phase.answers.append(answer)
        phase.orders += orders
        phase.failures.update(_failures(answer, orders))
        progress.update(orders)

    cpu_before = cpu_seconds(pids)
    started = time.perf_counter()
    if rate is not None:
        tasks = []
        for n, (request, orders) in enumerate(requests):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            connection = idle.popleft() if idle else await Connection.open(port)

            async def send(
                request: bytes = request, orders: int = orders, c: Connection = connection
            ) -> None:
                await one(request, orders, c)
                idle.append(c)

            tasks.append(asyncio.create_task(send()))
        await asyncio.gather(*tasks)
    else:
        queue = deque(requests)

        async def worker(connection: Connection) -> None:
            while queue:
                await one(*queue.popleft(), connection)

        await asyncio.gather(*(worker(c) for c in list(idle)))
    phase.seconds = time.perf_counter() - started
    cpu_after = cpu_seconds(pids)
    phase.cpu_s = {name: cpu_after[name] - cpu_before[name] for name in cpu_before}
    progress.close()
    for connection in idle:
        connection.close()
    return phase


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system, all threads) each process has used so far, from /proc."""
    found = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        found[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


# -- the observer: when risk's and the matcher's transactions became visible --------------------------


def observe(bootstrap: str, topics: list[str], output: str, ready: Any) -> None:
    """Tail `topics` read_committed from their ends until SIGTERM; write, per correlation id and
    topic, (the record's Kafka timestamp in ms, when it was seen in µs) to `output` as JSON."""
    stopped = False

    def stop(*_: Any) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"bench-observer-{uuid.uuid4().hex}",
        "isolation.level": "read_committed", "enable.auto.commit": False, "fetch.wait.max.ms": 100,
    })  # fmt: skip
    assignment = []
    for name in topics:
        for p in consumer.list_topics(name, timeout=10).topics[name].partitions:
            assignment.append(TopicPartition(name, p, watermarks(consumer, TopicPartition(name, p))[1]))
    consumer.assign(assignment)
    ready.set()
    seen: dict[str, dict[str, tuple[int, int]]] = {}
    while not stopped:
        first = consumer.poll(0.1)  # consume(n, timeout) would wait for n records or the timeout
        for message in [first, *consumer.consume(500, 0)] if first is not None else []:
            if message.error() is not None:
                continue
            now = time.time_ns() // 1000
            raw = dict(message.headers() or []).get(CORRELATION_HEADER)
            if raw is not None:
                seen.setdefault(render_correlation_id(raw), {})[message.topic() or ""] = (
                    message.timestamp()[1],
                    now,
                )
    consumer.close()
    Path(output).write_text(json.dumps(seen))


class Observer:
    def __init__(self, bus: Bus, run_dir: Path) -> None:
        self.output = run_dir / f"observer-{uuid.uuid4().hex[:6]}.json"
        self.topics = {bus.topic(MATCHER_COMMANDS).name: "risk", bus.topic(TRADE_LOG).name: "matcher"}
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        self.process = context.Process(
            target=observe,
            args=(bus.settings.kafka_bootstrap_servers, list(self.topics), str(self.output), ready),
        )
        self.process.start()
        ready.wait(60)

    def stop(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Per correlation id: 'risk' / 'matcher' → (handled at ms, committed-and-seen at µs)."""
        assert self.process.pid is not None
        os.kill(self.process.pid, signal.SIGTERM)
        self.process.join(30)
        raw = json.loads(self.output.read_text())
        return {cid: {self.topics[t]: v for t, v in by_topic.items()} for cid, by_topic in raw.items()}


def hop_table(answers: list[Answer], observed: dict[str, dict[str, tuple[int, int]]]) -> dict[str, Any]:
    """p50/p95/p99 in ms of each hop of `HOPS`, over the lone orders whose marks are all known."""
    per_hop: dict[str, list[float]] = {name: [] for name, _, _ in HOPS}
    complete = 0
    for answer in answers:
        marks = _marks(answer, observed)
        if marks is None:
            continue
        complete += 1
        for name, start, end in HOPS:
            per_hop[name].append((marks[end] - marks[start]) / 1000)
    table: dict[str, Any] = {
        name: {q: round(percentile(v, p), 2) for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}
        for name, v in per_hop.items()
    }
    return {"orders": complete, "hops_ms": table}


def _marks(answer: Answer, observed: dict[str, dict[str, tuple[int, int]]]) -> dict[str, int] | None:
    if answer.status != 201:
        return None
    timing = next(
        (line for line in answer.headers.split(b"\r\n") if line.lower().startswith(b"server-timing:")), None
    )
    correlation_id = json.loads(answer.body).get("correlationId")
    seen = observed.get(correlation_id or "", {})
    if timing is None or "risk" not in seen or "matcher" not in seen:
        return None
    marks = {"sent": answer.sent_us, "done": answer.done_us}
    for part in timing.split(b":", 1)[1].decode().split(","):
        name, _, value = part.strip().partition(";")
        if value.startswith("desc="):
            marks[name] = int(value[5:].strip('"'))
        else:
            marks[name] = 0 if not value else int(float(value[4:]) * 1000)
    received = marks["received"]
    for name in ("appended", "decided", "answered"):
        marks[name] += received
    marks |= {
        "risk_handled": seen["risk"][0] * 1000, "risk_committed": seen["risk"][1],
        "matcher_handled": seen["matcher"][0] * 1000, "matcher_committed": seen["matcher"][1],
    }  # fmt: skip
    return marks


# -- the stack ---------------------------------------------------------------------------------------


class Stack:
    """Kafka and Cassandra (the launcher's), the services on fresh topics and keyspace, a market, money."""

    def __init__(self) -> None:
        endpoints = Launcher().start(["kafka", "cassandra"])
        tag = uuid.uuid4().hex[:8]
        self.settings = Settings(
            kafka_bootstrap_servers=endpoints.kafka_bootstrap,
            cassandra_contact_points=endpoints.cassandra_host,
            cassandra_port=endpoints.cassandra_port,
            cassandra_keyspace=f"bench_{tag}",
            topic_prefix=f"bench{tag}.",
            log_json=False,
        )
        self.bus = Bus(self.settings)
        ensure_topics(self.bus.client_config(), [self.bus.topic(t) for t in TOPICS])
        self.port = 18_000 + os.getpid() % 1000
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = REPO_ROOT / ".run" / "bench" / tag
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = os.environ | {
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
            "TOPIC_PREFIX": self.settings.topic_prefix,
            "CASSANDRA_CONTACT_POINTS": self.settings.cassandra_contact_points,
            "CASSANDRA_PORT": str(self.settings.cassandra_port),
            "CASSANDRA_KEYSPACE": self.settings.cassandra_keyspace,
            "ADMIN_JWT_KEY": ADMIN_KEY,
            "GATEWAY_PORT": str(self.port),
            "RATE_LIMIT_BURST": "1000000",
            "RATE_LIMIT_PER_S": "1000000",
            "ACK_TIMEOUT_MS": "10000",
            "PYTHONPATH": str(REPO_ROOT),
            "LOG_LEVEL": "WARNING",
            # other engineers' services may hold the default metrics ports
            **{f"{s.upper()}_METRICS_PORT": "0" for s in ("risk", "matcher", "projector")},
        }
        args = {"projector": ("--only", "read-model")}  # the gateway learns markets from the read model
        self.processes = {s: self._start(s, env, *args.get(s, ())) for s in SERVICES}

    def _start(self, service: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{service}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", f"services.{service}", *args], env=env, stdout=log, stderr=log
        )

    def pids(self) -> dict[str, int]:
        """Every process whose CPU counts: the services, Kafka, Cassandra, the load generator."""
        found = {name: p.pid for name, p in self.processes.items()}
        for name in ("kafka", "cassandra"):
            pid_file = REPO_ROOT / ".run" / name / f"{name}.pid"
            if pid_file.exists():
                found[name] = int(pid_file.read_text().split()[0])
        return found | {"load generator": os.getpid()}

    def open_market(self) -> td.ExchangeDomain:
        wait_until_ready(self.url)
        domain_json = httpx.get(f"{self.url}/info").json()
        d = preset("BTC-PERP")
        token = jwt.encode(
            {"sub": "bench", "cognito:groups": ["admin"], "exp": int(time.time()) + 3600}, ADMIN_KEY
        )
        body = {"action": "create", "market": "BTC-PERP", "definition": {
            "kind": d.kind.value, "baseAsset": d.base_asset, "quotePerTickLot": d.quote_per_tick_lot,
            "tickSizeE9": d.tick_size_e9, "lotSizeE9": d.lot_size_e9}}  # fmt: skip
        httpx.post(
            f"{self.url}/admin/markets", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ).raise_for_status()
        producer = TypedProducer(self.bus)
        for i in range(TRADERS):
            trader = Account.from_key(trader_key(i)).address.lower()
            producer.send(
                Outbound(ACCOUNTS_EVENTS, key=trader, value=deposit_event(trader=trader, amount=10**15, n=i))
            )
        producer.flush()
        return td.ExchangeDomain(
            chain_id=domain_json["chainId"], verifying_contract=domain_json["verifyingContract"]
        )

    def wait_open(self, orders: Orders) -> None:
        """A few orders far from the touch until the market is open at the gateway and money is at risk."""
        for _ in range(150):
            nonce = time.time_ns() // 1000
            body = signed_order(
                orders.domain, orders.keys[0], orders.traders[0], "SELL", nonce=nonce, price=PRICE * 2
            )
            answer = httpx.post(
                f"{self.url}/orders", json=body, headers={"Idempotency-Key": body["orderId"]}, timeout=30
            )
            if answer.status_code == 201:
                return
            time.sleep(0.2)
        raise RuntimeError(f"warm-up order refused: {answer.text}")

    def stop(self) -> None:
        """Stop the services, then delete the run's topics and keyspace: a broker kept between runs
        would otherwise gather 61 partitions a run, and the runs after would measure that."""
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            process.wait(30)
        delete_prefixed_topics(self.bus.client_config(), self.settings.topic_prefix)
        session = cassandra.connect(self.settings)
        session.execute(f"DROP KEYSPACE IF EXISTS {self.settings.cassandra_keyspace}", timeout=60)
        session.cluster.shutdown()


# -- the run -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100, help="lone orders/s offered (phase 1)")
    parser.add_argument("--seconds", type=float, default=30, help="length of phase 1 and 3")
    parser.add_argument("--lone-orders", type=int, default=12_000, help="orders of phase 2")
    parser.add_argument("--batch-size", type=int, default=20, help="orders per POST /orders/batch")
    parser.add_argument("--batch-rate", type=float, default=500, help="orders/s offered in batches (phase 3)")
    parser.add_argument("--batch-orders", type=int, default=40_000, help="orders of phase 4")
    parser.add_argument("--connections", type=int, default=64, help="connections of the closed loops")
    parser.add_argument("--warm-up", type=int, default=3_000, help="lone orders before measuring")
    parser.add_argument("--quick", action="store_true", help="short phases: a smoke run, not a measurement")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.lone_orders, args.batch_orders, args.warm_up = 5, 1_000, 4_000, 300

    stack = Stack()
    try:
        orders = Orders(stack.open_market())
        stack.wait_open(orders)
        pids = stack.pids()
        # Signed in the order they are sent: risk keeps each signer's latest nonces and refuses
        # one older than all of them (NONCE_TOO_OLD).
        warm = orders.requests(args.warm_up, 1, "warm-up")
        warm_batch = orders.requests(args.warm_up, args.batch_size, "warm-up")
        lone = orders.requests(int(args.rate * args.seconds), 1, "lone")
        lone_max = orders.requests(args.lone_orders, 1, "lone, most sustained")
        batch = orders.requests(int(args.batch_rate * args.seconds), args.batch_size, "batch")
        batch_max = orders.requests(args.batch_orders, args.batch_size, "batch, most sustained")

        run = asyncio.run
        run(offer(warm, stack.port, rate=None, connections=args.connections, pids=pids))
        run(offer(warm_batch, stack.port, rate=None, connections=args.connections, pids=pids))
        time.sleep(2)  # let the projector and risk's post-trade catch up before measuring
        observer = Observer(stack.bus, stack.log_dir)
        phase1 = run(offer(lone, stack.port, rate=args.rate, connections=32, pids=pids))
        hops = hop_table(phase1.answers, observer.stop())
        phase2 = run(offer(lone_max, stack.port, rate=None, connections=args.connections, pids=pids))
        time.sleep(2)
        phase3 = run(
            offer(batch, stack.port, rate=args.batch_rate / args.batch_size, connections=32, pids=pids)
        )
        phase4 = run(offer(batch_max, stack.port, rate=None, connections=args.connections, pids=pids))
    finally:
        stack.stop()
    _report(args, [phase1, phase2, phase3, phase4], hops)


def _report(args: argparse.Namespace, phases: list[Phase], hops: dict[str, Any]) -> None:
    phase1, phase2, phase3, phase4 = phases
    lone_ms = phase1.latencies_ms()
    cpu1, cpu2 = phase1.cpu_ms_per_order(), phase2.cpu_ms_per_order()
    print(f"\nlone orders at {args.rate:g}/s offered, hop by hop ({hops['orders']} orders), ms:")
    print(f"  {'hop':28} {'p50':>8} {'p95':>8} {'p99':>8}")
    for name, q in hops["hops_ms"].items():
        print(f"  {name:28} {q['p50']:8.2f} {q['p95']:8.2f} {q['p99']:8.2f}")
    trip = [percentile(lone_ms, q) for q in (0.5, 0.95, 0.99)]
    print(f"  {'round trip':28} {trip[0]:8.2f} {trip[1]:8.2f} {trip[2]:8.2f}")
    print("CPU per lone order, ms (at the offered rate / most sustained):")
    for name in cpu1:
        print(f"  {name:28} {cpu1[name]:8.3f} {cpu2[name]:8.3f}")
    print(f"  {'all':28} {sum(cpu1.values()):8.3f} {sum(cpu2.values()):8.3f}")
    figures = {
        "bench": "gateway_e2e",
        "lone_cpu_ms_per_order": round(sum(cpu2.values()), 2),
        "lone_p50_ms": round(percentile(lone_ms, 0.50), 2),
        "lone_p95_ms": round(percentile(lone_ms, 0.95), 2),
        "lone_p99_ms": round(percentile(lone_ms, 0.99), 2),
        "lone_most_sustained_per_s": round(phase2.orders / phase2.seconds),
        "batch_most_sustained_per_s": round(phase4.orders / phase4.seconds),
        "batch_p95_ms_at_500": round(percentile(phase3.latencies_ms(), 0.95), 2),
        "lone_offered_per_s": args.rate,
        "lone_achieved_per_s": round(phase1.orders / phase1.seconds),
        "lone_cpu_ms_per_order_at_offered": round(sum(cpu1.values()), 2),
        "lone_cpu_ms_by_process": cpu2,
        "lone_cpu_ms_by_process_at_offered": cpu1,
        "lone_hops_ms": hops["hops_ms"],
        "batch_size": args.batch_size,
        "batch_offered_per_s": args.batch_rate,
        "batch_achieved_per_s": round(phase3.orders / phase3.seconds),
        "batch_p50_ms_at_500": round(percentile(phase3.latencies_ms(), 0.50), 2),
        "batch_p99_ms_at_500": round(percentile(phase3.latencies_ms(), 0.99), 2),
        "batch_cpu_ms_per_order": round(sum(phase4.cpu_ms_per_order().values()), 2),
        "batch_cpu_ms_by_process": phase4.cpu_ms_per_order(),
        "failed_orders": dict(sum((p.failures for p in phases), Counter())),
        "quick": args.quick,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
