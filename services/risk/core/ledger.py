"""The ledger: every micro-USDC and every synth lot risk knows about, in named buckets.

USDC buckets, all micro-USDC integers:

* per trader: `free`, `reserved` (open orders), `withdrawing` (requested withdrawals), `locked`
  (collateral of the trader's positions, the sum of `Position.collateral`);
* exchange accounts: `fees` (the protocol FEES account), `clearing` (the CLEARING account, may be
  negative), `insurance` (the INSURANCE account, may be negative).

The invariant `validate()` checks, exactly:

    Σ free + Σ reserved + Σ withdrawing + Σ position collateral + fees + clearing + insurance
        = deposited − withdrawn

and per spot market: Σ held + Σ reserved synth lots + lots in clearing = synth lots deposited.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from services.common.records import MarketDefinition, MarketKind, MarketStatus, Side
from services.risk.core.errors import LedgerInvariantError
from services.risk.core.rules import Rates, Requirement, held_back, writer_collateral_per_lot


@dataclass(slots=True)
class Market:
    """A market as risk knows it: its parameters and its status."""

    definition: MarketDefinition
    status: MarketStatus
    mark_price: int = 0
    """Latest mark in ticks (from `MarkPriceSet`); 0 until the first."""


@dataclass(slots=True)
class Account:
    """One trader's USDC buckets and the index of their open orders."""

    free: int = 0
    reserved: int = 0
    withdrawing: int = 0
    locked: int = 0
    withdrawals: dict[str, int] = field(default_factory=dict)
    """Pending withdrawals: id → micro-USDC."""
    orders: dict[str, None] = field(default_factory=dict)
    """Open order ids, in the order risk forwarded them."""

    def snapshot(self) -> tuple[int, int, int, int]:
        return (self.free, self.reserved, self.withdrawing, self.locked)


@dataclass(slots=True)
class Position:
    """A perpetual, future or option position of one trader on one market."""

    size: int = 0
    """Signed lots."""
    basis: int = 0
    """Entry value of the open lots (notional, or premium for options), micro-USDC."""
    collateral: int = 0
    """Micro-USDC locked."""
    realized_pnl: int = 0
    """Cumulative, micro-USDC."""


@dataclass(slots=True)
class Holding:
    """Synth lots of one trader on one spot market."""

    held: int = 0
    reserved: int = 0


@dataclass(slots=True)
class PendingAmend:
    """An amendment risk forwarded and the matcher has not answered yet."""

    command_id: str
    price: int
    size: int
    rates: Rates


@dataclass(slots=True)
class Order:
    """An order risk forwarded and that is not finished (or has an amendment in flight)."""

    order_id: str
    command_id: str
    """The PlaceOrder command (the matcher's rejection of it carries this id)."""
    trader: str
    market: str
    side: Side
    price: int
    size: int
    leaves: int
    cum: int
    reduce_only: bool
    rates: Rates
    reserved_usdc: int = 0
    reserved_inventory: int = 0
    amend: PendingAmend | None = None
    liquidation: bool = False
    """Sent by risk itself to close a position whose collateral is (nearly) exhausted."""

    def requirement(self) -> Requirement:
        """What the order must hold back now (see `rules.held_back`)."""
        if self.amend is None:
            return Requirement(self.leaves * self.rates.usdc, self.leaves * self.rates.inventory)
        amend_leaves = max(0, self.amend.size - self.cum)
        new = self.amend.rates
        return Requirement(
            held_back(self.rates.usdc, self.leaves, (new.usdc, amend_leaves)),
            held_back(self.rates.inventory, self.leaves, (new.inventory, amend_leaves)),
        )

    def committed_lots(self) -> int:
        """Lots this order may still trade: its leaves, or the amendment's if that is larger."""
        if self.amend is None:
            return self.leaves
        return max(self.leaves, self.amend.size - self.cum)


