"""Start and stop the exchange's infrastructure on one host, without Docker.

Kafka 3.9 (KRaft) and Cassandra 5.0 run on the JVM from Maven Central jars,
anvil comes from npm, and ClickHouse is the embedded chdb engine. Everything
lives under one run directory (default ``<repo>/.run``)::

    python -m deploy.local start|stop|status|clean|env [--only kafka,cassandra,chain,clickhouse]

The test harness uses the same thing from Python::

    endpoints = Launcher().start()
    os.environ.update(endpoints.as_env())
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from deploy.local import procs
from deploy.local.components import (
    Anvil,
    Cassandra,
    ClickHouse,
    Component,
    ComponentStatus,
    Kafka,
    KafkaSasl,
    StartFailure,
    StartResult,
)
from deploy.local.settings import HOST, Settings

__all__ = ["ALL", "ComponentStatus", "Endpoints", "InfraError", "Launcher", "main"]

#: Every component, in the order they are reported.
ALL: tuple[str, ...] = ("kafka", "cassandra", "chain", "clickhouse")

T = TypeVar("T")


@dataclass(frozen=True)
class Endpoints:
    """Where the services' clients connect; the same contract as docker-compose."""

    kafka_bootstrap: str
    cassandra_host: str
    cassandra_port: int
    clickhouse_dsn: str
    eth_rpc_url: str
    kafka_sasl: KafkaSasl | None = None
    """The broker's SASL_SSL listener and its CA (the launcher's broker has one; other
    infrastructure: None)."""
    cassandra_ssl_ca: str | None = None
    """The CA of the CQL port's TLS certificate (the launcher's node takes TLS; other: None)."""

    def as_env(self) -> dict[str, str]:
        """The environment variables the services' settings read."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "CASSANDRA_CONTACT_POINTS": self.cassandra_host,
            "CASSANDRA_PORT": str(self.cassandra_port),
            "CLICKHOUSE_DSN": self.clickhouse_dsn,
            "ETH_RPC_URL": self.eth_rpc_url,
        }


class InfraError(RuntimeError):
    """Some components did not become healthy (details were printed)."""

    def __init__(self, failures: dict[str, str]) -> None:
        names = ", ".join(failures)
        super().__init__(f"infrastructure not healthy: {names}")
        #: component name -> what went wrong
        self.failures = failures


class Launcher:
    """Starts, stops and inspects the local infrastructure of one run directory."""

    def __init__(self, run_dir: Path | None = None, *, echo: Callable[[str], None] | None = None) -> None:
        """Use ``run_dir``, else ``$CXPT_RUN_DIR``, else ``<repo root>/.run``.

        ``echo`` receives progress lines (default: print to stdout).
        """
        self.settings = Settings.from_env(run_dir)
        self._print = echo or _print_line
        self._echo_lock = threading.Lock()
        components: list[Component] = [
            Kafka(self.settings, self._echo),
            Cassandra(self.settings, self._echo),
            Anvil(self.settings, self._echo),
            ClickHouse(self.settings, self._echo),
        ]
        self._components = {component.name: component for component in components}

    @property
    def run_dir(self) -> Path:
        """The absolute run directory."""
        return self.settings.run_dir

    @property
    def endpoints(self) -> Endpoints:
        """Where each part listens (whether or not it runs right now)."""
        return Endpoints(
            kafka_bootstrap=self._components["kafka"].listen,
            cassandra_host=HOST,
            cassandra_port=self.settings.cassandra_port,
            clickhouse_dsn=self._components["clickhouse"].listen,
            eth_rpc_url=self._components["chain"].listen,
            kafka_sasl=next(c.sasl for c in self._components.values() if isinstance(c, Kafka)),
            cassandra_ssl_ca=next(
                str(c.tls.ca_path) for c in self._components.values() if isinstance(c, Cassandra)
            ),
        )

    def start(self, components: Iterable[str] = ALL, timeout_s: float = 180) -> Endpoints:
        """Start ``components`` in parallel and wait until all are healthy.

        Idempotent: parts that already run healthy from this run directory are
        left alone. Raises :class:`InfraError` (after printing each failing
        part's log tail and a hint) if any part is not healthy in ``timeout_s``.
        """
        selected = self._select(components)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._echo(f"cxpt-infra: starting {', '.join(c.name for c in selected)} in {self.run_dir}")
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        with self._lock():
            outcomes = _in_parallel(selected, lambda c: c.ensure_started(t0, deadline))
        results = {name: out for name, out in outcomes.items() if isinstance(out, StartResult)}
        failures = {name: out for name, out in outcomes.items() if isinstance(out, BaseException)}
        self._print_started(selected, results, time.monotonic() - t0)
        if failures:
            self._print_failures(failures)
            raise InfraError({name: str(exc) for name, exc in failures.items()})
        return self.endpoints

    def stop(self, components: Iterable[str] = ALL) -> None:
        """Stop ``components``: SIGTERM, wait, SIGKILL after a grace period.

        Removes their pid files. Parts that are not running are skipped.
        """
        selected = self._select(components)
        with self._lock():
            self._stop(selected)

    def status(self) -> dict[str, ComponentStatus]:
        """Probe every component now: running, healthy, pid, address, log."""
        outcomes = _in_parallel(list(self._components.values()), lambda c: c.status())
        return {name: _as_status(self._components[name], out) for name, out in outcomes.items()}

    def clean(self, components: Iterable[str] = ALL) -> None:
        """Stop ``components`` and delete their data; the download cache stays."""
        selected = self._select(components)
        with self._lock():
            self._stop(selected)
            for component in selected:
                if component.home.exists():
                    shutil.rmtree(component.home)
                    self._echo(f"[{component.name}] deleted {component.home}")

    # -- internals ----------------------------------------------------------

    def _select(self, names: Iterable[str]) -> list[Component]:
        wanted = [names] if isinstance(names, str) else list(names)
        unknown = [name for name in wanted if name not in self._components]
        if unknown:
            raise ValueError(f"unknown component(s) {unknown}; choose from {', '.join(ALL)}")
        # Report in the canonical order whatever order was asked for.
        return [self._components[name] for name in ALL if name in wanted]

    def _lock(self) -> AbstractContextManager[None]:
        # One launcher at a time per run dir: two pytest workers starting at
        # once must not both spawn Kafka (the second waits, then finds it up).
        return procs.file_lock(self.run_dir / ".launcher.lock")

    def _stop(self, selected: Sequence[Component]) -> None:
        outcomes = _in_parallel(selected, lambda c: c.stop())
        errors = {name: out for name, out in outcomes.items() if isinstance(out, BaseException)}
        for name, exc in errors.items():
            self._echo(f"[{name}] could not stop: {exc}")
        if errors:
            raise InfraError({name: str(exc) for name, exc in errors.items()})

    def _echo(self, line: str) -> None:
        # Components report from worker threads: keep lines whole.
        with self._echo_lock:
            self._print(line)

    def _print_started(
        self, selected: Sequence[Component], results: dict[str, StartResult], total_s: float
    ) -> None:
        rows = [("component", "state", "ready in", "listens on", "log")]
        for component in selected:
            result = results.get(component.name)
            rows.append(
                (
                    component.name,
                    result.outcome if result else "FAILED",
                    f"{result.seconds:.1f} s" if result else "-",
                    component.listen,
                    str(component.log_path or "-"),
                )
            )
        self._echo(f"cxpt-infra: done in {total_s:.1f} s")
        for line in _table(rows):
            self._echo("  " + line)

    def _print_failures(self, failures: dict[str, BaseException]) -> None:
        for name, exc in failures.items():
            component = self._components[name]
            message = exc.message if isinstance(exc, StartFailure) else repr(exc)
            self._echo(f"\n✗ {component.title} ({name}) failed: {message}")
            if component.log_path is not None and getattr(exc, "show_log", True):
                self._echo(f"--- last 30 lines of {component.log_path} ---")
                self._echo(procs.tail(component.log_path, 30))
                self._echo("---")
            self._echo(f"hint: {component.hint}")


def _in_parallel(
    components: Sequence[Component], action: Callable[[Component], T]
) -> dict[str, T | BaseException]:
    """Run ``action`` on every component concurrently; collect results or errors."""
    if not components:
        return {}
    with ThreadPoolExecutor(max_workers=len(components), thread_name_prefix="cxpt-infra") as pool:
        futures = {c.name: pool.submit(action, c) for c in components}
    outcomes: dict[str, T | BaseException] = {}
    for name, future in futures.items():
        exc = future.exception()
        outcomes[name] = exc if exc is not None else future.result()
    return outcomes


def _as_status(component: Component, outcome: ComponentStatus | BaseException) -> ComponentStatus:
    """A status even when probing raised (then: unhealthy, with the error)."""
    if isinstance(outcome, ComponentStatus):
        return outcome
    return ComponentStatus(
        name=component.name,
        running=False,
        healthy=False,
        pid=None,
        listen=component.listen,
        log_path=component.log_path,
        detail=f"status check failed: {outcome!r}",
    )


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _print_line(line: str) -> None:
    print(line, flush=True)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local",
        description="Local Kafka, Cassandra, anvil and embedded ClickHouse, without Docker.",
    )
    parser.add_argument(
        "command",
        choices=["start", "stop", "status", "clean", "env"],
        help="start (idempotent), stop, status, clean (stop + delete data, keep the "
        "download cache), env (print export lines for the services' variables)",
    )
    parser.add_argument(
        "--only",
        default=",".join(ALL),
        help=f"comma-separated subset of {','.join(ALL)} (default: all)",
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="start timeout in seconds")
    parser.add_argument("--run-dir", type=Path, default=None, help="default: $CXPT_RUN_DIR or <repo>/.run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m deploy.local`` and ``cxpt-infra``; returns the exit code."""
    args = _parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    try:
        launcher = Launcher(args.run_dir)
        return _run(launcher, args.command, only, args.timeout)
    except InfraError:
        return 1  # the details have been printed already
    except ValueError as exc:
        print(f"cxpt-infra: {exc}", file=sys.stderr)
        return 2


def _run(launcher: Launcher, command: str, only: list[str], timeout_s: float) -> int:
    if command == "start":
        endpoints = launcher.start(only, timeout_s)
        print('environment for the services (or: eval "$(python -m deploy.local env)"):')
        for key, value in endpoints.as_env().items():
            print(f"  {key}={value}")
        return 0
    if command == "stop":
        launcher.stop(only)
        return 0
    if command == "clean":
        launcher.clean(only)
        return 0
    if command == "env":
        for key, value in launcher.endpoints.as_env().items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    return _print_status(launcher, only)


def _print_status(launcher: Launcher, only: list[str]) -> int:
    statuses = launcher.status()
    rows = [("component", "state", "pid", "listens on", "detail", "log")]
    for name in ALL:
        if name not in only:
            continue
        status = statuses[name]
        state = "healthy" if status.healthy else ("running" if status.running else "down")
        rows.append(
            (
                name,
                state,
                str(status.pid or "-"),
                status.listen,
                status.detail,
                str(status.log_path or "-"),
            )
        )
    print(f"run dir: {launcher.run_dir}")
    for line in _table(rows):
        print("  " + line)
    return 0 if all(statuses[name].healthy for name in ALL if name in only) else 1
