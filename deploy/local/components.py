"""The four parts of the local infrastructure and how each is started and probed.

A :class:`ServerComponent` is a long-running process (Kafka, Cassandra, anvil)
with a pid file, a log file and a health probe. ClickHouse is the embedded
chdb engine: there is no server, only a data directory and an engine check.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import shutil
import string
import subprocess
import sys
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from deploy.local import procs, resolve
from deploy.local.settings import CHAIN_ID, HOST, PACKAGE_DIR, Settings, heap_bytes
from deploy.local.tls import ServerTls, server_tls

Echo = Callable[[str], None]

TEMPLATES = PACKAGE_DIR / "templates"


@dataclass(frozen=True)
class ComponentStatus:
    """What ``Launcher.status()`` reports for one component."""

    name: str
    #: Our process is alive (always False for ClickHouse, which has no process).
    running: bool
    #: The health probe answers (for ClickHouse: the engine check has passed).
    healthy: bool
    pid: int | None
    #: ``host:port``, URL or DSN where clients reach it.
    listen: str
    log_path: Path | None
    detail: str = ""


@dataclass(frozen=True)
class StartResult:
    """One component's outcome of ``Launcher.start()``."""

    name: str
    #: "started", "already running", "was starting" or "ready" (ClickHouse).
    outcome: str
    #: Seconds from the start of ``Launcher.start()`` until healthy.
    seconds: float
    pid: int | None


class StartFailure(Exception):
    """A component did not become healthy; carries what the user needs to act."""

    def __init__(self, component: Component, message: str, *, show_log: bool = True) -> None:
        super().__init__(f"{component.name}: {message}")
        self.component = component
        self.message = message
        #: False when the log cannot explain it (nothing of ours was started).
        self.show_log = show_log


class Component(ABC):
    """Common shape of the four infrastructure parts."""

    #: Key used in ``--only``, ``status()`` and the run directory layout.
    name: str
    #: Human name for progress lines.
    title: str
    #: Subdirectory of the run directory.
    dir_name: str
    #: What to do when it fails; printed under the log tail.
    hint: str

    def __init__(self, settings: Settings, echo: Echo) -> None:
        self.settings = settings
        self.echo = echo

    @property
    def home(self) -> Path:
        """``<run dir>/<dir_name>``: everything this component writes."""
        return self.settings.run_dir / self.dir_name

    @property
    @abstractmethod
    def listen(self) -> str:
        """Where clients reach it (host:port, URL or DSN)."""

    @property
    @abstractmethod
    def log_path(self) -> Path | None:
        """Its log file, if it has one."""

    @abstractmethod
    def ensure_started(self, t0: float, deadline: float) -> StartResult:
        """Make it healthy (start it if needed) before ``deadline`` (monotonic)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop it if it runs; never raises for "was not running"."""

    @abstractmethod
    def status(self) -> ComponentStatus:
        """Its current state, probed now."""

    def say(self, text: str) -> None:
        """A progress line prefixed with the component name."""
        self.echo(f"[{self.name}] {text}")


