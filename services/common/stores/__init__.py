"""Store clients and their migrations: Cassandra (state projections) and ClickHouse (metrics).

Both are projections of the Kafka log; migrations only create, never drop, so a projection can be
rebuilt into a fresh keyspace or database by replaying the log.
"""
