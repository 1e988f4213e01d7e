"""Pure mapping from log records to projection rows. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_SHORT = "exchange.cxpt."


@dataclass(frozen=True)
class AccountEventRow:
    """One row of `account_events_by_trader` (Cassandra) and `account_events` (ClickHouse)."""

    trader: str
    ts_event_us: int
    event_id: str
    kind: str
    amount: int
    detail: str


def account_event_row(event: dict[str, Any]) -> AccountEventRow:
    """The projection row for a decoded `AccountEvent`."""
    name, body = event["body"]
    kind = name.removeprefix(_SHORT)
    # The amount column is the change of free USDC where the event has one.
    amount = int(body.get("amount", body.get("delta_free", 0)))
    if kind == "DepositConfirmed":
        detail = f"chain {body['chain_id']} tx {body['tx_hash']} log {body['log_index']}"
    elif kind == "WithdrawalRequested":
        detail = f"withdrawal {body['withdrawal_id']} as {'CXPT' if body['as_cxpt'] else 'USDC'}"
    elif kind == "BalanceChanged":
        detail = f"{body['reason']} {body['ref']}: free {body['free']} reserved {body['reserved']}"
    else:
        detail = " ".join(f"{k}={v}" for k, v in body.items() if k != "trader" and v not in (None, ""))
    return AccountEventRow(event["trader"], event["ts_event"], event["event_id"], kind, amount, detail)
