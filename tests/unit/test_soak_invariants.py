"""The soak's invariants catch what they claim to catch: lost, doubled, orphaned and invented orders
and fills, answers that contradict the log, and dead letters that are not the injected poison."""

from __future__ import annotations

from services.common.records import (
    AccountEvent,
    DeadLetter,
    LiquiditySide,
    OrderAccepted,
    OrderFilled,
    OrderRejected,
    OrderType,
    Side,
    TimeInForce,
    TradeExecuted,
    TradeLogEntry,
)
from services.devtools.soak.invariants import LogFacts, Poison, dead_letter_check, order_checks

ALICE, BOB = "0x" + "a" * 40, "0x" + "b" * 40
MARKET = "BTC-PERP"


def accepted(order_id: str, trader: str = ALICE) -> OrderAccepted:
    return OrderAccepted(
        order_id=order_id, client_order_id=order_id, trader=trader, side=Side.BUY, order_type=OrderType.LIMIT,
        price=650_000, size=1, time_in_force=TimeInForce.GTC, post_only=False, reduce_only=False,
    )  # fmt: skip


def filled(order_id: str, trade_id: int, trader: str = ALICE) -> OrderFilled:
    return OrderFilled(
        order_id=order_id, trader=trader, trade_id=trade_id, side=Side.BUY,
        liquidity_side=LiquiditySide.MAKER, last_px=650_000, last_qty=1, cum_qty=1, leaves_qty=0, fee=0,
    )  # fmt: skip


def trade(trade_id: int, maker: str, taker: str) -> TradeExecuted:
    return TradeExecuted(
        trade_id=trade_id, price=650_000, size=1, aggressor_side=Side.SELL, maker_order_id=maker,
        maker_trader=ALICE, taker_order_id=taker, taker_trader=BOB, notional=65_000_000, maker_fee=0,
        taker_fee=0,
    )  # fmt: skip


def rejected(order_id: str, code: int) -> OrderRejected:
    return OrderRejected(order_id=order_id, trader=ALICE, reason_code=code, reason="refused")


def entry(*events: object, seq: int = 1) -> TradeLogEntry:
    return TradeLogEntry(market=MARKET, first_seq=seq, source="matcher", command_id=f"c{seq}", ts_event=seq,
                         events=list(events))  # type: ignore[arg-type]  # fmt: skip


def risk_rejection(order_id: str, code: int) -> AccountEvent:
    return AccountEvent(event_id=f"e-{order_id}", trader=ALICE, ts_event=1, body=rejected(order_id, code))


def a_clean_day() -> list[TradeLogEntry]:
    """o1 rests, o2 crosses it: one trade, two fills."""
    return [
        entry(accepted("o1"), seq=1),
        entry(accepted("o2", BOB), filled("o1", 7), filled("o2", 7, BOB), trade(7, "o1", "o2"), seq=2),
    ]


def verdicts(
    acknowledged: dict[str, int | None], sent: set[str], facts: LogFacts, refused: tuple[str, ...] = ()
) -> dict[str, bool]:
    return {check.name: check.ok for check in order_checks(acknowledged, refused, sent, facts)}


def test_a_clean_log_passes_every_order_check() -> None:
    # State: two acknowledged orders, one risk rejection; Action: check; Expectation: all hold.
    facts = LogFacts.of(a_clean_day(), [risk_rejection("o3", 2001)])
    assert all(verdicts({"o1": None, "o2": None, "o3": 2001}, {"o1", "o2", "o3"}, facts).values())


def test_an_acknowledged_order_missing_from_the_log_is_lost() -> None:
    facts = LogFacts.of(a_clean_day(), [])
    result = verdicts({"o1": None, "o2": None, "o9": None}, {"o1", "o2", "o9"}, facts)
    assert result["orders decided exactly once"] is False


def test_an_order_accepted_twice_and_a_fill_logged_twice_are_caught() -> None:
    # State: the day's log with its second entry written again (a duplicate transaction).
    log = a_clean_day()
    facts = LogFacts.of([*log, log[1]], [])
    result = verdicts({"o1": None, "o2": None}, {"o1", "o2"}, facts)
    assert result["orders decided exactly once"] is False
    assert result["no order decided twice"] is False
    assert result["no fill twice"] is False


def test_a_fill_of_an_order_never_accepted_is_an_orphan() -> None:
    facts = LogFacts.of(
        [entry(accepted("o2", BOB), filled("o1", 7), filled("o2", 7, BOB), trade(7, "o1", "o2"))], []
    )
    assert verdicts({"o2": None}, {"o1", "o2"}, facts)["no fill without its order"] is False


def test_an_order_nobody_sent_is_from_nowhere() -> None:
    facts = LogFacts.of(a_clean_day(), [])
    assert verdicts({"o1": None}, {"o1"}, facts)["no order from nowhere"] is False


def test_a_retry_refused_as_a_duplicate_decides_nothing_but_its_answer_is_a_contradiction() -> None:
    # State: o1 accepted, then its retry refused by risk as a duplicate, and that refusal answered.
    facts = LogFacts.of(a_clean_day(), [risk_rejection("o1", 2007)])
    result = verdicts({"o1": 2007, "o2": None}, {"o1", "o2"}, facts)
    # Expectation: still decided once; but the trader was told "rejected" about a live order.
    assert result["orders decided exactly once"] is True
    assert result["answers match the log"] is False


def test_an_order_the_gateway_refused_must_not_be_in_the_log() -> None:
    # State: o2 answered 4xx (say, a retry refused as a reused nonce) yet accepted in the log.
    facts = LogFacts.of(a_clean_day(), [])
    assert verdicts({"o1": None}, {"o1", "o2"}, facts, refused=("o2",))["answers match the log"] is False


def test_a_cancel_refused_because_the_order_had_filled_decides_nothing() -> None:
    # State: o1 filled, then a cancel of it refused UNKNOWN_ORDER (the refusal names o1).
    facts = LogFacts.of([*a_clean_day(), entry(rejected("o1", 3020), seq=3)], [])
    assert verdicts({"o1": None, "o2": None}, {"o1", "o2"}, facts)["no order decided twice"] is True


def test_a_duplicate_refusal_alone_is_the_order_s_decision() -> None:
    # A nonce reused by a new order: the refusal is all there is, and it counts once.
    facts = LogFacts.of([], [risk_rejection("o5", 2013)])
    assert verdicts({"o5": 2013}, {"o5"}, facts)["orders decided exactly once"] is True


def letter(topic: str, value: bytes, group: str = "g") -> DeadLetter:
    return DeadLetter(
        source_topic=topic, source_partition=0, source_offset=1, value=value, consumer_group=group,
        reason_code="UNDECODABLE", reason="bad", ts_dead_lettered=1,
    )  # fmt: skip


def test_dead_letters_must_be_exactly_the_injected_poison() -> None:
    # State: two poison records injected, one dead-lettered by two groups.
    poison = [Poison("t1", b"p1"), Poison("t2", b"p2")]
    both = [letter("t1", b"p1", "a"), letter("t1", b"p1", "b"), letter("t2", b"p2")]
    # Expectation: all dead-lettered → holds; one missing, or a stranger present → fails.
    assert dead_letter_check(poison, both).ok
    assert not dead_letter_check(poison, both[:2]).ok
    assert not dead_letter_check(poison, [*both, letter("t3", b"real record")]).ok
