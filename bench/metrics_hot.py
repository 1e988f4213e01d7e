"""Hot-tier dashboard latency: the metrics service's REST endpoints over 1,000,000 trades.

    python bench/metrics_hot.py [--trades 1000000] [--requests 300]

Loads a fresh embedded ClickHouse (a temporary chdb path, never the run directory's) with N
trades spread over the last 24 h on 4 markets, plus one order-latency row, one position change
and one mark per 10 trades, through the cold tables — so the materialized views fill the hot
tier as they do in service. Then serves the real FastAPI app with uvicorn on a local port and
times each dashboard endpoint over HTTP (httpx, one connection, keep-alive) after a warm-up:
p50 / p95 / p99 per endpoint and over all of them. Target: p95 < 15 ms.

Ends with one JSON line ``{"bench": "metrics_hot", ...}``.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import uvicorn

from services.metrics.app import create_app
from services.metrics.store import Store

ENDPOINTS = ("volume_24h", "open_interest", "depth", "funding", "iv", "fees", "latency_slo",
             "candles?market=BTC-PERP")  # fmt: skip
MARKETS = "['BTC-PERP', 'ETH-PERP', 'SOL-PERP', 'BTC-20261225']"


def load(store: Store, trades: int) -> float:
    """Fill the cold tables (and through them the hot tier); returns seconds taken."""
    started = time.perf_counter()
    chunk = 250_000
    for first in range(0, trades, chunk):
        n = min(chunk, trades - first)
        # ts spread evenly over the last 24 h; prices wander around 65 000.0 (ticks of 0.1).
        store.command(
            f"""INSERT INTO {{db}}.trades SELECT
                {MARKETS}[(number % 4) + 1] AS market, number AS trade_id,
                now64(6) - toIntervalMicrosecond(intDiv(({trades} - number) * 86400000000, {trades})) AS ts,
                650000 + (cityHash64(number) % 2000) - 1000 AS price, 1 + number % 7 AS size,
                price * size * 100 AS notional, intDiv(notional * 50 + 9999, 10000) AS maker_fee,
                maker_fee AS taker_fee, if(number % 2 = 0, 'BUY', 'SELL') AS aggressor_side,
                concat('0x', hex(number % 5000)) AS maker_trader,
                concat('0x', hex(number % 4999)) AS taker_trader,
                toString(number) AS maker_order_id, toString(number + 1) AS taker_order_id,
                concat('trade.log:0:', toString(number)) AS event_id, number % 8 AS log_partition,
                number AS log_offset
            FROM numbers({first}, {n})"""
        )
        store.command(
            f"""INSERT INTO {{db}}.order_latency SELECT market, taker_order_id, taker_trader,
                ts - INTERVAL 20 MILLISECOND, ts, 5000 + cityHash64(trade_id) % 60000, 1,
                log_partition, log_offset
            FROM {{db}}.trades WHERE trade_id >= {first} AND trade_id < {first + n} AND trade_id % 10 = 0"""
        )
        store.command(
            f"""INSERT INTO {{db}}.position_changes SELECT taker_trader, market, ts, event_id,
                taker_order_id, trade_id, size, size, notional, notional, 0, price, size,
                log_partition, log_offset
            FROM {{db}}.trades WHERE trade_id >= {first} AND trade_id < {first + n} AND trade_id % 10 = 0"""
        )
        store.command(
            f"""INSERT INTO {{db}}.marks SELECT market, ts, trade_id, price, price, log_partition, log_offset
            FROM {{db}}.trades WHERE trade_id >= {first} AND trade_id < {first + n} AND trade_id % 10 = 0"""
        )
        store.command(
            f"""INSERT INTO {{db}}.depth SELECT market, ts, trade_id, price, 5, 7, 40, 55
            FROM {{db}}.trades WHERE trade_id >= {first} AND trade_id < {first + n} AND trade_id % 10 = 0"""
        )
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per endpoint")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="metrics-bench-") as scratch:
        store = Store.open(f"chdb://{scratch}/ch", "bench")
        load_s = load(store, args.trades)
        hot_rows = store.rows("SELECT count() FROM {db}.trades_1m")[0][0]
        port = free_port()
        config = uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        per_endpoint: dict[str, dict[str, float]] = {}
        everything: list[float] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            for endpoint in ENDPOINTS:
                for _ in range(20):  # warm-up: connection, query caches, Python paths
                    http.get(f"/metrics/{endpoint}").raise_for_status()
                samples = []
                for _ in range(args.requests):
                    started = time.perf_counter()
                    http.get(f"/metrics/{endpoint}").raise_for_status()
                    samples.append((time.perf_counter() - started) * 1000)
                everything += samples
                per_endpoint[endpoint.split("?")[0]] = {
                    "p50_ms": pct(samples, 0.5), "p95_ms": pct(samples, 0.95), "p99_ms": pct(samples, 0.99),
                }  # fmt: skip
                print(f"{endpoint:28} p50 {pct(samples, 0.5):6.2f} ms  p95 {pct(samples, 0.95):6.2f} ms  "
                      f"p99 {pct(samples, 0.99):6.2f} ms")  # fmt: skip
        server.should_exit = True
        thread.join(timeout=10)
    result = {
        "bench": "metrics_hot", "trades": args.trades, "hot_1m_rows": hot_rows, "load_s": round(load_s, 1),
        "requests_per_endpoint": args.requests, "p50_ms": pct(everything, 0.5),
        "p95_ms": pct(everything, 0.95), "p99_ms": pct(everything, 0.99),
        "mean_ms": round(statistics.fmean(everything), 2), "endpoints": per_endpoint,
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
