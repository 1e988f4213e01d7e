"""The derivatives lifecycle on the running stack: oracle → funding/expiry → matcher → risk → read model.

Everything is real and runs in threads of this process on the session's Kafka and Cassandra: the
oracle polls the simulated feed every second, the funding/expiry service marks every market each
round and funds BTC-PERP every 2 seconds, a future and a call option expire a few seconds after
listing and settle, and a short opened far below the index is watched by risk.
"""

from __future__ import annotations

import time
from collections import Counter
from functools import partial
from typing import Any

from cassandra.cluster import Session
from msgspec.structs import replace

from services.common.binding import to_avro
from services.common.bus import Bus, Outbound, TypedProducer
from services.common.records import (
    CreateMarket,
    MarketKind,
    MarketStatus,
    MatcherCommand,
    OptionType,
    Side,
    TraderCommand,
)
from services.common.settings import Settings
from services.common.topics import ACCOUNTS_EVENTS, MATCHER_COMMANDS, OPTIONS_IV, ORDERS_COMMANDS, TRADE_LOG
from services.funding.service import FundingService
from services.oracle.adapters.clock import system_clock
from services.oracle.service import OracleService
from services.oracle.wiring import policy_from, sources_from
from services.projector import queries
from services.projector.service import ReadModelProjector
from tests.integration.stack import exchange
from tests.integration.test_risk_service import Tail
from tests.kit import ALICE, BOB, CAROL, btc_perp, deposit_event, limit_order, order_id, trader_address

USDC = 1_000_000
DAVE, ERIN = trader_address(0xDA7E), trader_address(0xE121)
PERP, FUTURE, CALL = "BTC-PERP", "BTC-FUT", "BTC-FUT-60000-C"


def _lifecycle_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "oracle_interval_s": 1,
            "oracle_simulated": "BTC-USD=65000",
            "funding_interval_s": 2,
            "settlement_window_s": 2,
            "mark_basis_rounds": 3,
        }
    )


def _markets(expiry_us: int) -> list[Any]:
    perp = btc_perp()
    future = replace(perp, market=FUTURE, kind=MarketKind.FUTURE, expiry=expiry_us)
    call = replace(future, market=CALL, kind=MarketKind.OPTION, strike=600_000, option_type=OptionType.CALL)
    return [perp, future, call]


def _orders(now_us: int) -> list[tuple[str, str, Side, int, int]]:
    """(trader, market, side, lots, price): Alice long and Bob short everywhere at the index; Dave
    short 1 perp lot at 35,000 (far below the index: a loss near his collateral); then Carol quotes
    above the index, so the mark's basis — and the funding rate — are positive. (The simulated index
    wanders up to ±9 % from 65,000 with the time of day: her mid, 72,100, is above it at any hour.)"""
    return [
        (BOB, PERP, Side.SELL, 2, 650_000),
        (ALICE, PERP, Side.BUY, 2, 650_000),
        (DAVE, PERP, Side.SELL, 1, 350_000),
        (ERIN, PERP, Side.BUY, 1, 350_000),
        (CAROL, PERP, Side.BUY, 1, 720_000),
        (CAROL, PERP, Side.SELL, 1, 722_000),
        (BOB, FUTURE, Side.SELL, 1, 650_000),
        (ALICE, FUTURE, Side.BUY, 1, 650_000),
        (BOB, CALL, Side.SELL, 1, 10_000),
        (ALICE, CALL, Side.BUY, 1, 10_000),
    ]


def _prepare(bus: Bus, log: Tail, now_us: int, expiry_us: int) -> None:
    producer = TypedProducer(bus)
    for n, definition in enumerate(_markets(expiry_us)):
        create = MatcherCommand(
            command_id=order_id(9_000_000 + n), market=definition.market, ts_init=now_us,
            body=CreateMarket(definition=definition),
        )  # fmt: skip
        producer.send(Outbound(MATCHER_COMMANDS, key=definition.market, value=to_avro(create)))
    for n, trader in enumerate((ALICE, BOB, CAROL, DAVE, ERIN)):
        deposit = deposit_event(trader=trader, amount=10_000 * USDC, n=n, ts_event=now_us)
        producer.send(Outbound(ACCOUNTS_EVENTS, key=trader, value=deposit))
    producer.flush()
    time.sleep(2)  # listings and deposits first: risk refuses orders on markets it does not know yet
    for n, (trader, market, side, lots, price) in enumerate(_orders(now_us), start=1):
        ts = now_us + 3_000_000 + n * 1_000
        body = limit_order(n, side, lots, price, market=market, nonce=ts)
        command = TraderCommand(command_id=order_id(8_000_000 + n), trader=trader, ts_init=ts, body=body)
        producer.send(Outbound(ORDERS_COMMANDS, key=trader, value=to_avro(command)))
        producer.flush()
        # One at a time, each in the book before the next: traders' commands pass risk on their own
        # partitions, so two sent back to back may reach the matcher in either order.
        log.until(partial(_logged, oid=body.order_id), timeout_s=30)


