"""The metrics HTTP API: dashboards over the hot tier, and the analysts' read-only SQL.

Dashboards (JSON, each one small query over the 1-minute tables):

    GET /metrics/volume_24h   GET /metrics/open_interest   GET /metrics/depth
    GET /metrics/funding      GET /metrics/iv              GET /metrics/fees
    GET /metrics/latency_slo?hours=1                       GET /metrics/candles?market=…
    GET /health

Analysts: `POST /sql?format=JSON|TSV` with the query as the body, run with ClickHouse
`readonly = 2` (docs/analytics.md). The same text works against a production server's HTTP port.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from services.metrics import queries
from services.metrics.core.sql import SLO_TARGET_MS, NotReadOnly, read_only
from services.metrics.store import Store

FORMATS = {"JSON": ("JSON", "application/json"), "TSV": ("TSVWithNames", "text/tab-separated-values")}


def create_app(store: Store) -> FastAPI:
    """The API over `store` (handlers are sync: FastAPI runs them in its thread pool)."""
    app = FastAPI(title="CXPT metrics", version="1")

    @app.get("/health")
    def health() -> dict[str, str]:
        store.rows("SELECT 1")
        return {"status": "ok", "database": store.database}

    @app.get("/metrics/volume_24h")
    def volume_24h() -> dict[str, Any]:
        return {"window": "24h", "markets": store.named(queries.VOLUME_24H)}

    @app.get("/metrics/open_interest")
    def open_interest() -> dict[str, Any]:
        return {"unit": "lots", "markets": store.named(queries.OPEN_INTEREST)}

    @app.get("/metrics/depth")
    def depth() -> dict[str, Any]:
        found = []
        for row in store.named(queries.DEPTH):
            mid, b1, a1, b5, a5 = row["d"]
            found.append({"market": row["market"], "seq": row["seq"], "mid": mid,
                          "bid_1bp": b1, "ask_1bp": a1, "bid_5bp": b5, "ask_5bp": a5})  # fmt: skip
        return {"unit": "lots", "markets": found}

    @app.get("/metrics/funding")
    def funding() -> dict[str, Any]:
        return {"markets": store.named(queries.FUNDING)}

    @app.get("/metrics/iv")
    def iv() -> dict[str, Any]:
        return {"window": "24h", "markets": store.named(queries.IV)}

    @app.get("/metrics/fees")
    def fees() -> dict[str, Any]:
        markets = store.named(queries.FEES)
        return {"window": "24h", "total": sum(m["fees"] for m in markets), "markets": markets}

    @app.get("/metrics/latency_slo")
    def latency_slo(hours: int = Query(1, ge=1, le=48)) -> dict[str, Any]:
        orders, q, worst = store.rows(queries.LATENCY_SLO.replace("{hours}", str(hours)))[0]
        p50, p95, p99 = (round(v / 1000, 3) for v in q) if orders else (None, None, None)
        return {
            "window_hours": hours, "orders": orders, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "worst_ms": worst / 1000 if orders else None, "target_p95_ms": SLO_TARGET_MS,
            "met": None if p95 is None else p95 < SLO_TARGET_MS,
        }  # fmt: skip

    @app.get("/metrics/candles")
    def candles(
        market: str = Query(..., pattern=r"^[A-Za-z0-9._-]{1,64}$"),
        interval: str = Query("1m", pattern="^(1m|5s)$"),
        minutes: int = Query(60, ge=1, le=2880),
    ) -> dict[str, Any]:
        table = "trades_1m" if interval == "1m" else "trades_5s"
        sql = queries.CANDLES.replace("{table}", table).replace("{market}", f"'{market}'")  # pattern-checked
        return {"market": market, "interval": interval,
                "candles": store.named(sql.replace("{minutes}", str(minutes)))}  # fmt: skip

    @app.post("/sql")
    async def sql(request: Request, format: str = "JSON") -> Response:
        query = (await request.body()).decode()
        fmt = FORMATS.get(format.upper())
        if fmt is None:
            raise HTTPException(400, f"format must be one of {', '.join(FORMATS)}")
        try:
            statement = read_only(query)
        except NotReadOnly as exc:
            raise HTTPException(400, str(exc)) from exc
        try:
            body = await run_in_threadpool(store.raw, statement, fmt[0])
        except Exception as exc:  # the engine's message is what the analyst needs to see
            raise HTTPException(400, str(exc).strip()[:2000]) from exc
        return Response(body, media_type=fmt[1])

    return app
