"""Export and import of a risk engine's state as plain data, one trader and one order at a time.

The risk service keeps its state in a compacted changelog (one record per trader, one per open
order, one per partition), so the state splits in three:

* **trader state** (`export_trader`): the trader's USDC buckets and pending withdrawals,
  positions, synth holdings, the ids of the deposits credited to them (the dedupe set, split by
  trader so it does not grow a shared record) and the nonces they signed (their part of the replay
  guard: at most 100, and a floor);
* **order state** (`export_order`): one open order with its reservation and in-flight amendment —
  apart from its trader, so a batch writes only the orders it changed, not every open order of a
  market maker with hundreds of quotes (`None` once the order is closed: a tombstone);
* **partition state** (`export_partition`): everything not owned by one trader — the markets,
  the per-market trade-log watermarks, the exchange accounts (FEES, CLEARING, INSURANCE), synth
  lots in clearing and deposited, and the deposit/withdrawal totals.

Both are JSON-ready (dicts, lists, str, int, bool, None). `import_state(partition, traders)`
rebuilds an engine with the same `state_hash()` that behaves identically afterwards. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.common.binding import from_avro, to_avro
from services.common.records import MarketDefinition, MarketStatus, Side
from services.risk.core.engine import RiskEngine
from services.risk.core.ledger import Account, Holding, Market, Order, PendingAmend, Position
from services.risk.core.rules import Rates

FORMAT = 3
"""Version of the exported layout; `import_state` reads it and the ones in `READABLE`."""
READABLE = frozenset({1, 2, FORMAT})
"""1: before trader states carried `nonces` (read as none spent); 1–2: trader states carried their
open orders (and the account their ids), read as if exported as order states."""

TraderState = dict[str, Any]
OrderState = dict[str, Any]
PartitionState = dict[str, Any]


def traders(engine: RiskEngine) -> list[str]:
    """Every trader the engine holds any state for, sorted."""
    ledger = engine.ledger
    found = set(ledger.accounts)
    found.update(o.trader for o in ledger.orders.values())
    found.update(t for t, _ in ledger.positions)
    found.update(t for t, _ in ledger.holdings)
    found.update(ledger.trader_deposit_ids)
    found.update(engine.nonces.signers())
    return sorted(found)


def export_trader(engine: RiskEngine, trader: str) -> TraderState:
    """Everything the engine holds for `trader` but their open orders (no account if nothing)."""
    ledger = engine.ledger
    account = ledger.accounts.get(trader)
    return {
        "format": FORMAT,
        "trader": trader,
        "account": None
        if account is None
        else {
            "free": account.free,
            "reserved": account.reserved,
            "withdrawing": account.withdrawing,
            "locked": account.locked,
            "withdrawals": [[wid, amount] for wid, amount in account.withdrawals.items()],
        },
        "positions": [
            [market, p.size, p.basis, p.collateral, p.realized_pnl]
            for (t, market), p in ledger.positions.items()
            if t == trader
        ],
        "deposit_ids": list(ledger.trader_deposit_ids.get(trader, [])),
        "holdings": [
            [market, h.held, h.reserved] for (t, market), h in ledger.holdings.items() if t == trader
        ],
        "nonces": engine.nonces.export_signer(trader),
    }


def export_order(engine: RiskEngine, order_id: str) -> OrderState | None:
    """One open order's state, or None if the engine holds no such order (it closed)."""
    order = engine.ledger.orders.get(order_id)
    return None if order is None else _export_order(order) | {"format": FORMAT}


def export_partition(engine: RiskEngine) -> PartitionState:
    """The engine's state that belongs to no single trader."""
    ledger = engine.ledger
    return {
        "format": FORMAT,
        "markets": [
            {"definition": to_avro(m.definition), "status": m.status.value, "mark_price": m.mark_price}
            for m in engine.markets.values()
        ],
        "last_seq": [[market, seq] for market, seq in engine.last_seq.items()],
        "fees": ledger.fees,
        "clearing": ledger.clearing,
        "insurance": ledger.insurance,
        "clearing_inventory": [[m, lots] for m, lots in ledger.clearing_inventory.items()],
        "synth_supply": [[m, lots] for m, lots in ledger.synth_supply.items()],
        "deposited": ledger.deposited,
        "withdrawn": ledger.withdrawn,
    }


def export_state(engine: RiskEngine) -> tuple[PartitionState, list[TraderState], list[OrderState]]:
    """The whole state: the partition part, one part per trader, one per open order."""
    orders = [_export_order(o) | {"format": FORMAT} for o in engine.ledger.orders.values()]
    return export_partition(engine), [export_trader(engine, t) for t in traders(engine)], orders


