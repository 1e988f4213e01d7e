"""The verdict on each quote of a round, and the median that makes the index.

Rules, in order; the first that matches decides (docs/oracle.md has the same table):

| # | status         | when                                                              |
|---|----------------|-------------------------------------------------------------------|
| 1 | UNAVAILABLE    | the source could not be read (a `SourceFailure`)                  |
| 2 | INVALID        | price ≤ 0                                                         |
| 3 | INVALID        | published more than `max_future_skew_s` after the round           |
| 4 | STALE          | published more than `max_age_s` before the round                  |
| 5 | INVALID        | confidence < 0                                                    |
| 6 | LOW_CONFIDENCE | confidence × 10 000 > `max_confidence_bps` × price                |
| 7 | DEVIATING      | |price − m| × 10 000 > `max_deviation_bps` × m, m = median of the  |
|   |                | quotes that passed 1–6 for the same index                         |
| 8 | DEVIATING      | |price − L| × 10 000 > `max_jump_bps` × L, L = the index's last     |
|   |                | price, when fewer than `jump_quorum` quotes passed 1–7            |
| 9 | ACCEPTED       | otherwise                                                         |

The index is the median of the ACCEPTED quotes. Rule 8 is the jump guard: one source alone (or
all the sources there are, if fewer than the quorum) cannot move the index further than
`max_jump_bps` in one round — a garbage tick, a decimal error or a 50 % spike is refused with its
reason, and the index holds. Enough independent sources agreeing can move it; with a single
source configured a real move that large needs an operator (raise the limit, or add sources).

Rule 7 is one pass: the reference m includes the
outliers themselves, which a median shrugs off as long as they are fewer than half; two quotes
that disagree by more than the threshold leave no majority, and both are DEVIATING.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from msgspec.structs import replace

from services.common.records import OracleQuote, QuoteStatus
from services.common.twap import round_half_down
from services.oracle.core.policy import BPS, US, OraclePolicy
from services.oracle.ports import SourceFailure, SourceQuote

Check = Callable[[OraclePolicy, int, SourceQuote], str | None]
"""One rule: (policy, round time µs, quote) → the reason the quote fails it, or None."""


def _not_positive(policy: OraclePolicy, now_us: int, q: SourceQuote) -> str | None:
    return f"price {q.price_e9} <= 0" if q.price_e9 <= 0 else None


def _from_the_future(policy: OraclePolicy, now_us: int, q: SourceQuote) -> str | None:
    ahead = q.published_at_us - now_us
    if ahead > policy.max_future_skew_s * US:
        return f"published {ahead // 1000} ms after the round (skew allowed {policy.max_future_skew_s} s)"
    return None


def _too_old(policy: OraclePolicy, now_us: int, q: SourceQuote) -> str | None:
    age = now_us - q.published_at_us
    if age > policy.max_age_s * US:
        return f"published {age // 1000} ms before the round (max age {policy.max_age_s} s)"
    return None


def _negative_confidence(policy: OraclePolicy, now_us: int, q: SourceQuote) -> str | None:
    conf = q.confidence_e9
    return f"confidence {conf} < 0" if conf is not None and conf < 0 else None


def _too_uncertain(policy: OraclePolicy, now_us: int, q: SourceQuote) -> str | None:
    conf = q.confidence_e9
    if conf is not None and conf * BPS > policy.max_confidence_bps * q.price_e9:
        return (
            f"confidence {conf} is {conf * BPS // q.price_e9} bps of price {q.price_e9} "
            f"(max {policy.max_confidence_bps} bps)"
        )
    return None


RULES: tuple[tuple[QuoteStatus, Check], ...] = (
    (QuoteStatus.INVALID, _not_positive),
    (QuoteStatus.INVALID, _from_the_future),
    (QuoteStatus.STALE, _too_old),
    (QuoteStatus.INVALID, _negative_confidence),
    (QuoteStatus.LOW_CONFIDENCE, _too_uncertain),
)
"""Rules 2–6 of the module table, checked in order on each quote on its own."""


def screen(policy: OraclePolicy, now_us: int, item: SourceQuote | SourceFailure) -> OracleQuote:
    """The verdict of rules 1–6 on one item: ACCEPTED here means "goes on to the median"."""
    if isinstance(item, SourceFailure):
        return OracleQuote(
            source=item.source, feed=item.feed, price_e9=0, confidence_e9=None, published_at=0,
            status=QuoteStatus.UNAVAILABLE, reason=item.reason,
        )  # fmt: skip
    status, reason = QuoteStatus.ACCEPTED, ""
    for rule_status, check in RULES:
        failed = check(policy, now_us, item)
        if failed is not None:
            status, reason = rule_status, failed
            break
    return OracleQuote(
        source=item.source, feed=item.feed, price_e9=item.price_e9, confidence_e9=item.confidence_e9,
        published_at=item.published_at_us, status=status, reason=reason,
    )  # fmt: skip


def reject_deviating(policy: OraclePolicy, quotes: Sequence[OracleQuote]) -> list[OracleQuote]:
    """Rule 7 on one index's screened quotes: those too far from the median become DEVIATING."""
    usable = [q.price_e9 for q in quotes if q.status is QuoteStatus.ACCEPTED]
    if not usable:
        return list(quotes)
    reference = median(usable)
    return _too_far(
        quotes,
        reference,
        policy.max_deviation_bps,
        lambda bps: f"{bps} bps from the median {reference} (max {policy.max_deviation_bps} bps)",
    )


def reject_jumps(policy: OraclePolicy, quotes: Sequence[OracleQuote], last: int | None) -> list[OracleQuote]:
    """Rule 8 on one index's quotes after rule 7: too far from the last index price `last`."""
    passed = [q for q in quotes if q.status is QuoteStatus.ACCEPTED]
    if last is None or len(passed) >= policy.jump_quorum:
        return list(quotes)
    return _too_far(
        quotes,
        last,
        policy.max_jump_bps,
        lambda bps: (
            f"jumped {bps} bps from the last index {last} "
            f"(max {policy.max_jump_bps} bps unless {policy.jump_quorum} sources agree)"
        ),
    )


def _too_far(
    quotes: Sequence[OracleQuote], reference: int, limit_bps: int, reason: Callable[[int], str]
) -> list[OracleQuote]:
    """The ACCEPTED quotes further than `limit_bps` from `reference` turned DEVIATING, with `reason`
    of their distance in basis points (rounded down)."""
    judged = []
    for q in quotes:
        distance = abs(q.price_e9 - reference)
        if q.status is QuoteStatus.ACCEPTED and distance * BPS > limit_bps * reference:
            judged.append(
                replace(q, status=QuoteStatus.DEVIATING, reason=reason(distance * BPS // reference))
            )
        else:
            judged.append(q)
    return judged


def median(values: Sequence[int]) -> int:
    """The median; of an even count, the mean of the two middle values rounded half down.

    >>> median([3, 1, 2]), median([1, 2, 3, 4]), median([1, 2])
    (2, 2, 1)
    """
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return round_half_down(ordered[middle - 1] + ordered[middle], 2)
