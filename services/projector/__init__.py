"""projector: materialises the log into Cassandra (state) and ClickHouse (metrics)."""
