"""settlement.batches → Cassandra (`settlement_batches`, `settlement_batches_by_partition`).

At least once, like every projector (`ProjectionConsumer`: write, then commit the offsets): each
status record rewrites its batch's rows `USING TIMESTAMP ts_event`, and the service makes ts_event
strictly increase along each batch's statuses, so a redelivered or re-projected record changes
nothing and a row always shows its batch's latest status. Migration 0006.
"""

from __future__ import annotations

from typing import Any

from cassandra.cluster import Session

from services.common.bus import Bus, ProjectionConsumer
from services.common.records import SettlementBatch
from services.common.topics import SETTLEMENT_BATCHES

GROUP_ID = "settlement-projector"

BY_ID_COLUMNS = (
    "batch_id", "topic_partition", "from_offset", "to_offset", "status", "traders", "deltas", "fees_delta",
    "clearing_delta", "insurance_delta", "tx_hash", "block_number", "gas_used", "detail", "updated_at",
)  # fmt: skip
BY_PARTITION_COLUMNS = (
    "topic_partition", "from_offset", "to_offset", "batch_id", "status", "traders", "tx_hash", "block_number",
    "updated_at",
)  # fmt: skip
_COLUMNS = (BY_ID_COLUMNS, BY_PARTITION_COLUMNS)


def batch_rows(record: SettlementBatch) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two rows of one status record (by id, by partition)."""
    (span,) = record.ranges
    by_id = {
        "batch_id": record.batch_id,
        "topic_partition": span.partition,
        "from_offset": span.from_offset,
        "to_offset": span.to_offset,
        "status": str(record.status),
        "traders": len(record.deltas),
        "deltas": {d.trader: d.delta for d in record.deltas},
        "fees_delta": record.fees_delta,
        "clearing_delta": record.clearing_delta,
        "insurance_delta": record.insurance_delta,
        "tx_hash": record.tx_hash,
        "block_number": record.block_number,
        "gas_used": record.gas_used,
        "detail": record.detail,
        "updated_at": record.ts_event // 1000,
    }
    return by_id, {key: by_id[key] for key in BY_PARTITION_COLUMNS}


class BatchProjection:
    """Projects settlement.batches into the two tables; `step()` does one poll, write and commit."""

    def __init__(self, bus: Bus, session: Session, keyspace: str) -> None:
        self.bus = bus
        self.session = session
        self._consumer = ProjectionConsumer(bus, group_id=GROUP_ID, inputs=[SETTLEMENT_BATCHES])
        self._statements = [
            self._insert(keyspace, "settlement_batches", BY_ID_COLUMNS),
            self._insert(keyspace, "settlement_batches_by_partition", BY_PARTITION_COLUMNS),
        ]
        self.written = 0

    def step(self, timeout_s: float = 0.0) -> int:
        """Project what is there; returns the number of records written."""
        batch = self._consumer.poll_batch(500, timeout_s)
        for inbound in batch:
            record: SettlementBatch = inbound.record
            rows = batch_rows(record)
            for statement, row, columns in zip(self._statements, rows, _COLUMNS, strict=True):
                self.session.execute(statement, [*(row[c] for c in columns), record.ts_event])
        self._consumer.commit()
        self.written += len(batch)
        return len(batch)

    def close(self) -> None:
        self._consumer.close()

    def _insert(self, keyspace: str, table: str, columns: tuple[str, ...]) -> Any:
        marks = ", ".join("?" for _ in columns)
        return self.session.prepare(
            f"INSERT INTO {keyspace}.{table} ({', '.join(columns)}) VALUES ({marks}) USING TIMESTAMP ?"
        )