class ServerComponent(Component):
    """A server process with a pid file, a log file and a health probe."""

    #: Seconds between SIGTERM and SIGKILL in ``stop()``.
    grace_s: float = 30.0
    #: The server's timer slack (`procs.timer_slack`); None keeps the kernel's 50 µs.
    timer_slack_ns: int | None = None

    @property
    def pid_file(self) -> Path:
        """``<home>/<name>.pid``."""
        return self.home / f"{self.name}.pid"

    @property
    def marker(self) -> str:
        """A string in our process's command line that tells it is ours."""
        return str(self.home) + os.sep

    @property
    @abstractmethod
    def log_path(self) -> Path:
        """Its log file: the server's stdout and stderr, appended across starts."""

    @abstractmethod
    def ports(self) -> list[int]:
        """Every port the server binds (all must be free before it starts)."""

    @abstractmethod
    def prepare(self) -> None:
        """Fetch artefacts and write configuration; called before each start."""

    @abstractmethod
    def command(self) -> list[str]:
        """The server's argv; ``argv[0]`` is an absolute path."""

    @abstractmethod
    def probe(self) -> str | None:
        """One health check: a short description if healthy, else None. Never raises."""

    def ensure_started(self, t0: float, deadline: float) -> StartResult:
        """Start the server unless ours is already up, then wait until healthy."""
        pid = procs.owned_pid(self.pid_file, self.marker)
        if pid is not None:
            if self.probe() is not None:
                self.say(f"already running and healthy (pid {pid})")
                return StartResult(self.name, "already running", time.monotonic() - t0, pid)
            self.say(f"pid {pid} is up but not answering yet; waiting")
            self._wait_healthy(pid, deadline)
            seconds = time.monotonic() - t0
            self.say(f"healthy after {seconds:.1f} s")
            return StartResult(self.name, "was starting", seconds, pid)
        self._drop_stale_pid_file()
        self._check_ports_free()
        self.prepare()
        pid = procs.spawn_detached(
            self.command(), self.log_path, cwd=self.home, timer_slack_ns=self.timer_slack_ns
        )
        procs.write_pid(self.pid_file, pid)
        self.say(f"starting (pid {pid}), log {self.log_path}")
        self._wait_healthy(pid, deadline)
        seconds = time.monotonic() - t0
        self.say(f"healthy after {seconds:.1f} s")
        return StartResult(self.name, "started", seconds, pid)

    def _drop_stale_pid_file(self) -> None:
        if self.pid_file.exists():
            pid = procs.read_pid(self.pid_file)
            self.say(f"removing stale pid file (pid {pid} is not running or not ours)")
            self.pid_file.unlink(missing_ok=True)

    def _check_ports_free(self) -> None:
        """Refuse to start over somebody else's server (ours were found by pid)."""
        for port in self.ports():
            if not procs.port_open(port):
                continue
            if self.probe() is not None:
                raise StartFailure(
                    self,
                    f"port {port} is taken by a running {self.title} that was not started "
                    f"from {self.settings.run_dir} (another run dir or checkout?). Stop that "
                    "one, or move this one with the CXPT_*_PORT variables.",
                    show_log=False,
                )
            raise StartFailure(
                self,
                f"port {port} is already in use by another program (see `ss -ltnp "
                f"'sport = :{port}'`); free it or move this one with the CXPT_*_PORT variables.",
                show_log=False,
            )

    def _wait_healthy(self, pid: int, deadline: float) -> None:
        while True:
            if not procs.is_alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise StartFailure(self, f"the process (pid {pid}) exited during start-up")
            if self.probe() is not None:
                return
            if time.monotonic() >= deadline:
                raise StartFailure(
                    self,
                    f"not healthy before the timeout; pid {pid} is left running: if it is only "
                    "slow, `start` again keeps waiting for it (or pass a longer --timeout)",
                )
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM, wait ``grace_s``, then SIGKILL; removes the pid file."""
        pid = procs.owned_pid(self.pid_file, self.marker)
        if pid is None:
            if self.pid_file.exists():
                self.say("removing stale pid file")
                self.pid_file.unlink(missing_ok=True)
            return
        self.say(f"stopping (pid {pid})…")
        started = time.monotonic()
        killed = procs.terminate(pid, self.grace_s)
        self.pid_file.unlink(missing_ok=True)
        how = "killed (SIGKILL) after the grace period" if killed else "stopped"
        self.say(f"{how} in {time.monotonic() - started:.1f} s")

    def status(self) -> ComponentStatus:
        """Alive, ours, and answering its probe?"""
        pid = procs.owned_pid(self.pid_file, self.marker)
        answer = self.probe() if any(procs.port_open(p) for p in self.ports()) else None
        if pid is None and answer is not None:
            detail = f"answers ({answer}) but was not started from {self.settings.run_dir}"
        elif pid is not None and answer is None:
            detail = "process running, not answering (starting, or stuck: see the log)"
        else:
            detail = answer or "stopped"
        return ComponentStatus(
            name=self.name,
            running=pid is not None,
            healthy=pid is not None and answer is not None,
            pid=pid,
            listen=self.listen,
            log_path=self.log_path,
            detail=detail,
        )

    # -- helpers shared by the JVM servers ---------------------------------

    def java(self) -> str:
        """The ``java`` to run: ``$JAVA_HOME/bin/java`` or the one on PATH."""
        if self.settings.java_home is not None:
            candidate = self.settings.java_home / "bin" / "java"
            if candidate.is_file():
                return str(candidate)
        found = shutil.which("java")
        if found is None:
            raise StartFailure(self, "no `java` on PATH and no usable JAVA_HOME; install a JDK 17")
        return found

    def classpath(self, maven_name: str) -> list[Path]:
        """The resolved jars for ``deploy/local/maven/<maven_name>/pom.xml``."""
        try:
            return resolve.maven_classpath(maven_name, self.title, self.settings, self.say)
        except resolve.ResolveError as exc:
            raise StartFailure(self, str(exc)) from exc


def render(template: str, target: Path, **values: object) -> None:
    """Fill ``templates/<template>`` (``$name`` placeholders) into ``target``."""
    text = string.Template((TEMPLATES / template).read_text()).substitute(
        {key: str(value) for key, value in values.items()}
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def _quiet_logger(name: str) -> logging.Logger:
    """A logger that swallows client-library chatter during probes."""
    logger = logging.getLogger(name)
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    logger.setLevel(logging.CRITICAL)
    return logger


# ---------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------


SASL_USER = "cxpt"


@dataclass(frozen=True)
class KafkaSasl:
    """Where and as whom a client reaches the local broker's SASL_SSL listener, and the
    CA that signed its certificate."""

    bootstrap: str
    username: str
    password: str = field(repr=False)
    ca_location: str = ""


class Kafka(ServerComponent):
    """Apache Kafka 3.9 in KRaft mode: one combined broker + controller."""

    name = "kafka"
    title = "Kafka"
    dir_name = "kafka"
    hint = (
        "A corrupt or foreign data dir: `python -m deploy.local clean "
        "--only kafka`. A port clash: set CXPT_KAFKA_PORT / CXPT_KAFKA_CONTROLLER_PORT."
    )
    grace_s = 30.0
    _classpath: list[Path]

    @property
    def listen(self) -> str:
        """The bootstrap address."""
        return f"{HOST}:{self.settings.kafka_port}"

    @property
    def log_path(self) -> Path:
        """Broker log and JVM output together."""
        return self.home / "logs" / "kafka.log"

    @property
    def sasl(self) -> KafkaSasl:
        """The SASL_SSL client listener, its one user (password made on first use, 0600) and CA."""
        path = self.home / "sasl-password"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(24))
        return KafkaSasl(
            f"{HOST}:{self.settings.kafka_sasl_port}", SASL_USER, path.read_text().strip(),
            ca_location=str(self.tls.ca_path),
        )  # fmt: skip

    @property
    def tls(self) -> ServerTls:
        """The broker's TLS key store and the CA clients trust (`deploy/local/tls.py`)."""
        return server_tls(self.home / "tls", HOST)

    def ports(self) -> list[int]:
        """Client listeners (plain and SASL over TLS) and the controller listener."""
        return [self.settings.kafka_port, self.settings.kafka_sasl_port, self.settings.kafka_controller_port]

    def prepare(self) -> None:
        """Resolve jars, write configs, and format KRaft storage on first start."""
        self._classpath = self.classpath("kafka")
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        render(
            "kafka-server.properties",
            self.home / "server.properties",
            port=self.settings.kafka_port,
            controller_port=self.settings.kafka_controller_port,
            sasl_port=self.settings.kafka_sasl_port,
            sasl_user=SASL_USER,
            sasl_password=self.sasl.password,
            tls_keystore=self.tls.keystore_path,
            data_dir=data,
        )
        render("kafka-log4j.properties", self.home / "log4j.properties")
        if not (data / "meta.properties").exists():
            self._format_storage()

    def _cluster_id(self) -> str:
        """Generated once and kept: the data dir is formatted with it."""
        path = self.home / "cluster.id"
        if path.exists():
            return path.read_text().strip()
        cluster_id = "-"
        # Same shape as Kafka's Uuid.randomUuid(): url-safe base64 of 16 random
        # bytes without padding; Kafka avoids ids that start with '-' (they
        # would look like options on a command line), so do we.
        while cluster_id.startswith("-"):
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        path.write_text(cluster_id + "\n")
        return cluster_id

    def _format_storage(self) -> None:
        cluster_id = self._cluster_id()
        self.say(f"formatting KRaft storage (cluster id {cluster_id})")
        cmd = [
            self.java(), "-Xmx256M", *self._log4j_flags(), "-cp", self._cp(),
            "kafka.tools.StorageTool", "format", "--ignore-formatted",
            "-t", cluster_id, "-c", str(self.home / "server.properties"),
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-3000:]
            raise StartFailure(self, f"`kafka-storage format` failed ({done.returncode}):\n{output}")

    def _cp(self) -> str:
        return ":".join(str(jar) for jar in self._classpath)

    def _log4j_flags(self) -> list[str]:
        return [
            f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
        ]

    def command(self) -> list[str]:
        """``java … kafka.Kafka server.properties`` with the distribution's JVM flags."""
        heap = self.settings.kafka_heap
        logs = self.home / "logs"
        return [
            self.java(), f"-Xms{heap}", f"-Xmx{heap}",
            # kafka-run-class.sh's flags, but the throughput collector instead of G1: on two cores
            # G1's refinement threads and write barriers cost ~0.45 ms of broker CPU per lone
            # order, ParallelGC's young collections of a 1 GiB heap ~0.06 (docs/performance.md).
            "-server", "-XX:+UseParallelGC",
            "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true",
            # Die rather than limp on after an OOM; crash files beside the log.
            "-XX:+ExitOnOutOfMemoryError", f"-XX:ErrorFile={logs}/hs_err_pid%p.log",
            *self._log4j_flags(),
            "-cp", self._cp(), "kafka.Kafka", str(self.home / "server.properties"),
        ]  # fmt: skip

    def probe(self) -> str | None:
        """The broker answers a metadata request (through confluent-kafka)."""
        if not procs.port_open(self.settings.kafka_port):
            return None
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(
            {"bootstrap.servers": self.listen, "socket.connection.setup.timeout.ms": 2000},
            # librdkafka prints every refused connection otherwise.
            logger=_quiet_logger("cxpt_infra.kafka_probe"),
        )
        try:
            meta = admin.list_topics(timeout=3)
        except KafkaException:
            return None
        if not meta.brokers:
            return None
        return f"cluster {meta.cluster_id}, {len(meta.brokers)} broker(s), {len(meta.topics)} topic(s)"


