"""Reading the logs and the stores back after a soak, and judging them (`invariants` holds the rules).

Reads only what an operator could: the topics from offset 0 (read_committed), the live Cassandra
keyspace against one rebuilt from the log by the replay tool, the live ClickHouse database
against one rebuilt the same way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Mapping

from services.common.bus import Bus
from services.common.records import AccountEvent, DeadLetter, TradeLogEntry
from services.common.settings import Settings, get_settings
from services.common.stores import cassandra
from services.common.topics import ACCOUNTS_EVENTS, DEAD_LETTERS, TRADE_LOG
from services.devtools.soak.invariants import Check, LogFacts, Poison, dead_letter_check, order_checks
from services.replay import rebuild

REBUILT_SUFFIX = "_rebuilt"
METRICS = "metrics equal the log"


def log_checks(
    settings: Settings,
    acknowledged: dict[str, int | None],
    refused: Iterable[str],
    sent: Iterable[str],
    poison: Iterable[Poison],
) -> tuple[list[Check], LogFacts]:
    """The order, fill and dead-letter invariants over the topics as they are now."""
    bus = Bus(settings)
    entries: list[TradeLogEntry] = [m.record for m in rebuild.records(bus, TRADE_LOG)]
    accounts: list[AccountEvent] = [m.record for m in rebuild.records(bus, ACCOUNTS_EVENTS)]
    letters: list[DeadLetter] = [m.record for m in rebuild.records(bus, DEAD_LETTERS)]
    facts = LogFacts.of(entries, accounts)
    checks = order_checks(acknowledged, set(refused), set(sent), facts)
    return [*checks, dead_letter_check(poison, letters)], facts


def read_model_check(settings: Settings) -> Check:
    """The live read model and account history equal those rebuilt from offset 0, cell for cell."""
    live = settings.cassandra_keyspace
    rebuilt = live + REBUILT_SUFFIX
    session = cassandra.connect(settings)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {rebuilt}", timeout=60)
        rebuild.rebuild_cassandra(settings, rebuilt, session=session)
        diffs = rebuild.compare_cassandra(session, live, rebuilt)
    finally:
        session.cluster.shutdown()
    different = [d for d in diffs if not d.identical]
    if not different:
        rows = sum(d.live_rows for d in diffs)
        return Check("read model equals its rebuild", True, f"{len(diffs)} tables, {rows} rows identical")
    detail = "; ".join(d.describe().replace("\n", " ")[:300] for d in different[:2])
    return Check("read model equals its rebuild", False, f"{len(different)} tables differ: {detail}")


def metrics_check(env: Mapping[str, str]) -> Check:
    """ClickHouse's trades, volumes and fees equal those rebuilt from trade.log. The embedded engine
    (chdb) opens one data path per process, and this one may hold another: the check runs in a
    process of its own on the soak's environment `env` (the metrics service must be stopped)."""
    done = subprocess.run(
        [sys.executable, "-m", "services.devtools.soak.checker"], env=dict(env), capture_output=True,
        text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return Check(METRICS, False, f"the check itself failed: {done.stderr.strip()[-300:]}")
    verdict = json.loads(done.stdout.strip().splitlines()[-1])
    return Check(METRICS, verdict["ok"], verdict["detail"])


def _metrics_here(settings: Settings) -> Check:
    database = settings.clickhouse_database + REBUILT_SUFFIX
    differences = rebuild.rebuild_clickhouse(settings, database, settings.clickhouse_database)
    if not differences:
        return Check(METRICS, True, "every table identical to its rebuild")
    return Check(METRICS, False, "; ".join(differences[:3]))


if __name__ == "__main__":
    check = _metrics_here(get_settings())
    print(json.dumps({"ok": check.ok, "detail": check.detail}))