def import_state(
    partition: PartitionState | None,
    trader_states: Iterable[TraderState],
    order_states: Iterable[OrderState] = (),
) -> RiskEngine:
    """A new engine holding exactly the exported state (`partition` None: a fresh partition)."""
    engine = RiskEngine()
    ledger = engine.ledger
    if partition is not None:
        _check_format(partition)
        for item in partition["markets"]:
            definition: MarketDefinition = from_avro(MarketDefinition, item["definition"])
            engine.markets[definition.market] = Market(
                definition, MarketStatus(item["status"]), item.get("mark_price", 0)
            )
        engine.last_seq = {market: seq for market, seq in partition["last_seq"]}
        ledger.fees = partition["fees"]
        ledger.clearing = partition["clearing"]
        ledger.insurance = partition["insurance"]
        ledger.clearing_inventory = {m: lots for m, lots in partition["clearing_inventory"]}
        ledger.synth_supply = {m: lots for m, lots in partition["synth_supply"]}
        ledger.deposited = partition["deposited"]
        ledger.withdrawn = partition["withdrawn"]
    for state in trader_states:
        _import_trader(engine, state)
    for state in order_states:
        _check_format(state)
        _import_order_into(engine, _import_order(state))
    return engine


def _import_order_into(engine: RiskEngine, order: Order) -> None:
    engine.ledger.orders[order.order_id] = order
    engine.ledger.account(order.trader).orders[order.order_id] = None


def _import_trader(engine: RiskEngine, state: TraderState) -> None:
    _check_format(state)
    ledger = engine.ledger
    trader: str = state["trader"]
    if state["account"] is not None:
        a = state["account"]
        ledger.accounts[trader] = Account(
            free=a["free"],
            reserved=a["reserved"],
            withdrawing=a["withdrawing"],
            locked=a["locked"],
            withdrawals={wid: amount for wid, amount in a["withdrawals"]},
        )
    for item in state.get("orders", ()):  # formats 1-2 kept a trader's open orders in their record
        _import_order_into(engine, _import_order(item))
    for market, size, basis, collateral, realized_pnl in state["positions"]:
        ledger.positions[(trader, market)] = Position(size, basis, collateral, realized_pnl)
    for market, held, reserved in state["holdings"]:
        ledger.holdings[(trader, market)] = Holding(held, reserved)
    if state["deposit_ids"]:
        ledger.trader_deposit_ids[trader] = list(state["deposit_ids"])
        ledger.deposit_ids.update(state["deposit_ids"])
    engine.nonces.import_signer(trader, state.get("nonces"))


def _export_order(o: Order) -> dict[str, Any]:
    return {
        "order_id": o.order_id,
        "command_id": o.command_id,
        "trader": o.trader,
        "market": o.market,
        "side": o.side.value,
        "price": o.price,
        "size": o.size,
        "leaves": o.leaves,
        "cum": o.cum,
        "reduce_only": o.reduce_only,
        "rates": [o.rates.usdc, o.rates.inventory],
        "reserved_usdc": o.reserved_usdc,
        "reserved_inventory": o.reserved_inventory,
        "amend": None
        if o.amend is None
        else {
            "command_id": o.amend.command_id,
            "price": o.amend.price,
            "size": o.amend.size,
            "rates": [o.amend.rates.usdc, o.amend.rates.inventory],
        },
        "liquidation": o.liquidation,
    }


def _import_order(d: dict[str, Any]) -> Order:
    amend = d["amend"]
    return Order(
        order_id=d["order_id"],
        command_id=d["command_id"],
        trader=d["trader"],
        market=d["market"],
        side=Side(d["side"]),
        price=d["price"],
        size=d["size"],
        leaves=d["leaves"],
        cum=d["cum"],
        reduce_only=d["reduce_only"],
        rates=Rates(*d["rates"]),
        reserved_usdc=d["reserved_usdc"],
        reserved_inventory=d["reserved_inventory"],
        amend=None
        if amend is None
        else PendingAmend(amend["command_id"], amend["price"], amend["size"], Rates(*amend["rates"])),
        liquidation=d.get("liquidation", False),  # absent before liquidations existed
    )


def _check_format(state: dict[str, Any]) -> None:
    if state.get("format") not in READABLE:
        raise ValueError(f"risk state format {state.get('format')!r}, expected one of {sorted(READABLE)}")
