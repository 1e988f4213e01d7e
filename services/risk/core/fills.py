"""Applying one `OrderFilled` to the ledger of its trader: cash, positions, fees, clearing.

Each fill is applied on its own, for one side of a trade (the counterparty's fill may be handled by
another risk partition), so every money flow between traders passes through the exchange's
CLEARING account and each application balances by itself:

* spot: the buyer pays the notional into CLEARING, the seller is paid out of it; the synth lots
  travel through `clearing_inventory` the same way;
* options: the premium goes buyer → CLEARING → seller;
* perpetuals/futures: no cash changes hands when positions open (both sides lock their own
  collateral, the entry notional); on a reduction CLEARING pays the realized PnL (or receives the
  loss). CLEARING therefore equals minus the traders' net realized PnL once both sides of every
  trade are applied, and returns to 0 when every position is flat.

How a fill is paid for: the order's reservation share for the filled lots, plus whatever the fill
pays the trader (sale proceeds, premium received, collateral released by a reduction), form a pool.
Out of the pool, then out of the trader's free balance, come first what must be paid in full — the
fee (to FEES), the spot notional or option premium (to CLEARING) — then the collateral the fill
locks in a position. What is left goes to free. If pool and free balance cannot cover it all, the
position is opened with less collateral (`PositionUnderCollateralized`), and a fee or premium still
unpaid is advanced by INSURANCE (`InsuranceDrawn`, FILL_NOT_COVERED).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.records import MarketDefinition, MarketKind, OrderFilled, Side
from services.risk.core.errors import LedgerInvariantError
from services.risk.core.events import (
    InsuranceDrawn,
    PositionChanged,
    PositionUnderCollateralized,
    RiskEvent,
    ShortfallReason,
)
from services.risk.core.ledger import Ledger, Order, Position
from services.risk.core.rules import lot_notional, proportional_release, writer_collateral_per_lot


@dataclass(slots=True)
class _Fill:
    """One fill being applied, and what it does to the trader's cash: pool in, owed out, lock."""

    ledger: Ledger
    definition: MarketDefinition
    order: Order
    fill: OrderFilled
    pool: int
    owed: int = 0
    lock: int = 0
    events: list[RiskEvent] = field(default_factory=list)

    @property
    def per_lot(self) -> int:
        return lot_notional(self.definition, self.fill.last_px)


def apply_fill(
    ledger: Ledger,
    definition: MarketDefinition,
    order: Order,
    fill: OrderFilled,
    *,
    share: int,
    share_lots: int,
) -> list[RiskEvent]:
    """Apply `fill` of `order`, whose reservation share (`share` micro-USDC, `share_lots` synth lots)
    the caller already took out of the order. Returns the events it caused."""
    f = _Fill(ledger, definition, order, fill, pool=share, owed=fill.fee)
    ledger.fees += fill.fee
    if definition.kind is MarketKind.SPOT:
        _spot(f, share_lots)
        _fund(f)
        return f.events
    position = ledger.position(order.trader, order.market)
    before = position.size
    if definition.kind is MarketKind.OPTION:
        _option(f, position)
    else:
        _linear(f, position)
    locked = _fund(f)
    position.collateral += locked
    ledger.account(order.trader).locked += locked
    f.events.append(
        PositionChanged(
            trader=order.trader,
            market=order.market,
            order_id=order.order_id,
            trade_id=fill.trade_id,
            size=position.size,
            delta_size=position.size - before,
            basis=position.basis,
            collateral=position.collateral,
            realized_pnl=position.realized_pnl,
            last_px=fill.last_px,
        )
    )
    return f.events


def _spot(f: _Fill, share_lots: int) -> None:
    order, qty = f.order, f.fill.last_qty
    value = f.per_lot * qty
    in_transit = f.ledger.clearing_inventory.get(order.market, 0)
    holding = f.ledger.holding(order.trader, order.market)
    if order.side is Side.BUY:
        f.owed += value
        f.ledger.clearing += value
        holding.held += qty
        f.ledger.clearing_inventory[order.market] = in_transit - qty
    else:
        if share_lots != qty:
            raise LedgerInvariantError(f"sell {order.order_id} released {share_lots} lots for {qty}")
        f.pool += value
        f.ledger.clearing -= value
        f.ledger.clearing_inventory[order.market] = in_transit + qty


