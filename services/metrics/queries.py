"""SQL of the dashboards (hot tier only) and the analysts' ten example questions.

Templates use `{db}` for the metrics database. The examples are printed in docs/analytics.md
with `{db}` = `cxpt`, and a test runs every one of them through `POST /sql`, so the documented
SQL stays correct.
"""

from __future__ import annotations

from dataclasses import dataclass

HOT_WINDOW = "bucket >= now() - INTERVAL 24 HOUR"

VOLUME_24H = f"""
SELECT market, sum(trades) AS trades, sum(volume) AS volume_lots, sum(notional) AS notional,
       sum(fees) AS fees, max(high) AS high, min(low) AS low
FROM {{db}}.trades_1m WHERE {HOT_WINDOW} GROUP BY market ORDER BY market
"""

OPEN_INTEREST = f"""
SELECT o.market AS market, o.open_interest AS open_interest, ifNull(c.change_24h, 0) AS change_24h
FROM (SELECT market, sum(open_interest) AS open_interest FROM {{db}}.open_interest GROUP BY market) AS o
LEFT JOIN (SELECT market, sum(oi_delta) AS change_24h FROM {{db}}.open_interest_1m
           WHERE {HOT_WINDOW} GROUP BY market) AS c USING market
ORDER BY market
"""

DEPTH = """
SELECT market, max(last_seq) AS seq, argMaxMerge(depth) AS d
FROM {db}.depth_1m WHERE bucket >= now() - INTERVAL 48 HOUR GROUP BY market ORDER BY market
"""

FUNDING = """
SELECT f.market AS market, f.rate_e9 AS rate_e9, f.interval_end AS interval_end,
       m.mark_price AS mark_price, m.index_price AS index_price
FROM (SELECT market, argMaxMerge(rate_e9) AS rate_e9, max(last_interval_end) AS interval_end
      FROM {db}.funding_1m GROUP BY market) AS f
FULL OUTER JOIN (SELECT market, argMaxMerge(mark_price) AS mark_price,
                        argMaxMerge(index_price) AS index_price
                 FROM {db}.marks_1m GROUP BY market) AS m USING market
ORDER BY market
SETTINGS join_use_nulls = 1
"""

IV = f"""
SELECT market, sum(trades) AS trades, avgMerge(iv_avg) AS iv_avg_24h, argMaxMerge(iv_last) AS iv_last
FROM {{db}}.iv_1m WHERE {HOT_WINDOW} GROUP BY market ORDER BY market
"""

FEES = f"""
SELECT market, sum(fees) AS fees, sum(notional) AS notional
FROM {{db}}.trades_1m WHERE {HOT_WINDOW} GROUP BY market ORDER BY market
"""

LATENCY_SLO = """
SELECT sum(orders) AS orders, quantilesMerge(0.5, 0.95, 0.99)(latency) AS q, max(worst_us) AS worst_us
FROM {db}.latency_1m WHERE immediate = 1 AND bucket >= now() - INTERVAL {hours} HOUR
"""

CANDLES = """
SELECT bucket, sum(trades) AS trades, sum(volume) AS volume_lots, sum(notional) AS notional,
       argMinMerge(open) AS open, max(high) AS high, min(low) AS low, argMaxMerge(close) AS close
FROM {db}.{table} WHERE market = {market} AND bucket >= now() - INTERVAL {minutes} MINUTE
GROUP BY bucket ORDER BY bucket
"""


@dataclass(frozen=True)
class Example:
    """One analyst question and the SQL that answers it."""

    question: str
    sql: str


