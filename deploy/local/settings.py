"""Where the local infrastructure lives and which ports it uses.

Everything is read once from the environment so that the launcher, the CLI and
the test harness agree on one picture:

======================== ============================ =======================
variable                 meaning                      default
======================== ============================ =======================
CXPT_RUN_DIR             run directory                ``<repo root>/.run``
CXPT_KAFKA_PORT          Kafka PLAINTEXT listener     9092
CXPT_KAFKA_CONTROLLER_PORT  KRaft controller listener 9093
CXPT_CASSANDRA_PORT      Cassandra CQL native port    9042
CXPT_CASSANDRA_STORAGE_PORT Cassandra internode port  7000
CXPT_ANVIL_PORT          anvil JSON-RPC port          8545
CXPT_KAFKA_HEAP          Kafka JVM heap (-Xms/-Xmx)   1G
CXPT_CASSANDRA_HEAP      Cassandra JVM heap           2G
CXPT_MAVEN_REPO_LOCAL    Maven local repository       Maven's own (~/.m2)
JAVA_HOME                JDK to run (else ``java``)   ``java`` on PATH
======================== ============================ =======================
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: deploy/local/ — the package directory (poms, templates, package.json).
PACKAGE_DIR = Path(__file__).resolve().parent
#: The repository root (deploy/local/ sits two levels below it).
REPO_ROOT = PACKAGE_DIR.parents[1]

#: anvil's default development chain id; the project's contracts and tests assume it.
CHAIN_ID = 31337
#: Every service listens on loopback only: nothing here is meant to be reachable.
HOST = "127.0.0.1"


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    """Read a TCP port from ``env``, with a clear error for junk values."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{name}={port} is outside 1..65535")
    return port


def _heap(env: Mapping[str, str], name: str, default: str) -> str:
    """A JVM heap size such as ``1G`` or ``1536M`` (used for both -Xms and -Xmx)."""
    raw = env.get(name, "").strip() or default
    if not re.fullmatch(r"[1-9][0-9]*[kKmMgG]?", raw):
        raise ValueError(f"{name}={raw!r} is not a JVM heap size (e.g. 1G, 1536M)")
    return raw


def heap_bytes(size: str) -> int:
    """Bytes in a JVM size string such as ``512M`` or ``2G``."""
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(size[-1].lower(), 1)
    return int(size.rstrip("kKmMgG")) * scale


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one run directory."""

    run_dir: Path
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_sasl_port: int = 9094
    cassandra_port: int = 9042
    cassandra_storage_port: int = 7000
    anvil_port: int = 8545
    kafka_heap: str = "1G"
    cassandra_heap: str = "2G"
    maven_repo_local: Path | None = None
    java_home: Path | None = None

    @property
    def cache_dir(self) -> Path:
        """Resolved classpaths and install stamps; survives ``clean``."""
        return self.run_dir / "cache"

    @classmethod
    def from_env(cls, run_dir: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default: ``os.environ``)."""
        env = os.environ if env is None else env
        if run_dir is None:
            run_dir = Path(env.get("CXPT_RUN_DIR") or REPO_ROOT / ".run")
        repo_local = env.get("CXPT_MAVEN_REPO_LOCAL")
        java_home = env.get("JAVA_HOME")
        return cls(
            # Absolute: the path is written into configs and DSNs and used to
            # recognise our own processes by their command line.
            run_dir=Path(run_dir).expanduser().resolve(),
            kafka_port=_port(env, "CXPT_KAFKA_PORT", 9092),
            kafka_controller_port=_port(env, "CXPT_KAFKA_CONTROLLER_PORT", 9093),
            kafka_sasl_port=_port(env, "CXPT_KAFKA_SASL_PORT", 9094),
            cassandra_port=_port(env, "CXPT_CASSANDRA_PORT", 9042),
            cassandra_storage_port=_port(env, "CXPT_CASSANDRA_STORAGE_PORT", 7000),
            anvil_port=_port(env, "CXPT_ANVIL_PORT", 8545),
            kafka_heap=_heap(env, "CXPT_KAFKA_HEAP", "1G"),
            cassandra_heap=_heap(env, "CXPT_CASSANDRA_HEAP", "2G"),
            maven_repo_local=Path(repo_local).expanduser().resolve() if repo_local else None,
            java_home=Path(java_home) if java_home else None,
        )