# ---------------------------------------------------------------------------
# Cassandra
# ---------------------------------------------------------------------------

#: From Cassandra 5.0's conf/jvm17-server.options (JPMS, G1, Netty) and
#: conf/jvm-server.options (general), minus what only suits big servers
#: (-XX:+AlwaysPreTouch would fault in the whole heap: seconds at start-up).
CASSANDRA_JVM17_FLAGS = [
    "-ea", "-da:net.openhft...",
    "-XX:+UseThreadPriorities", "-Xss256k",
    "-XX:+UseTLAB", "-XX:+ResizeTLAB", "-XX:+PerfDisableSharedMem",
    "-Djava.net.preferIPv4Stack=true",
    "-XX:+UseG1GC", "-XX:+ParallelRefProcEnabled", "-XX:MaxTenuringThreshold=1",
    "-XX:G1HeapRegionSize=16m", "-XX:G1RSetUpdatingPauseTimePercent=5",
    "-XX:MaxGCPauseMillis=300", "-XX:InitiatingHeapOccupancyPercent=70",
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports", "java.sql/java.sql=ALL-UNNAMED",
    "--add-exports", "java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports", "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens", "java.base/java.io=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens", "jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
]  # fmt: skip


def _initial_heap(max_heap: str) -> str:
    """Cassandra's ``-Xms``: 512M, or ``max_heap`` if that is smaller."""
    return max_heap if heap_bytes(max_heap) < heap_bytes("512M") else "512M"


