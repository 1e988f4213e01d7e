"""Pure helpers for the SQL the metrics service runs: the analysts' read-only guard, roll-up days.

The guard is the second lock, not the first: analysts' queries run with ClickHouse's own
`readonly = 2` (reads, and setting changes other than `readonly` itself), which the engine
enforces and a query cannot lift. The guard only turns the obvious mistakes (a write, two
statements) into a clear 400 before they reach it.

Why a `SETTINGS` clause appended to the statement rather than session settings: the embedded
engine applies per-call settings to its one session with SET and restores them after — and once
`readonly` is set, nothing can unset it, so the whole process would stay read-only. A query-level
clause lives and dies with the query, and means the same on a server's HTTP port.
"""

from __future__ import annotations

import datetime as dt
import re

SLO_TARGET_MS = 100
"""The seed's order → fill target: p95 under 100 ms (docs/analytics.md, "Latency SLO")."""

READ_ONLY_CLAUSE = (
    "\nSETTINGS readonly = 2, max_execution_time = 30, output_format_json_quote_64bit_integers = 1"
)
"""Appended to every analyst query (on its own line: a trailing `--` comment cannot swallow it);
64-bit integers quoted in JSON as a server does by default, so both answer alike."""

_ALLOWED = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)


class NotReadOnly(ValueError):
    """An analyst query that is not one read-only statement."""


def read_only_statement(sql: str) -> str:
    """`sql` as one statement without its trailing `;`, if it reads; raises NotReadOnly otherwise."""
    text = sql.strip().rstrip(";").strip()
    bare = _COMMENT.sub(" ", text).strip()
    if not bare:
        raise NotReadOnly("empty query")
    if ";" in _strip_strings(bare):
        raise NotReadOnly("one statement per request")
    if text.count("/*") != text.count("*/"):
        raise NotReadOnly("unterminated comment")
    first = bare.split(None, 1)[0].upper()
    if first not in _ALLOWED:
        raise NotReadOnly(f"{first} is not allowed: read-only queries only ({', '.join(_ALLOWED)})")
    return text


def read_only(sql: str) -> str:
    """The statement to run for an analyst's `sql`: guarded, then with the read-only clause."""
    return read_only_statement(sql) + READ_ONLY_CLAUSE


def _strip_strings(sql: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.)*'", "''", sql)


def parse_day(text: str) -> dt.date:
    """A roll-up day from YYYY-MM-DD."""
    return dt.date.fromisoformat(text)


def day_to_roll(now: dt.datetime) -> dt.date:
    """The day the 00:00 UTC job rolls up when it runs at `now`: the UTC day that just ended."""
    return now.astimezone(dt.UTC).date() - dt.timedelta(days=1)


def next_midnight(now: dt.datetime) -> dt.datetime:
    """The next 00:00 UTC strictly after `now`."""
    today = now.astimezone(dt.UTC).date()
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def month_key(day: dt.date) -> int:
    """The YYYYMM partition id of `day` (cold tables are partitioned by toYYYYMM)."""
    return day.year * 100 + day.month
