"""Every Kafka topic of the exchange, declared in one place.

The pipeline (exchange-core calls it R1 → ME → R2):

    gateway ──orders.commands (by trader)──▶ risk ──matcher.commands (by market)──▶ matcher
    matcher ──trade.log (by market)──▶ projectors, ws-push, settlement, funding, replay
    matcher ──risk.postings (by trader)──▶ risk (post-trade: fills, fees, releases)
    chain watcher / dev credit ──accounts.events (by trader)──▶ risk, projectors
    matcher ──matcher.snapshots (by input partition, compacted)──▶ matcher on restart
    risk ──risk.changelog (by trader, compacted)──▶ risk on restart
    oracle ──oracle.prices (by index)──▶ funding/expiry, projectors, metrics
    funding/expiry ──matcher.commands (mark, funding, settlement)──▶ matcher
    funding/expiry ──options.iv (by market)──▶ metrics
    settlement ──settlement.batches──▶ operators, projectors; Vault on-chain
    chain watcher ──accounts.events (deposits, withdrawals paid)──▶ risk
    any consumer ──dead.letters (by source topic)──▶ operators

`orders.commands` and `risk.postings` are co-partitioned (same key, same partition count), so the
risk instance that owns a trader's commands also owns that trader's postings.

`docs/topics.md` is generated from this table (`python -m services.common.topics`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

log = logging.getLogger(__name__)

FOREVER = -1
DAY_MS = 24 * 3600 * 1000

TRADER_PARTITIONS = 8
MARKET_PARTITIONS = 8


@dataclass(frozen=True)
class TopicSpec:
    """A topic: its name, what keys it, what its values are, and how long it keeps them."""

    name: str
    partitions: int
    key: str
    value_schema: str
    retention_ms: int
    doc: str
    cleanup_policy: str = "delete"

    def configs(self) -> dict[str, str]:
        configs = {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            # The broker must never drop a committed record because a follower was behind.
            "unclean.leader.election.enable": "false",
        }
        if self.cleanup_policy == "compact":
            # Keep only the latest snapshot per key soon, so recovery reads little.
            configs |= {"segment.ms": str(3600 * 1000), "min.cleanable.dirty.ratio": "0.1"}
        return configs


ORDERS_COMMANDS = TopicSpec(
    "orders.commands",
    TRADER_PARTITIONS,
    "trader address",
    "TraderCommand",
    7 * DAY_MS,
    "Signed, verified trader commands from the gateway, for pre-trade risk.",
)
MATCHER_COMMANDS = TopicSpec(
    "matcher.commands",
    MARKET_PARTITIONS,
    "market symbol",
    "MatcherCommand",
    7 * DAY_MS,
    "Commands for the books: orders that passed risk, and admin market commands.",
)
TRADE_LOG = TopicSpec(
    "trade.log",
    MARKET_PARTITIONS,
    "market symbol",
    "TradeLogEntry",
    FOREVER,
    "Source of truth: one entry per command, every order event and trade it caused, kept forever.",
)
RISK_POSTINGS = TopicSpec(
    "risk.postings",
    TRADER_PARTITIONS,
    "market symbol; partition chosen: that of a trader in the entry",
    "TradeLogEntry",
    7 * DAY_MS,
    "Trade-log entries, on every risk partition owning one of their traders (all, for market events).",
)
ACCOUNTS_EVENTS = TopicSpec(
    "accounts.events",
    TRADER_PARTITIONS,
    "trader address",
    "AccountEvent",
    FOREVER,
    "Deposits, withdrawals and risk rejections per trader, kept forever.",
)
MATCHER_SNAPSHOTS = TopicSpec(
    "matcher.snapshots",
    1,
    "matcher.commands partition",
    "EngineSnapshot",
    FOREVER,
    "Book snapshots with the input offset they cover; latest per partition kept (compacted).",
    cleanup_policy="compact",
)
FUNDING_SNAPSHOTS = TopicSpec(
    "funding.snapshots",
    1,
    "funding",
    "FundingSnapshot",
    FOREVER,
    "The funding/expiry scheduler's state with the input positions it covers; latest kept (compacted).",
    cleanup_policy="compact",
)
RISK_CHANGELOG = TopicSpec(
    "risk.changelog",
    TRADER_PARTITIONS,
    "trader address, or ~partition:<p>",
    "RiskStateRecord",
    FOREVER,
    "Risk state per trader and per partition after each transaction; partition p restores input p.",
    cleanup_policy="compact",
)
ORACLE_PRICES = TopicSpec(
    "oracle.prices",
    1,
    "index symbol",
    "IndexPrice",
    FOREVER,
    "Oracle rounds: every source's quote and verdict, the index (median) and its TWAPs; kept forever.",
)
OPTIONS_IV = TopicSpec(
    "options.iv",
    MARKET_PARTITIONS,
    "option market symbol",
    "ImpliedVolatility",
    FOREVER,
    "Implied volatility of every option trade, for metrics; (market, trade_id) identifies one.",
)
SETTLEMENT_BATCHES = TopicSpec(
    "settlement.batches",
    1,
    "batch id",
    "SettlementBatch",
    FOREVER,
    "Net settlement batches and their status (built, submitted, confirmed, failed); kept forever.",
)
DEAD_LETTERS = TopicSpec(
    "dead.letters",
    1,
    "source topic",
    "DeadLetter",
    30 * DAY_MS,
    "Records a consumer could not process, with the reason; inspected by operators.",
)

TOPICS: tuple[TopicSpec, ...] = (
    ORDERS_COMMANDS,
    MATCHER_COMMANDS,
    TRADE_LOG,
    RISK_POSTINGS,
    ACCOUNTS_EVENTS,
    MATCHER_SNAPSHOTS,
    FUNDING_SNAPSHOTS,
    RISK_CHANGELOG,
    ORACLE_PRICES,
    OPTIONS_IV,
    SETTLEMENT_BATCHES,
    DEAD_LETTERS,
)


def prefixed(spec: TopicSpec, prefix: str) -> TopicSpec:
    """The same topic under a name prefix (tests and side-by-side environments)."""
    return replace(spec, name=f"{prefix}{spec.name}") if prefix else spec


def ensure_topics(
    client_config: dict[str, Any],
    specs: Iterable[TopicSpec],
    *,
    replication_factor: int = 1,
    timeout_s: float = 30,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Safe to run twice.

    An existing topic with fewer partitions than declared is reported, not changed: adding
    partitions moves keys between partitions, which breaks per-key order — an operator decision.
    """
    admin = AdminClient(client_config)  # `Bus.client_config()`: the brokers, and TLS / SASL if set
    existing = admin.list_topics(timeout=timeout_s).topics
    wanted = list(specs)
    for spec in wanted:
        have = existing.get(spec.name)
        if have is not None and len(have.partitions) != spec.partitions:
            log.warning(
                "topic %s has %d partitions, declared %d; not changed",
                spec.name,
                len(have.partitions),
                spec.partitions,
            )
    missing = [s for s in wanted if s.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(s.name, s.partitions, replication_factor, config=s.configs()) for s in missing],
        operation_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except Exception as exc:  # a racing creator is fine, anything else is not
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    _wait_for_leaders(admin, created, timeout_s)
    return created


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """Return once every partition of `names` has a leader: a created topic is not usable before."""
    deadline = time.monotonic() + timeout_s
    pending = set(names)
    while pending:
        topics = admin.list_topics(timeout=timeout_s).topics
        pending = {
            n for n in pending
            if n not in topics or topics[n].error is not None
            or any(p.leader < 0 for p in topics[n].partitions.values())
        }  # fmt: skip
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"topics without partition leaders after {timeout_s} s: {sorted(pending)}")
        if pending:
            time.sleep(0.1)


def markdown_table(specs: Iterable[TopicSpec] = TOPICS) -> str:
    """The topic table as Markdown, for docs/topics.md."""
    rows = [
        "| topic | partitions | key | value schema | retention | what it carries |",
        "|---|---|---|---|---|---|",
    ]
    for s in specs:
        keep = "forever" if s.retention_ms == FOREVER else f"{s.retention_ms // DAY_MS} d"
        if s.cleanup_policy == "compact":
            keep += ", compacted"
        rows.append(f"| `{s.name}` | {s.partitions} | {s.key} | `{s.value_schema}` | {keep} | {s.doc} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