class Cassandra(ServerComponent):
    """Apache Cassandra 5.0, one node, from the cassandra-all jars."""

    name = "cassandra"
    title = "Cassandra"
    dir_name = "cassandra"
    hint = (
        "A corrupt data dir: `python -m deploy.local clean --only "
        "cassandra`. A port clash: set CXPT_CASSANDRA_PORT / CXPT_CASSANDRA_STORAGE_PORT."
    )
    # Cassandra flushes memtables on SIGTERM; give it time before SIGKILL.
    grace_s = 45.0
    # An idle worker of Cassandra's shared request pool (SEPWorker) polls for
    # work in timed sleeps of 10 µs and more, and producers do not wake it
    # while it polls. Between requests a few hundred µs apart it never stops:
    # ~39 wake-ups per write at 500 writes/s, 850 µs of CPU per row on two
    # cores. A 500 µs slack lets the kernel batch those wake-ups: 315 µs per
    # row, for +0.35 ms on a lone request's round trip (docs/performance.md).
    timer_slack_ns = 500_000
    _classpath: list[Path]

    @property
    def listen(self) -> str:
        """The CQL native transport address."""
        return f"{HOST}:{self.settings.cassandra_port}"

    @property
    def log_path(self) -> Path:
        """Cassandra's log and JVM output together."""
        return self.home / "logs" / "system.log"

    def ports(self) -> list[int]:
        """CQL port and internode storage port."""
        return [self.settings.cassandra_port, self.settings.cassandra_storage_port]

    @property
    def tls(self) -> ServerTls:
        """The node's TLS key store and the CA clients trust (`deploy/local/tls.py`): the CQL port
        takes TLS and plain connections alike (`client_encryption_options.optional`)."""
        return server_tls(self.home / "tls", HOST)

    def prepare(self) -> None:
        """Resolve jars and write cassandra.yaml and logback.xml."""
        self._classpath = self.classpath("cassandra")
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        render(
            "cassandra.yaml",
            self.home / "conf" / "cassandra.yaml",
            data_dir=data,
            native_port=self.settings.cassandra_port,
            storage_port=self.settings.cassandra_storage_port,
            tls_keystore=self.tls.keystore_path,
            tls_ca=self.tls.ca_path,
        )
        render("cassandra-logback.xml", self.home / "conf" / "logback.xml")

    def command(self) -> list[str]:
        """``java … CassandraDaemon`` in the foreground with our config."""
        heap = self.settings.cassandra_heap
        logs = self.home / "logs"
        jamm = next((jar for jar in self._classpath if jar.name.startswith("jamm-")), None)
        # cassandra-env.sh loads jamm as an agent: it measures object sizes
        # for memtable accounting, exactly rather than by guessing.
        agent = [f"-javaagent:{jamm}"] if jamm else []
        return [
            # Cassandra mlockall()s its memory at start-up (there is no switch
            # to turn that off) and as root it succeeds: all memory committed
            # by then, the initial heap included, stays resident for good. So
            # the heap starts small and grows to the maximum only when needed.
            self.java(), f"-Xms{_initial_heap(heap)}", f"-Xmx{heap}",
            *CASSANDRA_JVM17_FLAGS, *agent,
            "-XX:+ExitOnOutOfMemoryError", f"-XX:ErrorFile={logs}/hs_err_pid%p.log",
            f"-Dcassandra.config=file://{self.home / 'conf' / 'cassandra.yaml'}",
            f"-Dlogback.configurationFile={self.home / 'conf' / 'logback.xml'}",
            f"-Dcassandra.storagedir={self.home / 'data'}",
            f"-Dcassandra.logdir={logs}",
            # Keep stdout open (the daemon closes it when not in the foreground).
            "-Dcassandra-foreground=yes",
            # 5.0 already skips the gossip-settle wait when it broadcasts on
            # loopback (CassandraDaemon.start); say so explicitly so a changed
            # listen address does not quietly add 5+ s to every start. Ring
            # delay only applies to nodes that bootstrap from others (not a
            # lone seed), and the superuser set-up delay only to password auth.
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-cp", ":".join(str(jar) for jar in self._classpath),
            "org.apache.cassandra.service.CassandraDaemon",
        ]  # fmt: skip

    def probe(self) -> str | None:
        """cassandra-driver connects and ``system.local`` answers."""
        if not procs.port_open(self.settings.cassandra_port):
            return None
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import WhiteListRoundRobinPolicy

        profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([HOST]), request_timeout=5)
        cluster = Cluster(
            [HOST],
            port=self.settings.cassandra_port,
            protocol_version=5,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=3,
            control_connection_timeout=3,
        )
        try:
            session = cluster.connect()
            row = session.execute("SELECT release_version FROM system.local").one()
            return f"Cassandra {row.release_version}"
        except Exception:  # noqa: BLE001 - the driver raises many unrelated types; all mean "not yet"
            return None
        finally:
            cluster.shutdown()


