"""Self-describing fixtures for the gateway core: keys, the local domain, example structs.

The keys are anvil's well-known development accounts #0–#2 (public: never fund them anywhere).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from uuid import UUID

from services.gateway.core.typed_data import (
    Amend,
    Cancel,
    CancelAll,
    ExchangeDomain,
    Order,
    OrderTypeCode,
    SideCode,
    StpCode,
    TimeInForceCode,
    Withdrawal,
)
from services.gateway.stores import LocalIdempotencyStore
from tests.kit import TS_2026_11_23

ALICE_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ALICE = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
BOB_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
BOB = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
MALLORY_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
MALLORY = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"

ANVIL_CHAIN_ID = 31337
VAULT_ON_ANVIL = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
"""Where account #0's first deployment lands on a fresh anvil."""
LOCAL_DOMAIN = ExchangeDomain(chain_id=ANVIL_CHAIN_ID, verifying_contract=VAULT_ON_ANVIL)

NOW = TS_2026_11_23
"""2026-11-23T00:00:00Z in µs: the command time of every example unless a test moves it."""
SECOND = 1_000_000
MINUTE = 60 * SECOND
DAY = 86_400 * SECOND

ORDER_ID_1 = UUID("01a205b3-d000-7000-8000-000000000001")
"""A UUIDv7 whose timestamp is NOW (2026-11-23)."""
WITHDRAWAL_ID_1 = UUID("01a205b3-d000-7000-8000-00000000a001")


def order_alice_buy_3_lots_at_650005_gtc(**overrides: Any) -> Order:
    """Alice buys 3 lots of BTC-PERP at 650_005 ticks (65,000.5 USDC), GTC, signed at NOW, valid a minute."""
    order = Order(
        trader=ALICE,
        market="BTC-PERP",
        order_id=ORDER_ID_1,
        client_order_id="c1",
        side=SideCode.BUY,
        order_type=OrderTypeCode.LIMIT,
        price=650_005,
        size=3,
        time_in_force=TimeInForceCode.GTC,
        post_only=False,
        reduce_only=False,
        expire_at=None,
        stp=StpCode.CANCEL_MAKER,
        nonce=NOW,
        deadline=NOW + MINUTE,
    )
    return replace(order, **overrides)


def cancel_alice_order_1(**overrides: Any) -> Cancel:
    """Alice cancels ORDER_ID_1 on BTC-PERP by venue id."""
    cancel = Cancel(
        trader=ALICE,
        market="BTC-PERP",
        order_id=ORDER_ID_1,
        client_order_id=None,
        nonce=NOW,
        deadline=NOW + MINUTE,
    )
    return replace(cancel, **overrides)


def cancel_all_alice_everywhere(**overrides: Any) -> CancelAll:
    """Alice cancels every open order, every market, both sides."""
    return replace(
        CancelAll(trader=ALICE, market=None, side=None, nonce=NOW, deadline=NOW + MINUTE), **overrides
    )


def amend_alice_order_1_to_size_2(**overrides: Any) -> Amend:
    """Alice shrinks ORDER_ID_1 to 2 lots, price unchanged."""
    amend = Amend(
        trader=ALICE,
        market="BTC-PERP",
        order_id=ORDER_ID_1,
        new_price=None,
        new_size=2,
        nonce=NOW,
        deadline=NOW + MINUTE,
    )
    return replace(amend, **overrides)


def withdrawal_alice_250_usdc(**overrides: Any) -> Withdrawal:
    """Alice withdraws 250 USDC as USDC."""
    withdrawal = Withdrawal(
        trader=ALICE,
        withdrawal_id=WITHDRAWAL_ID_1,
        amount=250_000_000,
        as_cxpt=False,
        nonce=NOW,
        deadline=NOW + MINUTE,
    )
    return replace(withdrawal, **overrides)


class MemoryIdempotencyStore(LocalIdempotencyStore):
    """The gateway's process-local store, on a clock the test moves (`now_s`, seconds)."""

    def __init__(self) -> None:
        self.now_s = 0
        super().__init__(clock=lambda: self.now_s)
