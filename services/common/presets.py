"""Example market definitions for local runs, samples, benchmarks and tests — one place for them."""

from __future__ import annotations

from services.common.records import MarketDefinition, MarketKind, MarketStatus

# symbol: (base asset, kind, tick size × 1e9, lot size × 1e9, micro-USDC per tick-lot)
PRESETS = {
    # tick 0.1 USDC, lot 0.001 BTC: one tick on one lot = 0.0001 USDC = 100 micro-USDC
    "BTC-PERP": ("BTC", MarketKind.PERPETUAL, 100_000_000, 1_000_000, 100),
    # tick 0.01 USDC, lot 0.01 ETH: 0.0001 USDC = 100 micro-USDC
    "ETH-PERP": ("ETH", MarketKind.PERPETUAL, 10_000_000, 10_000_000, 100),
}


def preset(
    symbol: str, *, status: MarketStatus = MarketStatus.ACTIVE, min_size: int = 1, fee_bps: int = 50
) -> MarketDefinition:
    """The preset market `symbol`, with a flat `fee_bps` for makers and takers."""
    base, kind, tick_e9, lot_e9, qptl = PRESETS[symbol]
    return MarketDefinition(
        market=symbol, kind=kind, base_asset=base, quote_per_tick_lot=qptl, tick_size_e9=tick_e9,
        lot_size_e9=lot_e9, min_size=min_size, maker_fee_bps=fee_bps, taker_fee_bps=fee_bps, status=status,
        index_symbol=f"{base}-USD",
    )  # fmt: skip