# ---------------------------------------------------------------------------
# anvil
# ---------------------------------------------------------------------------


class Anvil(ServerComponent):
    """anvil (Foundry's local EVM node) from npm, state kept in the run dir."""

    name = "chain"
    title = "anvil"
    dir_name = "anvil"
    hint = (
        "A corrupt state file: delete "
        "<run>/anvil/state.json (or `python -m deploy.local clean --only chain`). "
        "A port clash: set CXPT_ANVIL_PORT."
    )
    # anvil writes its state file on SIGTERM; that is quick.
    grace_s = 15.0
    _binary: Path

    @property
    def listen(self) -> str:
        """The JSON-RPC URL."""
        return f"http://{HOST}:{self.settings.anvil_port}"

    @property
    def log_path(self) -> Path:
        """anvil's stdout (one line per RPC method called)."""
        return self.home / "anvil.log"

    @property
    def state_file(self) -> Path:
        """Loaded at start, written on exit and every ``--state-interval`` seconds."""
        return self.home / "state.json"

    def ports(self) -> list[int]:
        """The JSON-RPC port."""
        return [self.settings.anvil_port]

    def prepare(self) -> None:
        """``npm ci`` on first use; nothing else to write."""
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            self._binary = resolve.anvil_binary(self.settings, self.say)
        except resolve.ResolveError as exc:
            raise StartFailure(self, str(exc)) from exc

    def command(self) -> list[str]:
        """``anvil --host … --port … --chain-id 31337 --state <run>/anvil/state.json``."""
        return [
            str(self._binary),
            "--host", HOST,
            "--port", str(self.settings.anvil_port),
            "--chain-id", str(CHAIN_ID),
            # --state = load at start + dump on exit; the interval also saves
            # it every 10 s so a SIGKILL loses at most 10 s of chain.
            "--state", str(self.state_file),
            "--state-interval", "10",
        ]  # fmt: skip

    def probe(self) -> str | None:
        """``eth_chainId`` answers 31337."""
        if not procs.port_open(self.settings.anvil_port):
            return None
        import httpx

        request = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        try:
            reply = httpx.post(self.listen, json=request, timeout=3).json()
            chain_id = int(reply["result"], 16)
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        if chain_id != CHAIN_ID:
            return None
        return f"chain id {chain_id}"