EXAMPLES: tuple[Example, ...] = (
    Example(
        "What traded in the last 24 hours, per market (hot tier)?",
        "SELECT market, sum(trades) AS trades, sum(notional) / 1e6 AS volume_usdc\n"
        "FROM {db}.trades_1m\n"
        "WHERE bucket >= now() - INTERVAL 24 HOUR\n"
        "GROUP BY market ORDER BY volume_usdc DESC",
    ),
    Example(
        "One-minute candles of BTC-PERP over the last hour?",
        "SELECT bucket, argMinMerge(open) AS open, max(high) AS high, min(low) AS low,\n"
        "       argMaxMerge(close) AS close, sum(volume) AS lots\n"
        "FROM {db}.trades_1m\n"
        "WHERE market = 'BTC-PERP' AND bucket >= now() - INTERVAL 1 HOUR\n"
        "GROUP BY bucket ORDER BY bucket",
    ),
    Example(
        "Open interest now and its change over 24 hours?",
        "SELECT market, sum(open_interest) AS open_interest,\n"
        "       (SELECT sum(oi_delta) FROM {db}.open_interest_1m AS h\n"
        "        WHERE h.market = o.market AND h.bucket >= now() - INTERVAL 24 HOUR) AS change_24h\n"
        "FROM {db}.open_interest AS o GROUP BY market ORDER BY market",
    ),
    Example(
        "Order → fill latency p95 over the last hour against the 100 ms SLO?",
        "SELECT sum(orders) AS orders,\n"
        "       quantilesMerge(0.5, 0.95, 0.99)(latency)[2] / 1000 AS p95_ms,\n"
        "       p95_ms < 100 AS slo_met\n"
        "FROM {db}.latency_1m\n"
        "WHERE immediate = 1 AND bucket >= now() - INTERVAL 1 HOUR",
    ),
    Example(
        "Protocol fees per day over the last 30 days (warm tier)?",
        "SELECT day, sum(fees) / 1e6 AS fees_usdc\n"
        "FROM {db}.daily_markets FINAL\n"
        "WHERE day >= today() - 30\n"
        "GROUP BY day ORDER BY day",
    ),
    Example(
        "The ten traders with the most realised PnL on the last rolled-up day?",
        "SELECT trader, sum(realized_pnl_day) / 1e6 AS realized_usdc,\n"
        "       sum(unrealized_pnl) / 1e6 AS unrealized_usdc\n"
        "FROM {db}.daily_traders FINAL\n"
        "WHERE day = (SELECT max(day) FROM {db}.daily_traders)\n"
        "GROUP BY trader ORDER BY realized_usdc DESC LIMIT 10",
    ),
    Example(
        "Each trader's unrealised PnL now, at the latest mark (cold tier)?",
        "WITH pos AS (\n"
        "  SELECT trader, market, argMax(size, (ts, log_offset)) AS size,\n"
        "         argMax(basis, (ts, log_offset)) AS basis\n"
        "  FROM {db}.position_changes FINAL GROUP BY trader, market),\n"
        "mark AS (SELECT market, argMax(mark_price, seq) AS mark FROM {db}.marks FINAL GROUP BY market)\n"
        "SELECT trader, market, size,\n"
        "       if(size > 0, size * mark * qptl - basis, basis + size * mark * qptl) AS unrealized_pnl\n"
        "FROM pos\n"
        "JOIN mark USING market\n"
        "JOIN (SELECT market, quote_per_tick_lot AS qptl FROM {db}.markets FINAL) AS m USING market\n"
        "WHERE size != 0 ORDER BY trader, market",
    ),
    Example(
        "Depth within 1 bp and 5 bp of the mid, latest per market?",
        "SELECT market, max(last_seq) AS seq, argMaxMerge(depth) AS mid_bid1_ask1_bid5_ask5\n"
        "FROM {db}.depth_1m GROUP BY market ORDER BY market",
    ),
    Example(
        "Funding rates applied in the last 7 days (cold tier)?",
        "SELECT market, interval_end, rate_e9 / 1e9 AS rate, index_price\n"
        "FROM {db}.funding_rates FINAL\n"
        "WHERE ts >= now() - INTERVAL 7 DAY\n"
        "ORDER BY market, interval_end",
    ),
    Example(
        "Implied volatility per option market over the last 24 hours, with failures?",
        "SELECT market, count() AS trades, avg(implied_vol) AS iv_avg,\n"
        "       countIf(implied_vol IS NULL) AS unpriced\n"
        "FROM {db}.implied_vols FINAL\n"
        "WHERE ts >= now() - INTERVAL 24 HOUR\n"
        "GROUP BY market ORDER BY market",
    ),
)
