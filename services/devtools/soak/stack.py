"""The exchange for a soak: Kafka and Cassandra from the launcher, every service a process of its own
on fresh topics, keyspace and ClickHouse database — started, SIGKILLed and restarted the way
`deploy/dev.sh` runs them (`python -m services.<name>`), and restarted too when one exits by itself
(as its Kubernetes Deployment would)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from deploy.local import procs
from deploy.local.launcher import Endpoints, Launcher
from services.common.bus import Bus
from services.common.settings import REPO_ROOT, Settings
from services.common.topics import TOPICS, ensure_topics

SERVICES = ("matcher", "risk", "projector", "gateway", "oracle", "funding", "metrics", "wspush")
"""What the soak runs and may kill (settlement and the chain watcher need anvil: not yet here)."""
GROUP_OF = {"matcher": "matcher", "risk": "risk", "projector": "projector", "funding": "funding",
            "metrics": "metrics", "wspush": "wspush"}  # fmt: skip
"""Service → a word in the names of its consumer groups (catching up is measured on them)."""
GroupPartition = tuple[str, str, int]
"""(consumer group, topic, partition)."""


@dataclass
class Kill:
    """One SIGKILL and what it took to recover."""

    target: str
    at_s: float
    restarted_after_s: float = 0.0
    caught_up_after_s: float | None = None


@dataclass
class Stack:
    """The running exchange of one soak (see the module docstring)."""

    settings: Settings
    env: dict[str, str]
    log_dir: Path
    gateway_url: str
    admin_key: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    unplanned_exits: dict[str, int] = field(default_factory=dict)

    @classmethod
    def start(
        cls, endpoints: Endpoints | None = None, *, oracle_interval_s: int = 1, funding_interval_s: int = 10
    ) -> Stack:
        """Topics made and every service started (not yet ready: see `wait_ready`), on `endpoints`
        (default: the launcher's Kafka and Cassandra, started if they are not)."""
        endpoints = endpoints or Launcher().start(["kafka", "cassandra"])
        tag = uuid.uuid4().hex[:8]
        run_dir = REPO_ROOT / ".run" / "soak" / tag
        run_dir.mkdir(parents=True, exist_ok=True)
        settings = Settings(
            kafka_bootstrap_servers=endpoints.kafka_bootstrap,
            cassandra_contact_points=endpoints.cassandra_host,
            cassandra_port=endpoints.cassandra_port,
            cassandra_keyspace=f"soak_{tag}",
            topic_prefix=f"soak{tag}.",
            clickhouse_dsn=f"chdb://{run_dir / 'clickhouse'}",
            clickhouse_database=f"soak_{tag}",
            log_json=False,
        )
        bus = Bus(settings)
        ensure_topics(bus.client_config(), [bus.topic(t) for t in TOPICS])
        base = 19_000 + os.getpid() % 500 * 3
        admin_key = f"soak-admin-{uuid.uuid4().hex}"
        env = os.environ | {
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "TOPIC_PREFIX": settings.topic_prefix,
            "CASSANDRA_CONTACT_POINTS": settings.cassandra_contact_points,
            "CASSANDRA_PORT": str(settings.cassandra_port),
            "CASSANDRA_KEYSPACE": settings.cassandra_keyspace,
            "CLICKHOUSE_DSN": settings.clickhouse_dsn,
            "CLICKHOUSE_DATABASE": settings.clickhouse_database,
            "ADMIN_JWT_KEY": admin_key,
            "GATEWAY_SESSION_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
            "GATEWAY_PORT": str(base),
            "METRICS_PORT": str(base + 1),
            "WSPUSH_PORT": str(base + 2),
            "ORACLE_SIMULATED": "BTC-USD=65000",
            "ORACLE_INTERVAL_S": str(oracle_interval_s),
            "FUNDING_INTERVAL_S": str(funding_interval_s),
            "SETTLEMENT_WINDOW_S": "5",
            "MARK_BASIS_ROUNDS": "3",
            "RATE_LIMIT_BURST": "100000",
            "RATE_LIMIT_PER_S": "100000",
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",  # a SIGKILLed service's last lines reach its log
            "LOG_LEVEL": "WARNING",
            "LOG_JSON": "false",
            **{
                f"{s.upper()}_METRICS_PORT": "0"
                for s in ("risk", "matcher", "projector", "oracle", "funding")
            },
        }
        stack = cls(settings, env, run_dir, f"http://127.0.0.1:{base}", admin_key)
        for service in SERVICES:
            stack.launch(service)
        return stack

    # -- processes ----------------------------------------------------------------------------------

    def launch(self, service: str) -> None:
        """Start `service` (again), its output appended to its log."""
        log = (self.log_dir / f"{service}.log").open("ab")
        self.processes[service] = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"], env=self.env, stdout=log, stderr=log, cwd=REPO_ROOT
        )

    def revive_exited(self) -> list[str]:
        """Restart every service that exited by itself; returns their names."""
        exited = [name for name, p in self.processes.items() if p.poll() is not None]
        for name in exited:
            self.unplanned_exits[name] = self.unplanned_exits.get(name, 0) + 1
            self.launch(name)
        return exited

    def kill(self, service: str, at_s: float) -> Kill:
        """SIGKILL `service`, wait for it to die, start it again."""
        process = self.processes[service]
        t0 = time.monotonic()
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        self.launch(service)
        return Kill(service, at_s, restarted_after_s=time.monotonic() - t0)

    def kill_infrastructure(self, name: str, at_s: float) -> Kill:
        """SIGKILL the Kafka broker or the Cassandra node, then start it again with the launcher."""
        t0 = time.monotonic()
        pid_file = self.settings.cxpt_run_dir / name / f"{name}.pid"
        pid = int(pid_file.read_text().split()[0])
        os.killpg(pid, signal.SIGKILL)
        port = (
            self.settings.cassandra_port
            if name == "cassandra"
            else _port(self.settings.kafka_bootstrap_servers)
        )
        # The kernel closes a killed JVM's listening sockets a moment after its pid is gone, and
        # the launcher refuses to start over a port that still answers.
        deadline = time.monotonic() + 30
        while (procs.is_alive(pid) or procs.port_open(port)) and time.monotonic() < deadline:
            time.sleep(0.1)
        Launcher().start([name])
        return Kill(name, at_s, restarted_after_s=time.monotonic() - t0)

    def stop(self) -> None:
        """SIGTERM every service and wait for it (SIGKILL after 30 s)."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    # -- readiness and catching up ------------------------------------------------------------------

    def wait_ready(self, timeout_s: float = 120) -> None:
        """Until the gateway answers /ready."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.gateway_url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the gateway at {self.gateway_url} was not ready after {timeout_s} s")

    def backlog(self, service: str) -> dict[GroupPartition, int] | None:
        """The end offset, now, of every partition each of `service`'s consumer groups reads (None:
        the service consumes through no group we can measure — the gateway, the oracle)."""
        committed = self._committed_of(service)
        if not committed:
            return None
        ends = self._ends(sorted({(topic, partition) for _, topic, partition in committed}))
        return {key: ends[(key[1], key[2])] for key in committed}

    def caught_up(self, service: str, backlog: dict[GroupPartition, int]) -> bool:
        """True once each of `service`'s groups has read all of `backlog`: committed up to its end
        offset, or to where only transaction markers remain before it."""
        committed = self._committed_of(service)
        behind = [(key, end) for key, end in backlog.items() if committed.get(key, -1) < end]
        return all(self._only_markers(key[1], key[2], committed.get(key, 0), end) for key, end in behind)

    def _committed_of(self, service: str) -> dict[GroupPartition, int]:
        """(group, topic, partition) → the offset committed, for every consumer group of `service`."""
        word = GROUP_OF.get(service)
        if word is None:
            return {}
        admin = AdminClient(Bus(self.settings).client_config())
        listed = admin.list_consumer_groups(request_timeout=10).result()
        groups = [g.group_id for g in listed.valid if g.group_id.startswith(self.settings.topic_prefix)]
        committed: dict[GroupPartition, int] = {}
        for group in (g for g in groups if word in g):
            future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
            for tp in future.result().topic_partitions:
                committed[(group, tp.topic, tp.partition)] = tp.offset
        return committed

    def _consumer(self) -> Consumer:
        return Consumer(
            Bus(self.settings).client_config()
            | {
                "group.id": "soak-watermarks",
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )

    def _ends(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        consumer = self._consumer()
        try:
            return {
                (t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                for t, p in partitions
            }
        finally:
            consumer.close()

    def _only_markers(self, topic: str, partition: int, start: int, end: int) -> bool:
        """True if no committed record lies in [start, end) of the partition (markers only)."""
        consumer = self._consumer()
        try:
            consumer.assign([TopicPartition(topic, partition, max(start, 0))])
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    return True
                if error is None:
                    return (message.offset() or 0) >= end
            return False
        finally:
            consumer.close()


def _port(bootstrap: str) -> int:
    return int(bootstrap.split(",", maxsplit=1)[0].rsplit(":", 1)[1])
