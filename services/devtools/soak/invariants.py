"""What must hold after a soak, however often its parts died: checks over the logs. Pure.

Each check takes what the soak driver saw (the orders it sent, the answers it got, the poison it
wrote) and what the topics hold (read from offset 0, read_committed), and says whether the
exchange kept its word, with a few examples when it did not:

=============================  ==================================================================
check                          holds when
=============================  ==================================================================
orders decided exactly once    every order the gateway acknowledged (any 2xx answer) was decided
                               once: accepted or rejected by the matcher in trade.log, or
                               rejected by risk in accounts.events — one of them, one time
no order decided twice         no order id, acknowledged or not, was decided more than once
no order from nowhere          every order decided in the logs is one the driver sent
no fill twice                  no (market, trade id, order id) fill and no (market, trade id)
                               trade appears twice in trade.log
no fill without its order      every fill's order was accepted in trade.log
answers match the log          no order the trader was told was refused — by the gateway (4xx)
                               or as a duplicate (the retry of one the exchange took) — is in fact
                               accepted in trade.log
only injected poison           dead.letters holds exactly the poison the driver wrote: each one
                               dead-lettered (by at least one consumer group), nothing else
=============================  ==================================================================
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from services.common.codes import MatcherReject, RiskReject
from services.common.records import (
    AccountEvent,
    DeadLetter,
    FundingApplied,
    MarketSettled,
    OrderAccepted,
    OrderFilled,
    OrderRejected,
    TradeExecuted,
    TradeLogEntry,
)

EXAMPLES = 3
"""Offending items shown per failed check."""
DUPLICATE_CODES = frozenset({
    RiskReject.DUPLICATE_ORDER_ID, RiskReject.NONCE_REUSED, MatcherReject.DUPLICATE_ORDER_ID,
})  # fmt: skip
"""The refusal of a command seen before: it decides nothing about the order it repeats."""
ABOUT_ANOTHER_COMMAND = DUPLICATE_CODES | {
    RiskReject.UNKNOWN_ORDER, RiskReject.AMEND_PENDING, MatcherReject.UNKNOWN_ORDER,
    MatcherReject.AMEND_WOULD_CROSS, MatcherReject.INVALID_AMEND,
}  # fmt: skip
"""Refusals that name an order but refuse another command — its repeat, or a cancel or amend of
it (an order filled before its cancel arrived is refused UNKNOWN_ORDER): no decision about it."""


@dataclass(frozen=True, slots=True)
class Check:
    """One invariant's verdict."""

    name: str
    ok: bool
    detail: str

    def describe(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Poison:
    """A record the driver wrote straight onto a topic, which its consumers must dead-letter."""

    topic: str
    value: bytes


def _verdict(name: str, offending: list[str], checked: int, what: str) -> Check:
    if not offending:
        return Check(name, True, f"{checked} {what}")
    examples = ", ".join(offending[:EXAMPLES])
    return Check(name, False, f"{len(offending)} of {checked} {what}, e.g. {examples}")


@dataclass(frozen=True, slots=True)
class LogFacts:
    """What trade.log and accounts.events say about orders and fills, counted."""

    decided: Counter[str]
    """Order id → how many times it was decided (accepted, or rejected by the matcher or risk); a
    refusal `ABOUT_ANOTHER_COMMAND` counts only for an order nothing else decided."""
    accepted: frozenset[str]
    fills: Counter[tuple[str, int, str]]
    """(market, trade id, order id) → occurrences."""
    trades: Counter[tuple[str, int]]
    settled: frozenset[str] = frozenset()
    """Markets that expired and settled."""
    funding_rounds: int = 0
    """Funding payments applied, over all perpetuals."""

    @classmethod
    def of(cls, entries: Iterable[TradeLogEntry], account_events: Iterable[AccountEvent]) -> LogFacts:
        decided: Counter[str] = Counter()
        duplicates: set[str] = set()
        accepted: set[str] = set()
        fills: Counter[tuple[str, int, str]] = Counter()
        trades: Counter[tuple[str, int]] = Counter()
        settled: set[str] = set()
        funding_rounds = 0
        for entry in entries:
            for event in entry.events:
                if isinstance(event, OrderAccepted):
                    decided[event.order_id] += 1
                    accepted.add(event.order_id)
                elif isinstance(event, OrderRejected) and event.order_id is not None:
                    _rejected(event, decided, duplicates)
                elif isinstance(event, OrderFilled):
                    fills[(entry.market, event.trade_id, event.order_id)] += 1
                elif isinstance(event, TradeExecuted):
                    trades[(entry.market, event.trade_id)] += 1
                elif isinstance(event, MarketSettled):
                    settled.add(entry.market)
                elif isinstance(event, FundingApplied):
                    funding_rounds += 1
        for account_event in account_events:
            body = account_event.body
            if isinstance(body, OrderRejected) and body.order_id is not None:
                _rejected(body, decided, duplicates)
        for order_id in duplicates - set(decided):
            decided[order_id] = 1
        return cls(decided, frozenset(accepted), fills, trades, frozenset(settled), funding_rounds)


def _rejected(event: OrderRejected, decided: Counter[str], duplicates: set[str]) -> None:
    assert event.order_id is not None
    if event.reason_code in ABOUT_ANOTHER_COMMAND:
        duplicates.add(event.order_id)
    else:
        decided[event.order_id] += 1


def order_checks(
    acknowledged: Mapping[str, int | None],
    refused: Collection[str],
    sent: Collection[str],
    facts: LogFacts,
) -> list[Check]:
    """The order and fill invariants, for the order ids the driver `sent`, those the gateway
    `acknowledged` (2xx; order id → the rejection code it answered, None if it did not reject) and
    those it `refused` (4xx)."""
    told_refused = [oid for oid, code in acknowledged.items() if code in DUPLICATE_CODES]
    contradicted = [oid for oid in [*told_refused, *refused] if oid in facts.accepted]
    once = [oid for oid in acknowledged if facts.decided[oid] != 1]
    twice = [oid for oid in sent if facts.decided[oid] > 1]
    sent_ids = set(sent)
    strangers = [oid for oid in facts.decided if oid not in sent_ids]
    double_fills = [f"{m}#{t}/{o}" for (m, t, o), n in facts.fills.items() if n > 1]
    double_trades = [f"{m}#{t}" for (m, t), n in facts.trades.items() if n > 1]
    orphans = [f"{m}#{t}/{o}" for (m, t, o) in facts.fills if o not in facts.accepted]
    return [
        _verdict("orders decided exactly once", once, len(acknowledged), "acknowledged orders"),
        _verdict("no order decided twice", twice, len(sent), "orders sent"),
        _verdict("no order from nowhere", strangers, len(facts.decided), "orders in the logs"),
        _verdict(
            "no fill twice",
            double_fills + double_trades,
            len(facts.fills) + len(facts.trades),
            "fills and trades",
        ),
        _verdict("no fill without its order", orphans, len(facts.fills), "fills"),
        _verdict("answers match the log", contradicted, len(acknowledged) + len(refused), "orders answered"),
    ]


def dead_letter_check(injected: Iterable[Poison], letters: Iterable[DeadLetter]) -> Check:
    """dead.letters holds the injected poison, all of it, and nothing else."""
    wanted = {(p.topic, p.value) for p in injected}
    found = Counter((letter.source_topic, letter.value or b"") for letter in letters)
    unexpected = [f"{topic}: {value[:24]!r}" for (topic, value) in found if (topic, value) not in wanted]
    missing = [
        f"{topic}: {value[:24]!r} not dead-lettered"
        for (topic, value) in wanted
        if (topic, value) not in found
    ]
    offending = unexpected + missing
    return _verdict("only injected poison", offending, len(wanted), "poison records injected")


def summary(checks: Iterable[Check]) -> Mapping[str, bool]:
    """Check name → held (for the JSON report)."""
    return {check.name: check.ok for check in checks}
