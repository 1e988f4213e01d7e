"""Order → fill latency through the whole path, and the most orders one gateway process sustains.

    python bench/gateway_e2e.py [--rate 1000] [--seconds 20] [--max-rate-orders 30000] [--batch 1]

Starts Kafka and Cassandra with the project launcher if needed, then runs the real services as
separate processes — risk, matcher, the read-model projector and one gateway (uvicorn) — on fresh
topics and a fresh keyspace. Traders are funded through accounts.events; orders are signed
beforehand (signing is the client's cost, not the exchange's) in crossing pairs, so every second
order fills.

Latency is one HTTP `POST /orders` round trip: gateway checks → orders.commands → risk
(transaction) → matcher.commands → matcher (transaction) → trade.log → the gateway's outcome tail
→ the answer with the fill. Phase 1 offers `--rate` orders/s open-loop and reports p50/p95/p99;
phase 2 offers as much as the gateway takes (64 connections) and reports the sustained rate.
With `--batch N` each request is a `POST /orders/batch` of N orders of one trader (a latency is
then the batch's round trip); rates still count orders.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import jwt
from eth_account import Account
from tqdm import tqdm

from deploy.local.launcher import Launcher
from services.common.bus import Bus, Outbound, TypedProducer
from services.common.presets import preset
from services.common.settings import REPO_ROOT, Settings
from services.common.topics import ACCOUNTS_EVENTS, TOPICS, ensure_topics
from services.gateway.core import typed_data as td
from tests.kit import deposit_event, wait_until_ready

ADMIN_KEY = "bench-admin-" + "k" * 32
PRICE = 650_000
TRADERS = 50


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def signed_order(
    domain: td.ExchangeDomain, account: Any, side: str, nonce: int, price: int = PRICE
) -> dict[str, Any]:
    """The body of a signed 1-lot GTC limit order."""
    order_id, trader = uuid.uuid4(), account.address.lower()
    struct = td.Order(
        trader=trader, market="BTC-PERP", order_id=order_id, client_order_id="", side=td.SideCode[side],
        order_type=td.OrderTypeCode.LIMIT, price=price, size=1, time_in_force=td.TimeInForceCode.GTC,
        post_only=False, reduce_only=False, expire_at=None, stp=td.StpCode.CANCEL_TAKER, nonce=nonce,
        deadline=nonce + 600_000_000,
    )  # fmt: skip
    signature = td.sign(domain, struct, account.key)
    return {
        "orderType": "limit", "market": "BTC-PERP", "orderId": str(order_id), "side": side, "price": price,
        "size": 1, "timeInForce": "GTC", "stp": "CANCEL_TAKER", "trader": trader, "nonce": nonce,
        "deadline": struct.deadline, "signature": "0x" + signature.hex(),
    }  # fmt: skip


Request = dict[str, Any] | list[dict[str, Any]]
"""One `POST /orders` body, or the orders of one `POST /orders/batch`."""


def presign(domain: td.ExchangeDomain, count: int, batch: int = 1) -> list[Request]:
    """`count` orders in requests of `batch` orders of one trader, alternating sells and buys
    between distinct traders, so every buy trades against an earlier sell."""
    accounts = [Account.from_key((0xBE00 + i).to_bytes(32, "big")) for i in range(TRADERS)]
    base = time.time_ns() // 1000
    requests: list[Request] = []
    with tqdm(total=count, desc="sign", unit="order") as progress:
        for r in range(count // batch):
            account, side = accounts[r % TRADERS], "SELL" if r % 2 == 0 else "BUY"
            orders = [signed_order(domain, account, side, base + r * batch + i) for i in range(batch)]
            requests.append(orders if batch > 1 else orders[0])
            progress.update(batch)
    return requests


def start(service: str, env: dict[str, str], log_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    log = (log_dir / f"{service}.log").open("wb")
    command = [sys.executable, "-m", f"services.{service}", *args]
    return subprocess.Popen(command, env=env, stdout=log, stderr=log)


async def offer(
    requests: list[Request], url: str, rate: float | None, connections: int
) -> tuple[list[float], int, float]:
    """Send `requests` (at `rate`/s, or as fast as answered); latencies in ms, failed orders, seconds."""
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    queue: asyncio.Queue[Request] = asyncio.Queue()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one(body: Request) -> None:
            nonlocal failures
            orders = body if isinstance(body, list) else [body]
            path, payload = (
                ("/orders/batch", {"orders": body}) if isinstance(body, list) else ("/orders", body)
            )
            started = time.perf_counter()
            try:
                answer = await client.post(
                    path, json=payload, headers={"Idempotency-Key": orders[0]["orderId"]}
                )
            except httpx.HTTPError:
                failures += len(orders)
                return
            latencies.append((time.perf_counter() - started) * 1000)
            if answer.status_code not in (200, 201):
                failures += len(orders)
            elif isinstance(body, list):
                failures += sum(r["httpStatus"] not in (200, 201) for r in answer.json()["results"])

        started = time.perf_counter()
        if rate is not None:
            tasks = []
            for n, body in enumerate(requests):
                delay = started + n / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(body)))
            await asyncio.gather(*tasks)
        else:
            for body in requests:
                queue.put_nowait(body)

            async def worker() -> None:
                while not queue.empty():
                    await one(queue.get_nowait())

            await asyncio.gather(*(worker() for _ in range(connections)))
        return latencies, failures, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--max-rate-orders", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=1, help="orders per request (>1: POST /orders/batch)")
    args = parser.parse_args()
    endpoints = Launcher().start(["kafka", "cassandra"])
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap_servers=endpoints.kafka_bootstrap,
        cassandra_contact_points=endpoints.cassandra_host,
        cassandra_port=endpoints.cassandra_port,
        cassandra_keyspace=f"bench_{tag}",
        topic_prefix=f"bench{tag}.",
        log_json=False,
    )
    bus = Bus(settings)
    ensure_topics(bus.client_config(), [bus.topic(t) for t in TOPICS])
    port = 18_000 + os.getpid() % 1000
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "CASSANDRA_CONTACT_POINTS": settings.cassandra_contact_points,
        "CASSANDRA_PORT": str(settings.cassandra_port),
        "CASSANDRA_KEYSPACE": settings.cassandra_keyspace,
        "ADMIN_JWT_KEY": ADMIN_KEY,
        "GATEWAY_PORT": str(port),
        "RATE_LIMIT_BURST": "1000000",
        "RATE_LIMIT_PER_S": "1000000",
        "ACK_TIMEOUT_MS": "10000",
        "PYTHONPATH": str(REPO_ROOT),
        "LOG_LEVEL": "WARNING",
    }
    log_dir = REPO_ROOT / ".run" / "bench" / tag
    log_dir.mkdir(parents=True, exist_ok=True)
    processes = {s: start(s, env, log_dir) for s in ("risk", "matcher", "gateway")}
    # The gateway learns markets and their status from the read model.
    processes["projector"] = start("projector", env, log_dir, "--only", "read-model")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url)
        domain_json = httpx.get(f"{url}/info").json()
        domain = td.ExchangeDomain(
            chain_id=domain_json["chainId"], verifying_contract=domain_json["verifyingContract"]
        )
        _list_market(url)
        _fund(bus)
        steady = presign(domain, int(args.rate * args.seconds), args.batch)
        flat = presign(domain, args.max_rate_orders, args.batch)
        _warm_up(url, domain)
        request_rate = args.rate / args.batch
        latencies, failures, elapsed = asyncio.run(offer(steady, url, request_rate, connections=256))
        pids = {name: p.pid for name, p in processes.items()} | _server_pids()
        cpu_before = {name: _cpu_s(pid) for name, pid in pids.items()} | {
            "load generator": time.process_time()
        }
        _, max_failures, max_elapsed = asyncio.run(offer(flat, url, None, connections=64))
        cpu_after = {name: _cpu_s(pid) for name, pid in pids.items()} | {
            "load generator": time.process_time()
        }
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(30)
    print(
        json.dumps(
            {
                "bench": "gateway_e2e",
                "orders_per_request": args.batch,
                "offered_rate": args.rate,
                "achieved_rate": round(len(steady) * args.batch / elapsed),
                "p50_ms": round(percentile(latencies, 0.50), 2),
                "p95_ms": round(percentile(latencies, 0.95), 2),
                "p99_ms": round(percentile(latencies, 0.99), 2),
                "failures": failures,
                "max_sustained_orders_per_s": round(len(flat) * args.batch / max_elapsed),
                "max_rate_failures": max_failures,
                "cpu_ms_per_order_at_max_rate": {
                    name: round((cpu_after[name] - cpu_before[name]) * 1000 / len(flat) / args.batch, 2)
                    for name in cpu_before
                },
            }
        )
    )


def _server_pids() -> dict[str, int]:
    """Kafka's and Cassandra's pids, from the launcher's pid files."""
    found = {}
    for name in ("kafka", "cassandra"):
        pid_file = REPO_ROOT / ".run" / name / f"{name}.pid"
        if pid_file.exists():
            found[name] = int(pid_file.read_text().split()[0])
    return found


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _list_market(url: str) -> None:
    d = preset("BTC-PERP")
    token = jwt.encode(
        {"sub": "bench", "cognito:groups": ["admin"], "exp": int(time.time()) + 3600}, ADMIN_KEY
    )
    body = {"action": "create", "market": "BTC-PERP", "definition": {
        "kind": d.kind.value, "baseAsset": d.base_asset, "quotePerTickLot": d.quote_per_tick_lot,
        "tickSizeE9": d.tick_size_e9, "lotSizeE9": d.lot_size_e9}}  # fmt: skip
    answer = httpx.post(
        f"{url}/admin/markets", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    answer.raise_for_status()


def _fund(bus: Bus) -> None:
    producer = TypedProducer(bus)
    for i in range(TRADERS):
        trader = Account.from_key((0xBE00 + i).to_bytes(32, "big")).address.lower()
        producer.send(
            Outbound(ACCOUNTS_EVENTS, key=trader, value=deposit_event(trader=trader, amount=10**15, n=i))
        )
    producer.flush()


def _warm_up(url: str, domain: td.ExchangeDomain) -> None:
    """A few orders until the market is open at the gateway and money has arrived at risk."""
    account = Account.from_key((0xBE00).to_bytes(32, "big"))
    for _ in range(100):
        # Far from the touch: it rests and never trades with the measured flow.
        body = signed_order(domain, account, "SELL", time.time_ns() // 1000, price=PRICE * 2)
        answer = httpx.post(
            f"{url}/orders", json=body, headers={"Idempotency-Key": body["orderId"]}, timeout=30
        )
        if answer.status_code == 201:
            return
        time.sleep(0.2)
    raise RuntimeError(f"warm-up order refused: {answer.text}")


if __name__ == "__main__":
    main()