def _logged(entries: list[Any], oid: str) -> bool:
    return any(body.get("order_id") == oid for e in entries for _, body in e.value["events"])


def _bodies(records: list[Any], name: str) -> list[dict[str, Any]]:
    return [body for r in records for kind, body in [r.value["body"]] if kind == f"exchange.cxpt.{name}"]


def _log_events(entries: list[Any], name: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e.value["market"], body)
        for e in entries
        for kind, body in e.value["events"]
        if kind == f"exchange.cxpt.{name}"
    ]


def test_funding_accrues_expiries_settle_and_a_short_near_its_limit_is_alerted(
    settings: Settings, bus: Bus, cassandra_session: Session
) -> None:
    # State: the stack with the oracle and funding/expiry on short clocks; three markets listed
    # now, the future and the option expiring 10 s from now; positions opened on each.
    settings = _lifecycle_settings(settings)
    bus = Bus(settings)
    now_us = time.time_ns() // 1_000
    expiry_us = (now_us // 1_000_000 + 10) * 1_000_000
    oracle = OracleService(bus, sources_from(settings, system_clock), policy_from(settings))
    funding = FundingService(Bus(settings))
    projector = ReadModelProjector(Bus(settings), cassandra_session)
    log, accounts, iv = Tail(bus, TRADE_LOG), Tail(bus, ACCOUNTS_EVENTS), Tail(bus, OPTIONS_IV)
    try:
        with exchange(settings, oracle, funding, projector):
            _prepare(bus, log, now_us, expiry_us)

            # Action: time passes. Expectation: two funding intervals applied on the perpetual, each
            # once; both expiring markets settled.
            def done(entries: list[Any]) -> bool:
                # (before Carol quotes, the book has no mid above the index: a rate of 0, nothing paid)
                paying = [b for m, b in _log_events(entries, "FundingApplied") if m == PERP and b["rate_e9"]]
                settled = {m for m, _ in _log_events(entries, "MarketSettled")}
                return len(paying) >= 2 and settled == {FUTURE, CALL}

            entries = log.until(done, timeout_s=60)
            funded = Counter(
                b["interval_start"] for m, b in _log_events(entries, "FundingApplied") if m == PERP
            )
            assert all(count == 1 for count in funded.values()), funded
            assert all(b["rate_e9"] >= 0 for _, b in _log_events(entries, "FundingApplied"))

            # Expectation: Alice (long) paid and Bob (short) received each interval; risk settled both
            # expired positions to 0 and alerted Dave.
            def booked(records: list[Any]) -> bool:
                paid = {(b["trader"], b["interval_end"]) for b in _bodies(records, "FundingPaid")}
                flat = {
                    (b["trader"], b["market"]) for b in _bodies(records, "PositionChanged") if b["size"] == 0
                }
                alerted = {b["trader"] for b in _bodies(records, "LiquidationAlert")}
                return (
                    sum(1 for t, _ in paid if t == ALICE) >= 2
                    and {(ALICE, FUTURE), (BOB, FUTURE), (ALICE, CALL), (BOB, CALL)} <= flat
                    and DAVE in alerted
                )

            records = accounts.until(booked, timeout_s=30)
            for payment in _bodies(records, "FundingPaid"):
                assert (payment["amount"] < 0) == (payment["size"] > 0), payment  # longs pay a positive rate
            alert = next(b for b in _bodies(records, "LiquidationAlert") if b["trader"] == DAVE)
            assert alert["loss_bps"] >= 8_000 and alert["size"] == -1

            # Expectation: the read model shows the marks, the funding rate and the settlements.
            def projected() -> dict[str, Any]:
                return {m.market: m for m in queries.markets(cassandra_session, settings.cassandra_keyspace)}

            deadline = time.monotonic() + 20
            while (
                not (rows := projected()) or rows.get(FUTURE) is None or rows[FUTURE].settlement_price is None
            ):
                assert time.monotonic() < deadline, "settlement not projected"
                time.sleep(0.5)
            assert rows[PERP].mark_price and rows[PERP].funding_rate_e9
            assert rows[FUTURE].status is MarketStatus.SETTLED and rows[CALL].status is MarketStatus.SETTLED

            # Expectation: the option trade's implied volatility is on options.iv, once. (Premium
            # 1,000 USDC for a call 3,600 USDC in the money: below intrinsic, so no σ fits.)
            ivs = iv.until(bool, timeout_s=10)
            assert [(r.value["market"], r.value["trade_id"]) for r in ivs] == [(CALL, 1)]
            assert ivs[0].value["implied_vol"] is None and ivs[0].value["failure"] == "BELOW_INTRINSIC"
    finally:
        for tail in (log, accounts, iv):
            tail.close()
