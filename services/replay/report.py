"""A backtest's report: fills.csv, equity.csv, summary.json and plot.png in one folder.

Money stays in the exchange's integers (micro-USDC, ticks, lots) in the CSV and JSON files, so
two runs can be compared byte for byte; only the plot converts to USDC (floats are for eyes).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from services.replay.backtest import Outcome, Sample

FILLS_COLUMNS = (
    "ts", "market", "order_id", "trade_id", "side", "liquidity", "price", "size", "fee", "cum_qty",
    "leaves_qty",
)  # fmt: skip
MICRO = 1_000_000


def summary(outcome: Outcome, **extra: Any) -> dict[str, Any]:
    """The run in one JSON object (micro-USDC amounts are suffixed `_micro`)."""
    last = outcome.samples[-1] if outcome.samples else None
    equities = [s.equity for s in outcome.samples]
    peak, drawdown = 0, 0
    for equity in equities:
        peak = max(peak, equity)
        drawdown = max(drawdown, peak - equity)
    by_market: dict[str, dict[str, int]] = {}
    for fill in outcome.fills:
        m = by_market.setdefault(fill.market, {"fills": 0, "bought": 0, "sold": 0, "fees_micro": 0})
        m["fills"] += 1
        m["bought" if fill.side.value == "BUY" else "sold"] += fill.size
        m["fees_micro"] += fill.fee
    return extra | {
        "trader": outcome.trader,
        "first_ts": outcome.first_ts,
        "last_ts": outcome.last_ts,
        "recorded_commands": outcome.commands,
        "entries": outcome.entries,
        "orders_placed": outcome.placed,
        "rejections": len(outcome.rejections),
        "fills": len(outcome.fills),
        "maker_fills": sum(1 for f in outcome.fills if f.liquidity.value == "MAKER"),
        "volume_lots": sum(f.size for f in outcome.fills),
        "deposit_micro": outcome.deposit,
        "fees_micro": sum(f.fee for f in outcome.fills),
        "funding_micro": outcome.funding,
        "realized_pnl_micro": last.realized_pnl if last else 0,
        "unrealized_pnl_micro": last.unrealized_pnl if last else 0,
        "equity_micro": last.equity if last else outcome.deposit,
        "total_pnl_micro": (last.equity if last else outcome.deposit) - outcome.deposit,
        "max_drawdown_micro": drawdown,
        "positions": last.positions if last else {},
        "exposure_micro": last.exposure if last else {},
        "liquidations": outcome.liquidations,
        "by_market": by_market,
        "matcher_state_hash": outcome.matcher_state_hash,
        "risk_state_hash": outcome.risk_state_hash,
    }


def write_report(outcome: Outcome, folder: Path, **extra: Any) -> dict[str, Any]:
    """Write the four files into `folder` (created); returns the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "fills.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(FILLS_COLUMNS)
        for f in outcome.fills:
            out.writerow([f.ts, f.market, f.order_id, f.trade_id, f.side.value, f.liquidity.value, f.price,
                          f.size, f.fee, f.cum_qty, f.leaves_qty])  # fmt: skip
    markets = sorted({m for s in outcome.samples for m in s.positions})
    with (folder / "equity.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(
            ["ts", "equity", "free", "locked", "realized_pnl", "unrealized_pnl", "fees", "funding"]
            + [f"position:{m}" for m in markets]
            + [f"exposure:{m}" for m in markets]
        )
        for s in outcome.samples:
            out.writerow(
                [s.ts, s.equity, s.free, s.locked, s.realized_pnl, s.unrealized_pnl, s.fees, s.funding]
                + [s.positions.get(m, 0) for m in markets]
                + [s.exposure.get(m, 0) for m in markets]
            )
    result = summary(outcome, **extra)
    (folder / "summary.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    plot(outcome.samples, outcome.deposit, folder / "plot.png")
    return result


def plot(samples: list[Sample], deposit: int, path: Path) -> None:
    """Equity and PnL (USDC) above, position per market (lots) below, against data time."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    start = samples[0].ts if samples else 0
    span_s = (samples[-1].ts - start) / 1e6 if samples else 0
    unit, per = (
        ("seconds", 1e6) if span_s < 120 else ("minutes", 60e6) if span_s < 3 * 3600 else ("hours", 3600e6)
    )
    minutes = [(s.ts - start) / per for s in samples]
    top.plot(minutes, [(s.equity - deposit) / MICRO for s in samples], label="total PnL (equity − deposit)")
    top.plot(minutes, [s.realized_pnl / MICRO for s in samples], label="realised PnL")
    top.plot(minutes, [s.unrealized_pnl / MICRO for s in samples], label="unrealised PnL")
    top.plot(minutes, [-s.fees / MICRO for s in samples], label="fees paid", linestyle=":")
    top.set_ylabel("USDC")
    top.legend(loc="best", fontsize="small")
    top.grid(alpha=0.3)
    for market in sorted({m for s in samples for m in s.positions}):
        bottom.step(minutes, [s.positions.get(market, 0) for s in samples], where="post", label=market)
    bottom.set_ylabel("position (lots)")
    bottom.set_xlabel(f"{unit} since the first sample (data time)")
    bottom.grid(alpha=0.3)
    if samples and any(s.positions for s in samples):
        bottom.legend(loc="best", fontsize="small")
    figure.suptitle("backtest: PnL and position")
    figure.tight_layout()
    # Fixed metadata: matplotlib otherwise stamps the software version and nothing else varies.
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)
