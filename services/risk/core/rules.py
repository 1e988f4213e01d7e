"""The arithmetic of risk, pure functions of a market definition and integers.

Units: prices in ticks, sizes in lots, money in micro-USDC; one tick on one lot is worth the
market's `quote_per_tick_lot` micro-USDC exactly, so notional never rounds.

Every order reserves a fixed amount **per open lot** (its `Rates`), so the reservation of an
order is `leaves × rate` and any fill, cancel or partial fill releases an exact share. The fee is
reserved per lot and rounded up per lot: `ceil(price × qptl × max(maker, taker) bps / 10 000)`.
Rounding each lot up covers every way the matcher can split the order into fills (each fill's fee
rounds up on its own), which rounding the whole order's fee once would not.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.money import BPS_PER_UNIT, mul_div_ceil, mul_div_floor
from services.common.records import MarketDefinition, MarketKind, OptionType, Side


@dataclass(frozen=True, slots=True)
class Rates:
    """What one open lot of an order holds back: micro-USDC and synth lots."""

    usdc: int
    inventory: int = 0


@dataclass(frozen=True, slots=True)
class Requirement:
    """What an order must hold back now: micro-USDC and synth lots."""

    usdc: int
    inventory: int


def max_fee_bps(d: MarketDefinition) -> int:
    """The fee rate risk reserves: the larger of maker and taker, since it cannot know which applies."""
    return max(d.maker_fee_bps, d.taker_fee_bps)


def lot_notional(d: MarketDefinition, price: int) -> int:
    """Micro-USDC value of one lot at `price` ticks (exact)."""
    return price * d.quote_per_tick_lot


def fee_per_lot(d: MarketDefinition, price: int) -> int:
    """The fee reserved per lot at `price`, at the larger fee rate, rounded up."""
    return mul_div_ceil(lot_notional(d, price), max_fee_bps(d), BPS_PER_UNIT)


def writer_collateral_per_lot(d: MarketDefinition) -> int:
    """What an option writer locks per lot: strike × quote_per_tick_lot (a PUT's maximum payoff;
    a CALL's payoff is capped at the strike, so the same amount covers it)."""
    if d.strike is None:
        raise ValueError(f"{d.market} has no strike")
    return d.strike * d.quote_per_tick_lot


def order_rates(d: MarketDefinition, side: Side, price: int, reduce_only: bool) -> Rates:
    """What one open lot of an order reserves (the worst case of filling it at its limit price).

    * reduce-only (any kind but spot): the fee only — closing releases collateral, it locks none;
    * spot BUY, perpetual/future BUY or SELL, option BUY: notional + fee;
    * spot SELL: one synth lot, no USDC (the fee is taken from the sale proceeds);
    * option SELL: the writer collateral, no fee (the fee is taken from the premium received).
    """
    if reduce_only:
        return Rates(usdc=fee_per_lot(d, price))
    paying = lot_notional(d, price) + fee_per_lot(d, price)
    if d.kind is MarketKind.SPOT:
        return Rates(usdc=paying) if side is Side.BUY else Rates(usdc=0, inventory=1)
    if d.kind is MarketKind.OPTION and side is Side.SELL:
        return Rates(usdc=writer_collateral_per_lot(d))
    return Rates(usdc=paying)


def covered_by_reservation(d: MarketDefinition, side: Side, last_px: int, last_qty: int, fee: int) -> int:
    """What the reservation share of a fill (not reduce-only) must cover by itself.

    A BUY never fills above its price, so its share pays the notional or premium and the fee in full.
    An option SELL's share is the writer collateral. Other sells may fill above their price: a
    short then locks more than was reserved, and the difference comes from the free balance.
    """
    if side is Side.BUY:
        return lot_notional(d, last_px) * last_qty + fee
    if d.kind is MarketKind.OPTION:
        return writer_collateral_per_lot(d) * last_qty
    return 0


def held_back(rate: int, leaves: int, amend: tuple[int, int] | None) -> int:
    """What an order with `leaves` open lots at `rate` per lot must hold back.

    With an amendment in flight (`amend` = its rate and its open lots once applied), the order may
    still fill x lots at the old rate and then have `amend_leaves − x` lots open at the new one;
    the worst case over x is `max(amend_leaves × new_rate, leaves × rate + max(0, amend_leaves −
    leaves) × new_rate)`.
    """
    if amend is None:
        return leaves * rate
    new_rate, amend_leaves = amend
    return max(amend_leaves * new_rate, leaves * rate + max(0, amend_leaves - leaves) * new_rate)


def proportional_release(amount: int, part: int, whole: int) -> int:
    """The share of `amount` that `part` of `whole` lots releases: rounded down, everything at the end."""
    if part == whole:
        return amount
    return mul_div_floor(amount, part, whole)


# -- marks, funding and settlement ----------------------------------------------------------------

ALERT_LOSS_BPS = 8_000
"""A position that has lost 80 % of its collateral at the mark gets a `LiquidationAlert`."""
LIQUIDATION_LOSS_BPS = 9_500
"""At 95 % risk closes it with a reduce-only market order: the last 5 % absorb the slippage of the
close, so INSURANCE pays only when the book moves further than that before the order fills."""
LIQUIDATION_SLIPPAGE_BPS = 1_000
"""The liquidation order's protective price: 10 % through the mark."""
RATE_SCALE = 1_000_000_000
"""Funding rates are integers × 1e9."""


def loss_bps(collateral: int, pnl: int) -> int:
    """The loss as basis points of the collateral (0 for a gain; 10 000 = all of it), rounded down."""
    if pnl >= 0 or collateral <= 0:
        return 0 if pnl >= 0 else BPS_PER_UNIT
    return mul_div_floor(-pnl, BPS_PER_UNIT, collateral)


def liquidation_price(side: Side, mark: int) -> int:
    """Protective price of a liquidation order: `LIQUIDATION_SLIPPAGE_BPS` through the mark."""
    if side is Side.BUY:
        return mul_div_ceil(mark, BPS_PER_UNIT + LIQUIDATION_SLIPPAGE_BPS, BPS_PER_UNIT)
    return max(1, mul_div_floor(mark, BPS_PER_UNIT - LIQUIDATION_SLIPPAGE_BPS, BPS_PER_UNIT))


def funding_per_lot(d: MarketDefinition, index_price: int, rate_e9: int) -> tuple[int, int]:
    """(what a paying lot pays, what a receiving lot gets), micro-USDC: index × qptl × |rate| per
    lot, rounded up for payers and down for receivers. Longs and shorts hold the same number of lots,
    so receivers are paid exactly what payers' rounded-down share brings; the rounding remainder
    (at most 1 micro-USDC a paying lot) goes to FEES."""
    exact = lot_notional(d, index_price) * abs(rate_e9)
    return mul_div_ceil(exact, 1, RATE_SCALE), mul_div_floor(exact, 1, RATE_SCALE)


def option_payoff_per_lot(d: MarketDefinition, settlement_price: int) -> int:
    """What one long option lot receives at expiry, micro-USDC: a PUT max(K − S, 0), a CALL
    min(max(S − K, 0), K) — capped at the strike, so the writer collateral `K × qptl` covers it."""
    if d.strike is None or d.option_type is None:
        raise ValueError(f"{d.market} is not an option")
    strike = d.strike
    if d.option_type is OptionType.PUT:
        intrinsic = max(strike - settlement_price, 0)
    else:
        intrinsic = min(max(settlement_price - strike, 0), strike)
    return intrinsic * d.quote_per_tick_lot
