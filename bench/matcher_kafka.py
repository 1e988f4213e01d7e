"""Matcher service throughput through Kafka with exactly-once transactions.

    python bench/matcher_kafka.py [--commands 100000] [--batch 500]

Starts Kafka with the project launcher if it is not running, preloads `--commands` commands
into a fresh `matcher.commands` (own topic prefix), then runs the real MatcherService loop in
this process until every command is consumed and committed. Outputs: trade.log and
risk.postings records, and snapshots every 10,000 commands, all inside the transactions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm

from deploy.local.launcher import Launcher
from services.common.bus import Bus, Outbound, TypedProducer
from services.common.settings import Settings
from services.common.topics import MATCHER_COMMANDS, TOPICS, ensure_topics
from services.matcher.service import MatcherService
from services.replay.flows import realistic_flow


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="commands per transaction")
    args = parser.parse_args()
    endpoints = Launcher().start(["kafka"])
    settings = Settings(
        kafka_bootstrap_servers=endpoints.kafka_bootstrap,
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
        batch_max_messages=args.batch,
        batch_timeout_ms=5,
        log_json=False,
    )
    bus = Bus(settings)
    ensure_topics(bus.client_config(), [bus.topic(t) for t in TOPICS])
    flow = realistic_flow(args.commands)
    producer = TypedProducer(bus)
    for command in tqdm(flow, desc="preload", unit="cmd"):
        producer.send(Outbound(MATCHER_COMMANDS, key=command.market, value=command))
    producer.flush()

    service = MatcherService(bus)
    processor = service.processor
    done, first = 0, None
    with tqdm(total=len(flow), desc="match", unit="cmd") as progress:
        while done < len(flow):
            consumed = processor.run_once()
            if consumed and first is None:
                first = time.perf_counter() - 0.0
            done += consumed
            progress.update(consumed)
    elapsed = time.perf_counter() - (first or time.perf_counter())
    processor.close()
    print(
        json.dumps(
            {
                "bench": "matcher_kafka",
                "commands": len(flow),
                "commands_per_s": round(len(flow) / elapsed),
                "transactions": processor.stats["batches"],
                "batch_max": args.batch,
                "seconds": round(elapsed, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