# ---------------------------------------------------------------------------
# ClickHouse (embedded chdb)
# ---------------------------------------------------------------------------

#: Run in a child process on an in-memory engine: chdb allows one process per
#: data path, and the launcher must never hold the real one (tests will).
_ENGINE_CHECK = """
import clickhouse_connect
client = clickhouse_connect.get_client(dsn="chdb://:memory:")
print(client.command("SELECT version()"))
"""


class ClickHouse(Component):
    """The embedded ClickHouse engine (chdb): a data directory, no server."""

    name = "clickhouse"
    title = "ClickHouse (chdb)"
    dir_name = "clickhouse"
    hint = (
        "The chdb engine did not load in a child process. Check that `chdb` and "
        "`clickhouse-connect` are installed in this venv (`pip install -e .`)."
    )

    @property
    def listen(self) -> str:
        """The DSN clients pass to ``clickhouse_connect.get_client(dsn=…)``."""
        return f"chdb://{self.home}"

    @property
    def log_path(self) -> Path | None:
        """chdb logs inside the client process; there is no launcher log."""
        return None

    @property
    def stamp(self) -> Path:
        """Written after a passing engine check; holds the chdb version checked."""
        return self.settings.cache_dir / "chdb-engine.ok"

    def ensure_started(self, t0: float, deadline: float) -> StartResult:
        """Create the data directory and check that the engine loads."""
        self.home.mkdir(parents=True, exist_ok=True)
        version = self._check_engine(max(5.0, deadline - time.monotonic()))
        self.stamp.parent.mkdir(parents=True, exist_ok=True)
        self.stamp.write_text(json.dumps({"chdb": _chdb_version(), "engine": version}) + "\n")
        seconds = time.monotonic() - t0
        self.say(f"engine {version} loads; data dir {self.home}")
        return StartResult(self.name, "ready", seconds, None)

    def _check_engine(self, timeout_s: float) -> str:
        # A scratch cwd: whatever chdb leaves behind goes with the temp dir.
        with tempfile.TemporaryDirectory(prefix="cxpt-chdb-check-") as scratch:
            try:
                done = subprocess.run(
                    [sys.executable, "-c", _ENGINE_CHECK],
                    cwd=scratch,
                    capture_output=True,
                    text=True,
                    timeout=timeout_s,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise StartFailure(self, f"engine check timed out after {timeout_s:.0f} s") from None
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-3000:]
            raise StartFailure(self, f"engine check failed ({done.returncode}):\n{output}")
        return done.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        """Nothing runs: clients open the engine in their own process."""

    def status(self) -> ComponentStatus:
        """Ready if the data dir exists and the engine check passed for this chdb."""
        ready = self.home.is_dir() and self._stamp_current()
        return ComponentStatus(
            name=self.name,
            running=False,
            healthy=ready,
            pid=None,
            listen=self.listen,
            log_path=None,
            detail="embedded engine, data dir ready" if ready else "not prepared (run start)",
        )

    def _stamp_current(self) -> bool:
        try:
            stamp = json.loads(self.stamp.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(stamp, dict) and stamp.get("chdb") == _chdb_version()


def _chdb_version() -> str:
    """The installed chdb version, without importing the (large) engine."""
    try:
        return metadata.version("chdb")
    except metadata.PackageNotFoundError:
        return "not installed"
