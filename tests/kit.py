"""Self-describing record factories for tests (the project's test kit)."""

from __future__ import annotations

from typing import Any

DEPOSIT = "exchange.cxpt.DepositConfirmed"
TS_2026_11_23 = 1_795_392_000_000_000  # 2026-11-23T00:00:00Z in microseconds


def trader_address(n: int) -> str:
    """A distinct, valid-looking lower-case address for trader number `n`."""
    return "0x" + f"{n:040x}"


def deposit_event(*, trader: str, amount: int, n: int, ts_event: int = TS_2026_11_23) -> dict[str, Any]:
    """An `AccountEvent` crediting `amount` micro-USDC to `trader`; `n` makes its ids unique."""
    return {
        "event_id": f"dev:0:{n}",
        "trader": trader,
        "ts_event": ts_event + n,
        "body": (
            DEPOSIT,
            {"amount": amount, "chain_id": 0, "tx_hash": f"dev-{n}", "log_index": 0, "block_number": 0},
        ),
    }