class Ledger:
    """All balances, holdings, positions and open orders of the traders one risk engine owns."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.orders: dict[str, Order] = {}
        self.touched_orders: set[str] = set()
        """Ids of the orders changed (or closed) since the owner last drained this set: what the
        service writes to its changelog. Bookkeeping for the adapter, not part of the state."""
        self.positions: dict[tuple[str, str], Position] = {}
        self.holdings: dict[tuple[str, str], Holding] = {}
        self.fees = 0
        self.clearing = 0
        self.insurance = 0
        self.clearing_inventory: dict[str, int] = {}
        """Synth lots in transit per spot market: sold by one side, not yet taken by the other."""
        self.synth_supply: dict[str, int] = {}
        """Synth lots deposited per spot market."""
        self.deposited = 0
        self.withdrawn = 0
        self.deposit_ids: set[str] = set()
        """Every deposit credited (USDC and synth), to ignore redeliveries."""
        self.trader_deposit_ids: dict[str, list[str]] = {}
        """The same ids by the trader credited (so each trader's state carries its own)."""

    # -- access --------------------------------------------------------------------------------

    def account(self, trader: str) -> Account:
        account = self.accounts.get(trader)
        if account is None:
            account = self.accounts[trader] = Account()
        return account

    def position(self, trader: str, market: str) -> Position:
        position = self.positions.get((trader, market))
        if position is None:
            position = self.positions[(trader, market)] = Position()
        return position

    def holding(self, trader: str, market: str) -> Holding:
        holding = self.holdings.get((trader, market))
        if holding is None:
            holding = self.holdings[(trader, market)] = Holding()
        return holding

    def record_deposit(self, trader: str, deposit_id: str) -> bool:
        """Remember a deposit credited to `trader` (or a withdrawal settled, `withdrawal:<id>`:
        every movement the chain reports, so a redelivery is ignored); False if seen before."""
        if deposit_id in self.deposit_ids:
            return False
        self.deposit_ids.add(deposit_id)
        self.trader_deposit_ids.setdefault(trader, []).append(deposit_id)
        return True

    def free_usdc(self, trader: str) -> int:
        account = self.accounts.get(trader)
        return account.free if account is not None else 0

    def free_inventory(self, trader: str, market: str) -> int:
        holding = self.holdings.get((trader, market))
        return holding.held if holding is not None else 0

    def trader_orders(self, trader: str) -> list[Order]:
        account = self.accounts.get(trader)
        return [self.orders[oid] for oid in account.orders] if account is not None else []

    # -- order bookkeeping ---------------------------------------------------------------------

    def open_order(self, order: Order) -> None:
        """Index `order` and move its reservation out of the trader's free buckets."""
        account = self.account(order.trader)
        need = order.requirement()
        self.hold(order, need.usdc, need.inventory)
        self.orders[order.order_id] = order
        account.orders[order.order_id] = None
        self.touched_orders.add(order.order_id)

    def hold(self, order: Order, usdc: int, inventory: int) -> None:
        """Move more free USDC / synth lots into `order`'s reservation (the caller checked they exist)."""
        account = self.account(order.trader)
        account.free -= usdc
        account.reserved += usdc
        order.reserved_usdc += usdc
        self.touched_orders.add(order.order_id)
        if inventory:
            holding = self.holding(order.trader, order.market)
            holding.held -= inventory
            holding.reserved += inventory
            order.reserved_inventory += inventory

    def take_excess(self, order: Order) -> tuple[int, int]:
        """Take out of `order` everything above its requirement; returns (micro-USDC, lots) taken.

        The caller decides where they go (back to free, or to pay a fill).
        """
        need = order.requirement()
        usdc = order.reserved_usdc - need.usdc
        inventory = order.reserved_inventory - need.inventory
        if usdc < 0 or inventory < 0:
            raise LedgerInvariantError(
                f"order {order.order_id} holds {order.reserved_usdc}/{order.reserved_inventory}"
                f" but needs {need.usdc}/{need.inventory}"
            )
        order.reserved_usdc -= usdc
        order.reserved_inventory -= inventory
        self.touched_orders.add(order.order_id)
        self.account(order.trader).reserved -= usdc
        if inventory:
            self.holding(order.trader, order.market).reserved -= inventory
        return usdc, inventory

    def release_excess(self, order: Order) -> None:
        """Give back to the trader's free buckets what `order` no longer needs; drop it if finished."""
        usdc, inventory = self.take_excess(order)
        self.account(order.trader).free += usdc
        if inventory:
            self.holding(order.trader, order.market).held += inventory
        self.close_if_finished(order)

    def close_if_finished(self, order: Order) -> None:
        if order.leaves == 0 and order.amend is None:
            if order.reserved_usdc or order.reserved_inventory:
                raise LedgerInvariantError(f"finished order {order.order_id} still holds a reservation")
            del self.orders[order.order_id]
            del self.account(order.trader).orders[order.order_id]

    # -- checking ------------------------------------------------------------------------------

    def validate(self, markets: dict[str, Market]) -> None:
        """Raise LedgerInvariantError unless every bucket is consistent and the books balance exactly."""
        reserved: dict[str, int] = {}
        reserved_lots: dict[tuple[str, str], int] = {}
        for order_id, order in self.orders.items():
            _check(order.order_id == order_id, f"order {order_id} indexed under another id")
            _check(
                order_id in self.account(order.trader).orders, f"order {order_id} not in its trader's index"
            )
            _check(order.leaves >= 0 and order.cum >= 0, f"order {order_id} has negative quantities")
            _check(order.leaves + order.cum == order.size, f"order {order_id}: leaves + cum != size")
            _check(order.leaves > 0 or order.amend is not None, f"finished order {order_id} still open")
            need = order.requirement()
            _check(
                (order.reserved_usdc, order.reserved_inventory) == (need.usdc, need.inventory),
                f"order {order_id} holds {order.reserved_usdc}/{order.reserved_inventory},"
                f" requirement {need.usdc}/{need.inventory}",
            )
            reserved[order.trader] = reserved.get(order.trader, 0) + order.reserved_usdc
            key = (order.trader, order.market)
            reserved_lots[key] = reserved_lots.get(key, 0) + order.reserved_inventory
        locked: dict[str, int] = {}
        for (trader, symbol), position in self.positions.items():
            _check(position.basis >= 0 and position.collateral >= 0, f"{trader} {symbol}: negative position")
            if position.size == 0:
                _check(position.basis == 0 and position.collateral == 0, f"{trader} {symbol}: flat but holds")
            definition = markets[symbol].definition
            if definition.kind is MarketKind.OPTION:
                cap = writer_collateral_per_lot(definition) * max(0, -position.size)
                _check(position.collateral <= cap, f"{trader} {symbol}: collateral above the writer rule")
            else:
                _check(position.collateral <= position.basis, f"{trader} {symbol}: collateral above basis")
            locked[trader] = locked.get(trader, 0) + position.collateral
        total = 0
        for trader, account in self.accounts.items():
            _check(account.free >= 0, f"{trader}: negative free balance {account.free}")
            _check(account.reserved == reserved.get(trader, 0), f"{trader}: reserved out of step")
            _check(account.withdrawing == sum(account.withdrawals.values()), f"{trader}: withdrawing")
            _check(account.locked == locked.get(trader, 0), f"{trader}: locked out of step")
            _check(all(a > 0 for a in account.withdrawals.values()), f"{trader}: empty withdrawal")
            total += account.free + account.reserved + account.withdrawing + account.locked
        _check(set(locked) <= set(self.accounts), "a position without an account")
        _check(
            sum(len(ids) for ids in self.trader_deposit_ids.values()) == len(self.deposit_ids),
            "deposit ids out of step with their traders",
        )
        _check(self.fees >= 0, f"FEES is negative: {self.fees}")
        total += self.fees + self.clearing + self.insurance
        _check(
            total == self.deposited - self.withdrawn,
            f"USDC does not balance: buckets {total}"
            f" != deposited {self.deposited} − withdrawn {self.withdrawn}",
        )
        lots: dict[str, int] = dict(self.clearing_inventory)
        for (trader, symbol), holding in self.holdings.items():
            _check(holding.held >= 0, f"{trader} {symbol}: negative holding")
            _check(
                holding.reserved == reserved_lots.get((trader, symbol), 0),
                f"{trader} {symbol}: reserved lots",
            )
            lots[symbol] = lots.get(symbol, 0) + holding.held + holding.reserved
        for symbol in set(lots) | set(self.synth_supply):
            _check(
                lots.get(symbol, 0) == self.synth_supply.get(symbol, 0),
                f"{symbol}: synth lots {lots.get(symbol, 0)} != supply {self.synth_supply.get(symbol, 0)}",
            )

    def state(self) -> tuple[object, ...]:
        """Every field in a canonical order (for hashing and comparison)."""
        return (
            sorted(
                (t, a.snapshot(), sorted(a.withdrawals.items()), sorted(a.orders))
                for t, a in self.accounts.items()
            ),
            sorted(
                (
                    o.order_id,
                    o.command_id,
                    o.trader,
                    o.market,
                    o.side.value,
                    o.price,
                    o.size,
                    o.leaves,
                    o.cum,
                    o.reduce_only,
                    (o.rates.usdc, o.rates.inventory),
                    o.reserved_usdc,
                    o.reserved_inventory,
                    None
                    if o.amend is None
                    else (o.amend.command_id, o.amend.price, o.amend.size, o.amend.rates.usdc),
                    o.liquidation,
                )
                for o in self.orders.values()
            ),
            sorted((k, p.size, p.basis, p.collateral, p.realized_pnl) for k, p in self.positions.items()),
            sorted((k, h.held, h.reserved) for k, h in self.holdings.items()),
            (self.fees, self.clearing, self.insurance, self.deposited, self.withdrawn),
            sorted(self.clearing_inventory.items()),
            sorted(self.synth_supply.items()),
            sorted(self.deposit_ids),
        )

    def state_hash(self) -> str:
        return hashlib.blake2b(repr(self.state()).encode(), digest_size=16).hexdigest()


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise LedgerInvariantError(message)
