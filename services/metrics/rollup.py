"""The warm tier: the daily roll-up of one UTC day from the cold tables.

`rollup(store, day)` runs two INSERT … SELECT statements over the cold tables (read with FINAL)
into `daily_markets` and `daily_traders`, ReplacingMergeTrees keyed by (day, market) and
(day, trader, market). Every column is a deterministic function of the cold rows of that day and
before — integer sums, argMax by log position, exact quantiles, an IV mean computed on integers,
no `now()` — so re-running a day writes rows equal to the ones it replaces, and after the merge
(or with FINAL) the table is exactly as before. The job runs at 00:00 UTC for the day that just
ended (and on demand: `python -m services.metrics rollup --day 2026-11-24`).
"""

from __future__ import annotations

import datetime as dt

from services.metrics.store import Store

_BOUNDS = """
WITH toDateTime64('{day} 00:00:00', 6, 'UTC') AS day_start,
     toDateTime64('{next} 00:00:00', 6, 'UTC') AS day_end
"""

DAILY_MARKETS = (
    "INSERT INTO {{db}}.daily_markets"
    + _BOUNDS
    + """
SELECT toDate('{day}') AS day, k.market AS market,
       ifNull(t.trades, 0), ifNull(t.volume, 0), ifNull(t.notional, 0), ifNull(t.fees, 0),
       t.open, t.high, t.low, t.close,
       ifNull(oi.oi_close, 0), ifNull(oi.oi_change, 0),
       f.rate_e9, ifNull(f.intervals, 0),
       v.iv_avg, ifNull(l.orders, 0), l.p95
FROM (SELECT market FROM {{db}}.markets FINAL WHERE ts < day_end) AS k
LEFT JOIN (
    SELECT market, count() AS trades, sum(size) AS volume, sum(notional) AS notional,
           sum(maker_fee + taker_fee) AS fees, argMin(price, (ts, trade_id)) AS open,
           max(price) AS high, min(price) AS low, argMax(price, (ts, trade_id)) AS close
    FROM {{db}}.trades FINAL WHERE ts >= day_start AND ts < day_end GROUP BY market
) AS t ON t.market = k.market
LEFT JOIN (
    SELECT market, sum(oi_delta) AS oi_close, sumIf(oi_delta, ts >= day_start) AS oi_change
    FROM {{db}}.position_changes FINAL WHERE ts < day_end GROUP BY market
) AS oi ON oi.market = k.market
LEFT JOIN (
    SELECT market, argMax(rate_e9, interval_end) AS rate_e9, count() AS intervals
    FROM {{db}}.funding_rates FINAL WHERE ts >= day_start AND ts < day_end GROUP BY market
) AS f ON f.market = k.market
LEFT JOIN (
    -- the mean on integers (σ × 1e9): the same value whatever order the engine sums in
    SELECT market, sum(toInt64(round(assumeNotNull(implied_vol) * 1e9))) / count() / 1e9 AS iv_avg
    FROM {{db}}.implied_vols FINAL
    WHERE ts >= day_start AND ts < day_end AND implied_vol IS NOT NULL GROUP BY market
) AS v ON v.market = k.market
LEFT JOIN (
    SELECT market, count() AS orders, quantileExact(0.95)(latency_us) AS p95
    FROM {{db}}.order_latency FINAL
    WHERE filled_at >= day_start AND filled_at < day_end AND immediate = 1 GROUP BY market
) AS l ON l.market = k.market
SETTINGS join_use_nulls = 1
"""
)

DAILY_TRADERS = (
    "INSERT INTO {{db}}.daily_traders"
    + _BOUNDS
    + """,
fills AS (
    SELECT side.1 AS trader, market, count() AS fills, sum(notional) AS notional, sum(side.2) AS fees
    FROM {{db}}.trades FINAL
    ARRAY JOIN [(maker_trader, maker_fee), (taker_trader, taker_fee)] AS side
    WHERE ts >= day_start AND ts < day_end GROUP BY trader, market
),
funding AS (
    SELECT trader, market, sum(amount) AS funding FROM {{db}}.funding_payments FINAL
    WHERE ts >= day_start AND ts < day_end GROUP BY trader, market
),
realized AS (
    SELECT trader, market, argMax(realized_pnl, (ts, log_offset)) AS close,
           argMaxIf(realized_pnl, (ts, log_offset), ts < day_start) AS open
    FROM (SELECT trader, market, ts, log_offset, realized_pnl FROM {{db}}.position_changes FINAL
          WHERE ts < day_end
          UNION ALL
          SELECT trader, market, ts, log_offset, realized_pnl FROM {{db}}.funding_payments FINAL
          WHERE ts < day_end)
    GROUP BY trader, market
),
pos AS (
    SELECT trader, market, argMax(size, (ts, log_offset)) AS size,
           argMax(basis, (ts, log_offset)) AS basis
    FROM {{db}}.position_changes FINAL WHERE ts < day_end GROUP BY trader, market
),
marks AS (
    SELECT market, argMax(mark_price, seq) AS mark FROM {{db}}.marks FINAL
    WHERE ts < day_end GROUP BY market
),
keys AS (
    SELECT trader, market FROM fills
    UNION DISTINCT SELECT trader, market FROM funding
    UNION DISTINCT SELECT trader, market FROM pos WHERE size != 0
    UNION DISTINCT SELECT trader, market FROM realized WHERE close != open
)
SELECT toDate('{day}') AS day, k.trader, k.market,
       ifNull(f.fills, 0), ifNull(f.notional, 0), ifNull(f.fees, 0), ifNull(fu.funding, 0),
       ifNull(r.close, 0), ifNull(r.close, 0) - ifNull(r.open, 0),
       ifNull(p.size, 0), ifNull(p.basis, 0), m.mark,
       if(ifNull(p.size, 0) = 0, toNullable(toInt64(0)),
          if(p.size > 0, p.size * m.mark * q.qptl - p.basis, p.basis + p.size * m.mark * q.qptl))
FROM keys AS k
LEFT JOIN fills AS f ON f.trader = k.trader AND f.market = k.market
LEFT JOIN funding AS fu ON fu.trader = k.trader AND fu.market = k.market
LEFT JOIN realized AS r ON r.trader = k.trader AND r.market = k.market
LEFT JOIN pos AS p ON p.trader = k.trader AND p.market = k.market
LEFT JOIN marks AS m ON m.market = k.market
LEFT JOIN (SELECT market, quote_per_tick_lot AS qptl FROM {{db}}.markets FINAL) AS q
    ON q.market = k.market
SETTINGS join_use_nulls = 1
"""
)


def rollup(store: Store, day: dt.date) -> dict[str, int]:
    """Roll up `day` (UTC) into the warm tables; returns the rows each holds for the day after."""
    values = {"day": day.isoformat(), "next": (day + dt.timedelta(days=1)).isoformat()}
    counts = {}
    for table, template in (("daily_markets", DAILY_MARKETS), ("daily_traders", DAILY_TRADERS)):
        store.command(template.format(**values))
        held = f"SELECT count() FROM {{db}}.{table} FINAL WHERE day = '{day.isoformat()}'"
        counts[table] = int(store.rows(held)[0][0])
    return counts
