-- Cold tier: every account event, raw, partitioned by month, kept for years.
-- ReplacingMergeTree on the log position makes re-projection idempotent (query with FINAL).
CREATE TABLE IF NOT EXISTS {db}.account_events (
    event_id String,
    trader String,
    ts_event DateTime64(6, 'UTC'),
    kind LowCardinality(String),
    amount Int64,
    detail String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts_event)
ORDER BY (trader, ts_event, event_id);
