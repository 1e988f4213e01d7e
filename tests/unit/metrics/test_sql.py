"""The read-only guard, roll-up days, and docs/analytics.md against the code."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from services.common.settings import REPO_ROOT
from services.metrics.core.sql import NotReadOnly, day_to_roll, next_midnight, read_only_statement
from services.metrics.queries import EXAMPLES

DOC = (REPO_ROOT / "docs" / "analytics.md").read_text()
MIGRATIONS = REPO_ROOT / "services" / "common" / "stores" / "migrations" / "clickhouse"


@pytest.mark.parametrize(
    "sql", ["SELECT 1", "  with x AS (SELECT 1) SELECT * FROM x;", "-- hi\nSHOW TABLES", "SELECT ';'"]
)
def test_reads_pass(sql: str) -> None:
    assert read_only_statement(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "DROP TABLE cxpt.trades",
        "SELECT 1; DROP TABLE t",
        "",
        "/* x */ ALTER TABLE t",
    ],
)
def test_writes_and_stacked_statements_are_refused(sql: str) -> None:
    with pytest.raises(NotReadOnly):
        read_only_statement(sql)


def test_the_midnight_job_rolls_up_the_day_that_ended() -> None:
    at = dt.datetime(2026, 11, 25, 0, 0, 1, tzinfo=dt.UTC)
    assert day_to_roll(at) == dt.date(2026, 11, 24)
    assert next_midnight(dt.datetime(2026, 11, 24, 23, 59, tzinfo=dt.UTC)) == at.replace(second=0)
    assert next_midnight(at.replace(second=0)) == dt.datetime(2026, 11, 26, tzinfo=dt.UTC)


def test_the_docs_print_every_example_and_name_every_table() -> None:
    for example in EXAMPLES:
        assert example.question in DOC
        assert example.sql.format(db="cxpt") in DOC, example.question
    tables = set()
    for path in MIGRATIONS.glob("*.sql"):
        tables |= set(re.findall(r"CREATE TABLE IF NOT EXISTS \{db\}\.(\w+)", path.read_text()))
    missing = [t for t in sorted(tables) if f"`{t}`" not in DOC]
    assert not missing, f"docs/analytics.md does not describe {missing}"
