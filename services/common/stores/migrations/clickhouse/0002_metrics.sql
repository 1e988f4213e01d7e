-- Metrics in three tiers (docs/analytics.md). Written by one process only: `python -m services.metrics`.
--
-- Idempotence: every cold table is a ReplacingMergeTree keyed by the event's identity, and carries
-- (log_partition, log_offset), the Kafka position it came from. On start the metrics service reads
-- max(log_offset) per partition of each table and inserts only rows past it, so a replay after a
-- crash never inserts a row twice and the materialized views (which sum what they see) never see a
-- duplicate. FINAL (or the merge) removes any duplicate that got in some other way.

-- ---- cold: raw, partitioned by month, kept for years -------------------------------------------
ALTER TABLE {db}.account_events ADD COLUMN IF NOT EXISTS log_partition UInt16 DEFAULT 0;
ALTER TABLE {db}.account_events ADD COLUMN IF NOT EXISTS log_offset UInt64 DEFAULT 0;

CREATE TABLE IF NOT EXISTS {db}.trades (
    market LowCardinality(String),
    trade_id UInt64,
    ts DateTime64(6, 'UTC'),
    price Int64,
    size Int64,
    notional Int64,
    maker_fee Int64,
    taker_fee Int64,
    aggressor_side LowCardinality(String),
    maker_trader String,
    taker_trader String,
    maker_order_id String,
    taker_order_id String,
    event_id String,
    log_partition UInt16,
    log_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (market, trade_id);

CREATE TABLE IF NOT EXISTS {db}.position_changes (
    trader String,
    market LowCardinality(String),
    ts DateTime64(6, 'UTC'),
    event_id String,
    order_id String,
    trade_id UInt64,
    size Int64,
    delta_size Int64,
    basis Int64,
    collateral Int64,
    realized_pnl Int64,
    last_px Int64,
    oi_delta Int64,
    log_partition UInt16,
    log_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (market, trader, ts, event_id);

CREATE TABLE IF NOT EXISTS {db}.funding_payments (
    trader String,
    market LowCardinality(String),
    ts DateTime64(6, 'UTC'),
    event_id String,
    interval_end DateTime64(6, 'UTC'),
    size Int64,
    rate_e9 Int64,
    index_price Int64,
    amount Int64,
    realized_pnl Int64,
    log_partition UInt16,
    log_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (market, trader, ts, event_id);

CREATE TABLE IF NOT EXISTS {db}.order_latency (
    market LowCardinality(String),
    order_id String,
    trader String,
    accepted_at DateTime64(6, 'UTC'),
    filled_at DateTime64(6, 'UTC'),
    latency_us Int64,
    immediate UInt8,
    log_partition UInt16,
    log_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(accepted_at)
ORDER BY (market, order_id);

CREATE TABLE IF NOT EXISTS {db}.marks (
    market LowCardinality(String),
    ts DateTime64(6, 'UTC'),
    seq UInt64,
    mark_price Int64,
    index_price Int64,
    log_partition UInt16,
    log_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (market, seq);

CREATE TABLE IF NOT EXISTS {db}.funding_rates (
    market LowCardinality(String),
    ts DateTime64(6, 'UTC'),
    interval_start DateTime64(6, 'UTC'),
    interval_end DateTime64(6, 'UTC'),
    rate_e9 Int64,
    index_price Int64,
    mark_twap Int64,
    index_twap Int64,
    log_partition UInt16,
    log_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (market, interval_end);

CREATE TABLE IF NOT EXISTS {db}.markets (
    market String,
    ts DateTime64(6, 'UTC'),
    kind LowCardinality(String),
    base_asset String,
    quote_per_tick_lot Int64,
    tick_size_e9 Int64,
    lot_size_e9 Int64,
    maker_fee_bps Int32,
    taker_fee_bps Int32,
    expiry Nullable(DateTime64(6, 'UTC')),
    strike Nullable(Int64),
    option_type Nullable(String),
    index_symbol Nullable(String),
    log_partition UInt16,
    log_offset UInt64
) ENGINE = ReplacingMergeTree(log_offset)
ORDER BY market;

CREATE TABLE IF NOT EXISTS {db}.index_prices (
    index_symbol LowCardinality(String),
    ts DateTime64(6, 'UTC'),
    price_e9 Nullable(Int64),
    quotes UInt16,
    accepted UInt16,
    log_partition UInt16,
    log_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (index_symbol, ts);

CREATE TABLE IF NOT EXISTS {db}.implied_vols (
    market LowCardinality(String),
    trade_id UInt64,
    ts DateTime64(6, 'UTC'),
    trade_price Int64,
    index_price Int64,
    strike Int64,
    option_type LowCardinality(String),
    t_years Float64,
    implied_vol Nullable(Float64),
    failure Nullable(String),
    log_partition UInt16,
    log_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (market, trade_id);

-- ---- hot: 1-minute (and 5-second) buckets, 48 h, kept by materialized views -----------------------
CREATE TABLE IF NOT EXISTS {db}.trades_1m (
    bucket DateTime('UTC'),
    market LowCardinality(String),
    trades SimpleAggregateFunction(sum, UInt64),
    volume SimpleAggregateFunction(sum, Int64),
    notional SimpleAggregateFunction(sum, Int64),
    fees SimpleAggregateFunction(sum, Int64),
    high SimpleAggregateFunction(max, Int64),
    low SimpleAggregateFunction(min, Int64),
    open AggregateFunction(argMin, Int64, Tuple(DateTime64(6, 'UTC'), UInt64)),
    close AggregateFunction(argMax, Int64, Tuple(DateTime64(6, 'UTC'), UInt64))
) ENGINE = AggregatingMergeTree
ORDER BY (market, bucket)
TTL bucket + INTERVAL 48 HOUR;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.trades_1m_mv TO {db}.trades_1m AS
SELECT toStartOfMinute(ts) AS bucket, market, count() AS trades, sum(size) AS volume,
       sum(notional) AS notional, sum(maker_fee + taker_fee) AS fees, max(price) AS high,
       min(price) AS low, argMinState(price, (ts, trade_id)) AS open,
       argMaxState(price, (ts, trade_id)) AS close
FROM {db}.trades GROUP BY bucket, market;

CREATE TABLE IF NOT EXISTS {db}.trades_5s AS {db}.trades_1m
ENGINE = AggregatingMergeTree ORDER BY (market, bucket) TTL bucket + INTERVAL 48 HOUR;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.trades_5s_mv TO {db}.trades_5s AS
SELECT toStartOfInterval(ts, INTERVAL 5 SECOND) AS bucket, market, count() AS trades,
       sum(size) AS volume, sum(notional) AS notional, sum(maker_fee + taker_fee) AS fees,
       max(price) AS high, min(price) AS low, argMinState(price, (ts, trade_id)) AS open,
       argMaxState(price, (ts, trade_id)) AS close
FROM {db}.trades GROUP BY bucket, market;

CREATE TABLE IF NOT EXISTS {db}.latency_1m (
    bucket DateTime('UTC'),
    market LowCardinality(String),
    immediate UInt8,
    orders SimpleAggregateFunction(sum, UInt64),
    worst_us SimpleAggregateFunction(max, Int64),
    latency AggregateFunction(quantiles(0.5, 0.95, 0.99), Int64)
) ENGINE = AggregatingMergeTree
ORDER BY (market, immediate, bucket)
TTL bucket + INTERVAL 48 HOUR;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.latency_1m_mv TO {db}.latency_1m AS
SELECT toStartOfMinute(filled_at) AS bucket, market, immediate, count() AS orders,
       max(latency_us) AS worst_us, quantilesState(0.5, 0.95, 0.99)(latency_us) AS latency
FROM {db}.order_latency GROUP BY bucket, market, immediate;

CREATE TABLE IF NOT EXISTS {db}.open_interest_1m (
    bucket DateTime('UTC'),
    market LowCardinality(String),
    fills SimpleAggregateFunction(sum, UInt64),
    oi_delta SimpleAggregateFunction(sum, Int64)
) ENGINE = AggregatingMergeTree
ORDER BY (market, bucket)
TTL bucket + INTERVAL 48 HOUR;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.open_interest_1m_mv TO {db}.open_interest_1m AS
SELECT toStartOfMinute(ts) AS bucket, market, count() AS fills, sum(oi_delta) AS oi_delta
FROM {db}.position_changes GROUP BY bucket, market;

-- The level itself is a running sum since the first fill: one row per market, no TTL.
CREATE TABLE IF NOT EXISTS {db}.open_interest (
    market LowCardinality(String),
    open_interest SimpleAggregateFunction(sum, Int64)
) ENGINE = AggregatingMergeTree
ORDER BY market;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.open_interest_mv TO {db}.open_interest AS
SELECT market, sum(oi_delta) AS open_interest FROM {db}.position_changes GROUP BY market;

CREATE TABLE IF NOT EXISTS {db}.marks_1m (
    bucket DateTime('UTC'),
    market LowCardinality(String),
    mark_price AggregateFunction(argMax, Int64, UInt64),
    index_price AggregateFunction(argMax, Int64, UInt64)
) ENGINE = AggregatingMergeTree
ORDER BY (market, bucket)
TTL bucket + INTERVAL 48 HOUR;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.marks_1m_mv TO {db}.marks_1m AS
SELECT toStartOfMinute(ts) AS bucket, market, argMaxState(mark_price, seq) AS mark_price,
       argMaxState(index_price, seq) AS index_price
FROM {db}.marks GROUP BY bucket, market;

CREATE TABLE IF NOT EXISTS {db}.funding_1m (
    bucket DateTime('UTC'),
    market LowCardinality(String),
    rate_e9 AggregateFunction(argMax, Int64, DateTime64(6, 'UTC')),
    last_interval_end SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
) ENGINE = AggregatingMergeTree
ORDER BY (market, bucket)
TTL bucket + INTERVAL 48 HOUR;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.funding_1m_mv TO {db}.funding_1m AS
SELECT toStartOfMinute(ts) AS bucket, market, argMaxState(rate_e9, interval_end) AS rate_e9,
       max(interval_end) AS last_interval_end
FROM {db}.funding_rates GROUP BY bucket, market;

CREATE TABLE IF NOT EXISTS {db}.iv_1m (
    bucket DateTime('UTC'),
    market LowCardinality(String),
    trades SimpleAggregateFunction(sum, UInt64),
    iv_avg AggregateFunction(avg, Float64),
    iv_last AggregateFunction(argMax, Float64, Tuple(DateTime64(6, 'UTC'), UInt64))
) ENGINE = AggregatingMergeTree
ORDER BY (market, bucket)
TTL bucket + INTERVAL 48 HOUR;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.iv_1m_mv TO {db}.iv_1m AS
SELECT toStartOfMinute(ts) AS bucket, market, count() AS trades,
       avgState(assumeNotNull(implied_vol)) AS iv_avg,
       argMaxState(assumeNotNull(implied_vol), (ts, trade_id)) AS iv_last
FROM {db}.implied_vols WHERE implied_vol IS NOT NULL GROUP BY bucket, market;

-- Depth after every trade-log entry that moved a level (computed in Python), then its last value
-- per minute. argMax by sequence number is idempotent, so this pair needs no watermark.
CREATE TABLE IF NOT EXISTS {db}.depth (
    market LowCardinality(String),
    ts DateTime64(6, 'UTC'),
    seq UInt64,
    mid Nullable(Int64),
    bid_1bp Int64,
    ask_1bp Int64,
    bid_5bp Int64,
    ask_5bp Int64
) ENGINE = ReplacingMergeTree
ORDER BY (market, seq)
TTL toDateTime(ts) + INTERVAL 48 HOUR;

CREATE TABLE IF NOT EXISTS {db}.depth_1m (
    bucket DateTime('UTC'),
    market LowCardinality(String),
    last_seq SimpleAggregateFunction(max, UInt64),
    depth AggregateFunction(argMax, Tuple(Nullable(Int64), Int64, Int64, Int64, Int64), UInt64)
) ENGINE = AggregatingMergeTree
ORDER BY (market, bucket)
TTL bucket + INTERVAL 48 HOUR;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.depth_1m_mv TO {db}.depth_1m AS
SELECT toStartOfMinute(ts) AS bucket, market, max(seq) AS last_seq,
       argMaxState((mid, bid_1bp, ask_1bp, bid_5bp, ask_5bp), seq) AS depth
FROM {db}.depth GROUP BY bucket, market;

-- ---- warm: daily aggregates, one year, written by the roll-up job (services/metrics/rollup.py) ----
CREATE TABLE IF NOT EXISTS {db}.daily_markets (
    day Date,
    market LowCardinality(String),
    trades UInt64,
    volume Int64,
    notional Int64,
    fees Int64,
    open Nullable(Int64),
    high Nullable(Int64),
    low Nullable(Int64),
    close Nullable(Int64),
    oi_close Int64,
    oi_change Int64,
    funding_rate_e9 Nullable(Int64),
    funding_intervals UInt32,
    iv_avg Nullable(Float64),
    orders_filled UInt64,
    latency_p95_us Nullable(Int64)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, market)
TTL day + INTERVAL 365 DAY;

CREATE TABLE IF NOT EXISTS {db}.daily_traders (
    day Date,
    trader String,
    market LowCardinality(String),
    fills UInt64,
    notional Int64,
    fees Int64,
    funding Int64,
    realized_pnl Int64,
    realized_pnl_day Int64,
    size_close Int64,
    basis_close Int64,
    mark_close Nullable(Int64),
    unrealized_pnl Nullable(Int64)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, trader, market)
TTL day + INTERVAL 365 DAY;