def _split(position: Position, side: Side, qty: int) -> tuple[int, int]:
    """(lots that reduce the position, lots that open or increase it)."""
    signed = qty if side is Side.BUY else -qty
    closing = min(qty, abs(position.size)) if position.size * signed < 0 else 0
    return closing, qty - closing


def _reduce(f: _Fill, position: Position, lots: int) -> tuple[int, int]:
    """Take `lots` off the position; returns the (basis, collateral) they release (floor, all at the end)."""
    whole = abs(position.size)
    basis = proportional_release(position.basis, lots, whole)
    collateral = proportional_release(position.collateral, lots, whole)
    position.basis -= basis
    position.collateral -= collateral
    f.ledger.account(f.order.trader).locked -= collateral
    position.size += lots if position.size < 0 else -lots
    return basis, collateral


def _linear(f: _Fill, position: Position) -> None:
    """Perpetuals and futures: 1x positions whose collateral is the entry notional."""
    closing, opening = _split(position, f.fill.side, f.fill.last_qty)
    if closing:
        was_long = position.size > 0
        basis, collateral = _reduce(f, position, closing)
        exit_value = f.per_lot * closing
        pnl = exit_value - basis if was_long else basis - exit_value
        position.realized_pnl += pnl
        f.ledger.clearing -= pnl
        value = collateral + pnl
        if value >= 0:
            f.pool += value
        else:  # a short lost more than its collateral: the trader gets 0, INSURANCE pays the rest
            f.ledger.insurance += value
            f.events.append(_drawn(f, -value, ShortfallReason.LOSS_BEYOND_COLLATERAL))
    if opening:
        entry = f.per_lot * opening
        position.basis += entry
        position.size += opening if f.fill.side is Side.BUY else -opening
        f.lock = entry


def _option(f: _Fill, position: Position) -> None:
    """Options: the premium changes hands through CLEARING; writers lock the writer collateral."""
    closing, opening = _split(position, f.fill.side, f.fill.last_qty)
    if f.fill.side is Side.BUY:
        if closing:  # buying back written options: collateral released, premium paid
            basis, collateral = _reduce(f, position, closing)
            premium = f.per_lot * closing
            position.realized_pnl += basis - premium
            f.pool += collateral
            f.owed += premium
            f.ledger.clearing += premium
        if opening:
            premium = f.per_lot * opening
            position.basis += premium
            position.size += opening
            f.owed += premium
            f.ledger.clearing += premium
    else:
        if closing:  # selling held options: premium received
            basis, _ = _reduce(f, position, closing)
            premium = f.per_lot * closing
            position.realized_pnl += premium - basis
            f.pool += premium
            f.ledger.clearing -= premium
        if opening:  # writing: premium received, writer collateral locked
            premium = f.per_lot * opening
            position.basis += premium
            position.size -= opening
            f.pool += premium
            f.ledger.clearing -= premium
            f.lock = writer_collateral_per_lot(f.definition) * opening


def _fund(f: _Fill) -> int:
    """Pay `owed` and `lock` out of the pool, then the free balance; returns the collateral locked."""
    account = f.ledger.account(f.order.trader)
    available = f.pool + account.free
    if available >= f.owed + f.lock:
        account.free = available - f.owed - f.lock
        return f.lock
    account.free = 0
    if available >= f.owed:
        locked = available - f.owed
        f.events.append(_under_collateralized(f, f.lock - locked))
        return locked
    advanced = f.owed - available
    f.ledger.insurance -= advanced
    f.events.append(_drawn(f, advanced, ShortfallReason.FILL_NOT_COVERED))
    if f.lock:
        f.events.append(_under_collateralized(f, f.lock))
    return 0


def _drawn(f: _Fill, amount: int, reason: ShortfallReason) -> InsuranceDrawn:
    return InsuranceDrawn(
        trader=f.order.trader,
        market=f.order.market,
        order_id=f.order.order_id,
        trade_id=f.fill.trade_id,
        amount=amount,
        reason=reason,
    )


def _under_collateralized(f: _Fill, shortfall: int) -> PositionUnderCollateralized:
    return PositionUnderCollateralized(
        trader=f.order.trader,
        market=f.order.market,
        order_id=f.order.order_id,
        trade_id=f.fill.trade_id,
        shortfall=shortfall,
    )
