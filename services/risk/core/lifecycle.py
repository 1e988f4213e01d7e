"""Money moves of the derivatives lifecycle: funding payments and expiry settlement of one position.

Each function moves micro-USDC between one trader's buckets and the exchange's accounts and
returns the events it caused; every move balances by itself, like a fill (see fills.py):

* **funding** — a paying lot pays `ceil(index × qptl × |rate| / 1e9)` from the free balance, then
  from the position's collateral, then INSURANCE advances the rest (`FUNDING_NOT_COVERED`); of it,
  the rounded-down share goes to CLEARING and the rounding remainder to FEES. A receiving lot gets
  the rounded-down share out of CLEARING. Longs' and shorts' lots are equal, so CLEARING nets to 0
  once every partition has applied the interval. Funding counts as realized PnL.
* **futures settlement** — the position closes at the settlement price exactly as a fill at that
  price would close it: CLEARING pays (or takes) the PnL, the collateral plus PnL goes to free, and a
  loss beyond the collateral falls on INSURANCE (`SETTLEMENT_LOSS_BEYOND_COLLATERAL`).
* **options settlement** — a holder is paid the capped payoff out of CLEARING; a writer pays it into
  CLEARING from the writer collateral and gets the rest of the collateral back (an under-collateralized
  writer's missing part comes from INSURANCE). Out of the money, nothing moves but the collateral.
"""

from __future__ import annotations

from services.common.records import FundingApplied, MarketDefinition, MarketKind
from services.risk.core.events import FundingPaid, InsuranceDrawn, PositionChanged, RiskEvent, ShortfallReason
from services.risk.core.ledger import Ledger, Position
from services.risk.core.rules import funding_per_lot, lot_notional, option_payoff_per_lot


def pay_funding(
    ledger: Ledger, d: MarketDefinition, trader: str, position: Position, funding: FundingApplied, *, ref: str
) -> list[RiskEvent]:
    """Book one funding interval for one open position; `ref` names the causing command."""
    pay, get = funding_per_lot(d, funding.index_price, funding.rate_e9)
    lots = abs(position.size)
    account = ledger.account(trader)
    events: list[RiskEvent] = []
    from_collateral = 0
    if (position.size > 0) == (funding.rate_e9 > 0):  # longs pay a positive rate, shorts a negative
        due = pay * lots
        ledger.fees += (pay - get) * lots
        ledger.clearing += get * lots
        from_free = min(account.free, due)
        account.free -= from_free
        from_collateral = min(position.collateral, due - from_free)
        position.collateral -= from_collateral
        account.locked -= from_collateral
        shortfall = due - from_free - from_collateral
        if shortfall:
            ledger.insurance -= shortfall
            events.append(_drawn(trader, d.market, ref, shortfall, ShortfallReason.FUNDING_NOT_COVERED))
        amount = -due
    else:
        amount = get * lots
        ledger.clearing -= amount
        account.free += amount
    position.realized_pnl += amount
    events.insert(
        0,
        FundingPaid(
            trader=trader,
            market=d.market,
            interval_end=funding.interval_end,
            size=position.size,
            rate_e9=funding.rate_e9,
            index_price=funding.index_price,
            amount=amount,
            from_collateral=from_collateral,
            realized_pnl=position.realized_pnl,
        ),
    )
    return events


def settle_position(
    ledger: Ledger, d: MarketDefinition, trader: str, position: Position, price: int, *, ref: str
) -> list[RiskEvent]:
    """Close one open position of an expired future or option at the settlement `price` (ticks)."""
    size, lots = position.size, abs(position.size)
    account = ledger.account(trader)
    basis, collateral = position.basis, position.collateral
    events: list[RiskEvent] = []
    if d.kind is MarketKind.OPTION:
        payoff = option_payoff_per_lot(d, price) * lots
        if size > 0:
            pnl, paid_out = payoff - basis, payoff
            ledger.clearing -= payoff
        else:
            from_collateral = min(collateral, payoff)
            if payoff > from_collateral:
                ledger.insurance -= payoff - from_collateral
                events.append(
                    _drawn(
                        trader,
                        d.market,
                        ref,
                        payoff - from_collateral,
                        ShortfallReason.SETTLEMENT_LOSS_BEYOND_COLLATERAL,
                    )
                )
            pnl, paid_out = basis - payoff, collateral - from_collateral
            ledger.clearing += payoff
    else:
        exit_value = lot_notional(d, price) * lots
        pnl = exit_value - basis if size > 0 else basis - exit_value
        ledger.clearing -= pnl
        paid_out = collateral + pnl
        if paid_out < 0:  # a short lost more than its collateral: the trader gets 0
            ledger.insurance += paid_out
            events.append(
                _drawn(trader, d.market, ref, -paid_out, ShortfallReason.SETTLEMENT_LOSS_BEYOND_COLLATERAL)
            )
            paid_out = 0
    account.free += paid_out
    account.locked -= collateral
    position.size = position.basis = position.collateral = 0
    position.realized_pnl += pnl
    events.insert(
        0,
        PositionChanged(
            trader=trader,
            market=d.market,
            order_id=ref,
            trade_id=0,
            size=0,
            delta_size=-size,
            basis=0,
            collateral=0,
            realized_pnl=position.realized_pnl,
            last_px=price,
        ),
    )
    return events


def _drawn(trader: str, market: str, ref: str, amount: int, reason: ShortfallReason) -> InsuranceDrawn:
    return InsuranceDrawn(
        trader=trader, market=market, order_id=ref, trade_id=0, amount=amount, reason=reason
    )
