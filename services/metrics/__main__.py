"""`python -m services.metrics [run | rollup --day D | export --before D --dir DIR | sql "SELECT …"]`.

`run` (the default) is the service: the log → ClickHouse, the 00:00 UTC roll-up, and the HTTP API
on METRICS_HOST:METRICS_PORT. With the embedded engine it must be the only process on the data
path, so `rollup` and `export` cannot open a `chdb://` path the running service holds: run them
with the service stopped, or against a server DSN. `sql` never opens the
data path: it asks the running service (METRICS_URL), or, with an `http(s)://` CLICKHOUSE_DSN,
the server itself — the same SQL, the same read-only settings.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

import httpx
import uvicorn

from services.common.bus import Bus
from services.common.logs import configure_logging
from services.common.observability import InstrumentedApp
from services.common.settings import Settings, get_settings
from services.common.stores import clickhouse
from services.metrics.app import create_app
from services.metrics.core.sql import NotReadOnly, parse_day, read_only, read_only_statement
from services.metrics.lake import export
from services.metrics.rollup import rollup
from services.metrics.service import MetricsProjector, RollupScheduler
from services.metrics.store import Store


def serve(settings: Settings) -> None:
    """The service: consumer and roll-up in threads, the HTTP API in the main thread."""
    store = Store.open(settings.clickhouse_dsn, settings.clickhouse_database)
    stop = threading.Event()
    projector = MetricsProjector(Bus(settings), store)
    workers = [
        threading.Thread(target=projector.run, args=(stop,), name="metrics-projector", daemon=True),
        threading.Thread(target=RollupScheduler(store).run, args=(stop,), name="metrics-rollup", daemon=True),
    ]
    for worker in workers:
        worker.start()
    server = uvicorn.Server(
        uvicorn.Config(
            # /metrics (Prometheus) and /ready next to the API, and the API's latency per route.
            InstrumentedApp(create_app(store), service="metrics", ops_routes=True),
            host=settings.metrics_host,
            port=settings.metrics_port,
            log_config=None,
        )
    )
    try:
        server.run()  # returns on SIGINT / SIGTERM (uvicorn installs the handlers)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)


def run_sql(settings: Settings, query: str, fmt: str) -> str:
    """The analysts' one path: the metrics service's POST /sql, or a server DSN directly."""
    if settings.clickhouse_dsn.startswith(("http://", "https://")):
        client = clickhouse.connect(settings.clickhouse_dsn)
        out = client.raw_query(read_only(query), fmt="JSON" if fmt == "JSON" else "TSVWithNames")
        return bytes(out).decode()
    statement = read_only_statement(query)  # the service appends the read-only clause itself
    response = httpx.post(
        f"{settings.metrics_url}/sql", params={"format": fmt}, content=statement.encode(), timeout=60
    )
    if response.status_code != 200:
        raise SystemExit(f"error {response.status_code}: {response.json().get('detail', response.text)}")
    return response.text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.metrics")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="the service (default)")
    roll = commands.add_parser("rollup", help="roll up one UTC day into the warm tables")
    roll.add_argument("--day", required=True, type=parse_day, help="YYYY-MM-DD")
    lake = commands.add_parser("export", help="closed monthly partitions of the cold tables → Parquet")
    lake.add_argument("--before", required=True, type=parse_day, help="months before this date's month")
    lake.add_argument("--dir", required=True, type=Path, help="the lake directory")
    sql = commands.add_parser("sql", help="one read-only query (through the service, or a server DSN)")
    sql.add_argument("query")
    sql.add_argument("--format", default="TSV", choices=["TSV", "JSON"])
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings, service="metrics")
    if args.command == "rollup":
        print(rollup(Store.open(settings.clickhouse_dsn, settings.clickhouse_database), args.day))
    elif args.command == "export":
        store = Store.open(settings.clickhouse_dsn, settings.clickhouse_database)
        for path in export(store, args.before, args.dir):
            print(path)
    elif args.command == "sql":
        logging.getLogger("httpx").setLevel(logging.WARNING)  # the answer only, on stdout
        try:
            sys.stdout.write(run_sql(settings, args.query, args.format))
        except NotReadOnly as exc:
            raise SystemExit(f"refused: {exc}") from exc
    else:
        serve(settings)


if __name__ == "__main__":
    main()
