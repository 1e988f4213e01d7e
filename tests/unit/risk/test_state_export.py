"""Export → import of the risk state (what the risk service's changelog stores) loses nothing.

An engine cut anywhere in a random history, exported per trader and per partition through JSON and
imported again, has the same `state_hash()`, validates, and answers the rest of the history exactly
as the original does.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.binding import from_avro, to_avro
from services.common.records import AccountEvent, RiskStateRecord, Side
from services.common.serde import AvroSerde, ManifestRegistry
from services.risk.core import (
    BalanceChanged,
    ChangeReason,
    InsuranceDrawn,
    InventoryChanged,
    PositionChanged,
    PositionUnderCollateralized,
    RiskEngine,
    RiskEvent,
    ShortfallReason,
)
from services.risk.core.state import (
    export_order,
    export_partition,
    export_state,
    export_trader,
    import_state,
    traders,
)
from services.risk.service import (
    CODEC,
    ORDER_KEY,
    PARTITION_KEY,
    decode_payload,
    encode_payload,
    event_record,
)
from tests.kit import ALICE, BOB, CAROL, btc_perp, order_id
from tests.unit.risk.exchange import USDC, Exchange
from tests.unit.risk.test_property import _new_exchange, _run, deliveries, scenarios


def _feed(engine: RiskEngine, inputs: list[tuple[str, Any]]) -> list[Any]:
    """Apply recorded inputs (as `Exchange.inputs` holds them); returns every output, in order."""
    outputs: list[Any] = []
    for kind, item in inputs:
        if kind == "command":
            outputs.append(engine.apply_command(item))
        elif kind == "posting":
            outputs.append(engine.apply_posting(item))
        elif kind == "deposit":
            outputs.append(engine.apply_deposit(*item))
        elif kind == "synth":
            outputs.append(engine.apply_synth_deposit(*item))
        elif kind == "paid":
            outputs.append(engine.apply_withdrawal_paid(*item))
        elif kind == "failed":
            outputs.append(engine.apply_withdrawal_failed(*item))
    return outputs


def _through_json(engine: RiskEngine) -> RiskEngine:
    partition, per_trader, orders = json.loads(json.dumps(export_state(engine)))
    return import_state(partition, per_trader, orders)


def test_a_trader_with_orders_positions_and_an_amendment_in_flight_round_trips() -> None:
    # State: Alice long 2 lots, Bob short 2, Carol with a resting bid, an amendment and a
    # withdrawal in flight (the matcher lags, so the amendment is not answered yet).
    x = Exchange(btc_perp(), in_flight=True)
    for trader in (ALICE, BOB, CAROL):
        x.deposit(trader, 1_000 * USDC)
    x.place(BOB, "BTC-PERP", Side.SELL, 2, 650_000)
    x.place(ALICE, "BTC-PERP", Side.BUY, 2, 650_000)
    bid = x.place(CAROL, "BTC-PERP", Side.BUY, 1, 640_000).order_id
    x.deliver()
    x.amend(CAROL, "BTC-PERP", bid, new_price=641_000, new_size=3)
    x.withdraw(ALICE, 10 * USDC, withdrawal_id="w1")
    # Action: export and import.
    copy = _through_json(x.risk)
    # Expectation: same hash, valid, the same traders, and each trader exports identically.
    assert copy.state_hash() == x.risk.state_hash()
    copy.validate()
    assert traders(copy) == traders(x.risk) == sorted((ALICE, BOB, CAROL))
    assert all(export_trader(copy, t) == export_trader(x.risk, t) for t in traders(copy))
    assert export_partition(copy) == export_partition(x.risk)
    # And the copy applies the matcher's answer to the amendment as the original does.
    assert x.queue, "the amendment is still in flight"
    before = len(x.inputs)
    x.deliver()
    assert _feed(copy, x.inputs[before:])
    assert copy.state_hash() == x.risk.state_hash()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios, deliveries, st.integers(1, 7))
def test_a_changelog_of_touched_orders_only_rebuilds_the_live_state(
    steps: list[tuple[Any, ...]], lag: list[int | None], batch: int
) -> None:
    # State: a random history, fed in batches of `batch` inputs, as the service does.
    x = _new_exchange(in_flight=True)
    for k, action in enumerate(steps):
        _run(x, action, k)
        x.deliver(lag[k])
    x.deliver()
    engine = RiskEngine()
    changelog: dict[str, Any] = {}
    for start in range(0, len(x.inputs), batch):
        _feed(engine, x.inputs[start : start + batch])
        # Action: what the service writes after a batch — every trader (the service writes the
        # touched ones), and only the orders the engine says it touched (tombstones for closed).
        for trader in traders(engine):
            changelog[trader] = export_trader(engine, trader)
        for touched in engine.drain_touched_orders():
            order = export_order(engine, touched)
            if order is None:
                changelog.pop(f"order:{touched}", None)
            else:
                changelog[f"order:{touched}"] = order
        # Expectation: the changelog alone rebuilds the live state, after every batch.
        orders = [v for k, v in changelog.items() if k.startswith("order:")]
        rebuilt = import_state(
            export_partition(engine), [v for k, v in changelog.items() if k[:6] != "order:"], orders
        )
        assert rebuilt.state_hash() == engine.state_hash()


def test_an_empty_engine_and_an_unknown_trader_round_trip() -> None:
    engine = RiskEngine()
    assert import_state(None, []).state_hash() == engine.state_hash() == _through_json(engine).state_hash()
    assert export_trader(engine, ALICE)["account"] is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios, deliveries, st.integers(0, 10**6))
def test_export_import_anywhere_in_a_random_history_behaves_identically(
    steps: list[tuple[Any, ...]], lag: list[int | None], cut: int
) -> None:
    # State: a random history through risk and a lagging matcher, recorded input by input.
    x = _new_exchange(in_flight=True)
    for k, action in enumerate(steps):
        _run(x, action, k)
        x.deliver(lag[k])
    x.deliver()
    k = cut % (len(x.inputs) + 1)
    original = RiskEngine()
    _feed(original, x.inputs[:k])
    # Action: cut there, export through JSON, import.
    copy = _through_json(original)
    # Expectation: the same state, valid; then the same outputs and states for the rest.
    assert copy.state_hash() == original.state_hash()
    assert export_state(copy) == export_state(original)
    copy.validate()
    assert _feed(copy, x.inputs[k:]) == _feed(original, x.inputs[k:])
    assert copy.state_hash() == original.state_hash() == x.risk.state_hash()


# -- what the service writes: the changelog payload and the events as AccountEvent records ----------


def test_the_changelog_payload_and_record_round_trip_through_avro() -> None:
    x = Exchange(btc_perp())
    x.deposit(ALICE, 100 * USDC)
    x.place(ALICE, "BTC-PERP", Side.BUY, 1, 650_000)
    serde = AvroSerde(ManifestRegistry(), "RiskStateRecord")
    partition, (alice,), (order,) = export_state(x.risk)
    records = {}
    states = (
        (PARTITION_KEY.format(3), partition),
        (ALICE, alice),
        (ORDER_KEY.format(order["order_id"]), order),
    )
    for key, state in states:
        record = RiskStateRecord(key=key, codec=CODEC, payload=encode_payload(state))
        decoded: RiskStateRecord = from_avro(RiskStateRecord, serde.decode(serde.encode(to_avro(record))))
        records[decoded.key] = decode_payload(decoded.codec, decoded.payload)
    order_state = records.pop(ORDER_KEY.format(order["order_id"]))
    copy = import_state(records.pop(PARTITION_KEY.format(3)), records.values(), [order_state])
    assert copy.state_hash() == x.risk.state_hash()


def test_every_core_event_becomes_an_account_event_body() -> None:
    # State: one event of each kind the core emits. Expectation: each encodes as an AccountEvent
    # body and decodes to the same values (reasons as their names).
    serde = AvroSerde(ManifestRegistry(), "AccountEvent")
    ids: dict[str, Any] = {"trader": ALICE, "market": "BTC-PERP", "order_id": order_id(1), "trade_id": 7}
    samples: list[RiskEvent] = [
        BalanceChanged(
            trader=ALICE, free=1, reserved=2, withdrawing=3, locked=4, delta_free=-5,
            reason=ChangeReason.ORDER_FILLED, ref=order_id(1),
        ),
        InventoryChanged(
            trader=ALICE, market="BTC-USDC", held=3, reserved=1, delta_held=2,
            reason=ChangeReason.SYNTH_DEPOSIT, ref="d1",
        ),
        PositionChanged(
            **ids, size=-3, delta_size=-3, basis=10, collateral=9, realized_pnl=-2, last_px=650_000
        ),
        InsuranceDrawn(**ids, amount=11, reason=ShortfallReason.LOSS_BEYOND_COLLATERAL),
        PositionUnderCollateralized(**ids, shortfall=12),
    ]  # fmt: skip
    for event in samples:
        record = AccountEvent(event_id="e", trader=ALICE, ts_event=1, body=event_record(event))
        decoded = from_avro(AccountEvent, serde.decode(serde.encode(to_avro(record))))
        assert decoded == record
        assert type(decoded.body).__name__ == type(event).__name__
        fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
        assert {k: getattr(decoded.body, k) for k in fields} == {
            k: str(v) if isinstance(v, ChangeReason | ShortfallReason) else v for k, v in fields.items()
        }
