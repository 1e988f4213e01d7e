"""Events risk emits for traders to see (balance, inventory and position changes, and shortfalls).

Plain frozen dataclasses named in past tense, so the core needs no serde; the service publishes
them as the `AccountEvent` branches of the same names.
Amounts are integers: micro-USDC for money, lots for sizes. Every event carries the state *after*
the change (so a projection can upsert it) and, where useful, the change itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ChangeReason(StrEnum):
    """What caused a balance or inventory change."""

    DEPOSIT = "DEPOSIT"
    SYNTH_DEPOSIT = "SYNTH_DEPOSIT"
    ORDER_PLACED = "ORDER_PLACED"
    AMEND_REQUESTED = "AMEND_REQUESTED"
    WITHDRAWAL_REQUESTED = "WITHDRAWAL_REQUESTED"
    WITHDRAWAL_PAID = "WITHDRAWAL_PAID"
    WITHDRAWAL_FAILED = "WITHDRAWAL_FAILED"
    ORDER_FILLED = "ORDER_FILLED"
    ORDER_CANCELLED = "ORDER_CANCELLED"
    ORDER_REJECTED = "ORDER_REJECTED"
    ORDER_AMENDED = "ORDER_AMENDED"
    FUNDING = "FUNDING"
    SETTLEMENT = "SETTLEMENT"


class ShortfallReason(StrEnum):
    """Why the INSURANCE account paid for a trader."""

    LOSS_BEYOND_COLLATERAL = "LOSS_BEYOND_COLLATERAL"
    """A perpetual/future position closed at a loss larger than its collateral; the trader got 0."""
    FILL_NOT_COVERED = "FILL_NOT_COVERED"
    """A fill's fee or premium exceeded the order's reservation plus the trader's free balance."""
    FUNDING_NOT_COVERED = "FUNDING_NOT_COVERED"
    """A funding payment exceeded the trader's free balance plus the position's collateral."""
    SETTLEMENT_LOSS_BEYOND_COLLATERAL = "SETTLEMENT_LOSS_BEYOND_COLLATERAL"
    """A settlement cost more than the position's collateral (a future's short beyond it, an
    under-collateralized option writer); the trader got 0."""


class AlertAction(StrEnum):
    """What risk did about a position whose loss at the mark is large."""

    ALERT = "ALERT"
    """The loss reached the alert level: the trader is told."""
    LIQUIDATING = "LIQUIDATING"
    """The loss reached the liquidation level: a reduce-only market order closes the position."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceChanged:
    """Event: a trader's USDC buckets changed (values after the change, micro-USDC)."""

    trader: str
    free: int
    """Available for new orders and withdrawals."""
    reserved: int
    """Held for open orders."""
    withdrawing: int
    """Held for requested withdrawals until settlement pays them."""
    locked: int
    """Collateral locked in positions (perpetual, future, option writer), all markets."""
    delta_free: int
    """Change of `free` in this step."""
    reason: ChangeReason
    ref: str
    """What caused it: an order id, a withdrawal id or a deposit id."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryChanged:
    """Event: a trader's synth holdings on a spot market changed (lots, after the change)."""

    trader: str
    market: str
    held: int
    """Lots free to sell or withdraw."""
    reserved: int
    """Lots held for open sell orders."""
    delta_held: int
    reason: ChangeReason
    ref: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionChanged:
    """Event: a fill changed a perpetual, future or option position (values after the fill)."""

    trader: str
    market: str
    order_id: str
    trade_id: int
    size: int
    """Signed lots: > 0 long, < 0 short."""
    delta_size: int
    basis: int
    """Entry value of the open lots, micro-USDC: notional (perpetual/future) or premium (option)."""
    collateral: int
    """Micro-USDC locked for the position (0 for a long option)."""
    realized_pnl: int
    """Cumulative realized PnL on this market, micro-USDC."""
    last_px: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InsuranceDrawn:
    """Event (a flag): the INSURANCE account paid `amount` micro-USDC a trader could not."""

    trader: str
    market: str
    order_id: str
    trade_id: int
    amount: int
    reason: ShortfallReason


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionUnderCollateralized:
    """Event (a flag): a fill opened exposure whose collateral the trader could not fully fund.

    Happens when a SELL fills above its limit price (a short locks the notional at the fill price),
    or when a reduce-only order fills after its position is gone. `shortfall` micro-USDC are missing;
    a later loss beyond the collateral that is there falls on INSURANCE.
    """

    trader: str
    market: str
    order_id: str
    trade_id: int
    shortfall: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingPaid:
    """Event: a position paid (amount < 0) or received (amount > 0) one funding interval's payment."""

    trader: str
    market: str
    interval_end: int
    size: int
    rate_e9: int
    index_price: int
    amount: int
    from_collateral: int
    """Part of a payment taken from the position's collateral (the free balance was short)."""
    realized_pnl: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LiquidationAlert:
    """Event: at the latest mark a position has lost `loss_bps` of its collateral."""

    trader: str
    market: str
    size: int
    mark_price: int
    collateral: int
    unrealized_pnl: int
    equity: int
    loss_bps: int
    action: AlertAction
    order_id: str | None
    """The liquidation order, when `action` is LIQUIDATING."""


RiskEvent = (
    BalanceChanged
    | InventoryChanged
    | PositionChanged
    | InsuranceDrawn
    | PositionUnderCollateralized
    | FundingPaid
    | LiquidationAlert
)
