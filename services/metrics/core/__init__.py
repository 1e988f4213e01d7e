"""Pure metrics core: rows for ClickHouse from log records, depth and latency folds, SQL guard. No I/O."""
