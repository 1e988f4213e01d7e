"""WebSocket fan-out of ws-push: messages per second delivered to N connections on one market.

    python bench/wspush_fanout.py [--connections 1000] [--rates 500,2000,0] [--seconds 8]

One server process runs the real ws-push app under uvicorn (the same `uvicorn_config`), fed
in-process with real trade-log entries (a realistic order flow through the matching engine:
passive adds, cancels, crossing and market orders → depth deltas and trades), so the figure is the
fan-out — hub, outboxes, batching, sockets — not Kafka. Client processes (2) hold the connections
with the `websockets` asyncio client, all subscribed to the market; they count messages without
decoding every frame and measure the latency of each frame's oldest message (now − its `ts`,
stamped by the feeder when it hands the entry to the hub; same host, same clock).

Each rate is entries per second (0: as fast as the server takes them, 200 entries per tick).
Ends with one JSON line ``{"bench": "wspush_fanout", ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from msgspec.structs import replace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MARKET = "BTC-PERP"
CLIENT_PROCESSES = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the server process -----------------------------------------------------------------------------


def serve(port: int, connections: int, rate: int, seconds: float) -> None:
    """Serve ws-push; once `connections` subscribers are in, feed entries for `seconds`."""
    import uvicorn

    from services.common.settings import Settings
    from services.matcher.core.engine import MatchingEngine, log_entry
    from services.replay.flows import realistic_flow
    from services.wspush.core.channels import market_channel
    from services.wspush.service import WsPushService, uvicorn_config

    engine = MatchingEngine()
    flow = realistic_flow(60_000)
    entries = [log_entry(c, engine.apply(c), f"bench:0:{i}") for i, c in enumerate(flow)]
    service = WsPushService(Settings(wspush_port=port, log_json=False), replica_id="bench")
    server = uvicorn.Server(uvicorn_config(service))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    service.submit(entries[:1]).result()  # the listing
    print("READY", flush=True)
    while service.hub.subscribers(market_channel(MARKET)) < connections:
        time.sleep(0.05)
    time.sleep(0.5)
    per_tick = 200 if rate == 0 else max(1, rate // 100)
    tick_s = 0.0 if rate == 0 else per_tick / rate
    started = time.monotonic()
    sent = 0
    position = 1
    while time.monotonic() - started < seconds:
        now_us = time.time_ns() // 1_000
        batch = [replace(e, ts_event=now_us) for e in entries[position : position + per_tick]]
        position = position + per_tick if position + per_tick < len(entries) else 1
        service.submit(batch).result()
        sent += len(batch)
        if tick_s:
            time.sleep(max(0.0, started + sent / rate - time.monotonic()))
    elapsed = time.monotonic() - started
    time.sleep(2.0)  # let the sockets drain
    drops = service.metrics.drops.labels("slow_consumer")._value.get()
    print(
        json.dumps(
            {
                "entries": sent,
                "feed_s": round(elapsed, 3),
                "published": service.hub.published,
                "drops": drops,
                "frames": service.metrics.frames._value.get(),
            }
        ),
        flush=True,
    )
    print("DONE", flush=True)
    server.should_exit = True
    time.sleep(1)


# -- a client process ------------------------------------------------------------------------------


def clients(port: int, count: int, idle_s: float) -> None:
    """Hold `count` subscribed connections; count messages and frame latencies until idle."""
    from websockets.asyncio.client import connect

    stats = {"messages": 0, "frames": 0, "first": 0.0, "last": 0.0}
    latencies_us: list[int] = []
    subscribe = json.dumps({"op": "subscribe", "channel": f"market.{MARKET}"})

    async def one(ready: asyncio.Event, opened: list[int]) -> None:
        async with connect(f"ws://127.0.0.1:{port}/ws", max_queue=None, ping_interval=None) as ws:
            await ws.send(subscribe)
            await ws.recv()  # subscribed
            opened[0] += 1
            if opened[0] == count:
                ready.set()
            async for frame in ws:
                now = time.time_ns() // 1_000
                text = frame if isinstance(frame, str) else frame.decode()
                stats["messages"] += text.count('"channel":')
                stats["frames"] += 1
                at = text.find('"ts":') + 5
                latencies_us.append(now - int(text[at : text.find(",", at)]))
                stats["last"] = time.monotonic()
                if not stats["first"]:
                    stats["first"] = stats["last"]

    async def main() -> None:
        ready, opened = asyncio.Event(), [0]
        tasks = []
        for _ in range(count):
            tasks.append(asyncio.create_task(one(ready, opened)))
            await asyncio.sleep(0.001)  # don't SYN-flood the listen backlog
        await ready.wait()
        print("SUBSCRIBED", flush=True)
        while not stats["last"] or time.monotonic() - stats["last"] < idle_s:
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()

    asyncio.run(main())
    latencies_us.sort()
    print(
        json.dumps(
            {
                "messages": stats["messages"],
                "frames": stats["frames"],
                "span_s": stats["last"] - stats["first"],
                "latencies_us": latencies_us[:: max(1, len(latencies_us) // 20_000)],
            }
        ),
        flush=True,
    )


# -- the orchestration -----------------------------------------------------------------------------


def run_once(connections: int, rate: int, seconds: float) -> dict[str, object]:
    port = _free_port()
    me = [sys.executable, __file__]
    server = subprocess.Popen(
        [
            *me,
            "--serve",
            str(port),
            "--connections",
            str(connections),
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "READY"
    share = [
        connections // CLIENT_PROCESSES + (i < connections % CLIENT_PROCESSES)
        for i in range(CLIENT_PROCESSES)
    ]
    holders = [
        subprocess.Popen(
            [*me, "--clients", str(port), "--connections", str(n)], stdout=subprocess.PIPE, text=True
        )
        for n in share
    ]
    outputs = []
    for holder in holders:
        out, _ = holder.communicate(timeout=seconds + 300)
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    lines = server.communicate(timeout=60)[0].strip().splitlines()
    fed = json.loads(lines[lines.index("DONE") - 1])
    messages = sum(int(o["messages"]) for o in outputs)
    span = max(float(o["span_s"]) for o in outputs)
    latencies = sorted(v for o in outputs for v in o["latencies_us"])

    def pct(q: float) -> float:
        return round(float(latencies[min(len(latencies) - 1, int(q * len(latencies)))]) / 1_000, 2)

    return {
        "connections": connections,
        "rate_entries_per_s": rate or "max",
        "entries": fed["entries"],
        "entries_per_s": round(fed["entries"] / fed["feed_s"]),
        "channel_messages": fed["published"],
        "messages_delivered": messages,
        "delivered_per_s": round(messages / span) if span else 0,
        "frames": sum(int(o["frames"]) for o in outputs),
        "messages_per_frame": round(messages / max(1, sum(int(o["frames"]) for o in outputs)), 1),
        "drops": fed["drops"],
        "latency_ms_p50": pct(0.50),
        "latency_ms_p99": pct(0.99),
        "latency_ms_max": round(latencies[-1] / 1_000, 2),
        "latency_ms_mean": round(statistics.fmean(latencies) / 1_000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1_000)
    parser.add_argument("--rates", default="500,2000,0", help="entries/s per run, comma-separated; 0 = max")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.connections, args.rate, args.seconds)
        return
    if args.clients:
        clients(args.clients, args.connections, idle_s=3.0)
        return
    runs = []
    for rate in (int(r) for r in args.rates.split(",")):
        run = run_once(args.connections, rate, args.seconds)
        print(run, file=sys.stderr, flush=True)
        runs.append(run)
    result = {
        "bench": "wspush_fanout",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "client_processes": CLIENT_PROCESSES,
        "runs": runs,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
