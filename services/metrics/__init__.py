"""Metrics: the log → ClickHouse hot / warm / cold tiers, dashboards and read-only SQL (docs/analytics.md)."""
