"""One oracle round: every source's items in, one `IndexPrice` per index out, and the new state.

Pure and deterministic: the round's time comes in as an argument, the state goes out as a value.

TWAP windows. A round at `t` publishes, for each window `w`, the TWAP of the index's step series
(each index price holds from its round until the next, `services.common.twap`) over the `w`
seconds that end with the round's own microsecond: [t + 1 − w·10⁶, t + 1). The round's own price is
in the window (it counts in `samples` and weighs 1 µs), so the first round's TWAP is its price.
A round without an index price adds nothing to the series: the previous price holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from services.common.records import IndexPrice, IndexTwap, OracleQuote, QuoteStatus
from services.common.twap import twap
from services.oracle.core.policy import US, OraclePolicy
from services.oracle.core.verdicts import median, reject_deviating, reject_jumps, screen
from services.oracle.ports import SourceFailure, SourceQuote

Sample = tuple[int, int]
"""(round time µs, index price × 1e9): one point of an index's step series."""


class ClockWentBack(Exception):
    """A round not after the previous one: its ts_event would break the per-index time order."""


@dataclass(frozen=True, slots=True)
class OracleState:
    """Per index, the recent index prices the TWAPs need; and the time of the last round."""

    history: Mapping[str, tuple[Sample, ...]] = field(default_factory=dict)
    """Ascending in time; only what the longest window needs (and the price holding into it)."""
    last_round_us: int | None = None


@dataclass(frozen=True, slots=True)
class Round:
    """What a round produced: the records to publish, and the state after them."""

    state: OracleState
    prices: list[IndexPrice]


def run_round(
    policy: OraclePolicy, state: OracleState, now_us: int, items: Sequence[SourceQuote | SourceFailure]
) -> Round:
    """Judge every item, price every index seen (sorted by symbol), update the TWAP history."""
    if state.last_round_us is not None and now_us <= state.last_round_us:
        raise ClockWentBack(f"round at {now_us} µs is not after the last one at {state.last_round_us} µs")
    by_index: dict[str, list[OracleQuote]] = {}
    for item in items:
        by_index.setdefault(item.index_symbol, []).append(screen(policy, now_us, item))
    history = dict(state.history)
    prices = []
    for symbol in sorted(by_index):
        samples = history.get(symbol, ())
        quotes = reject_jumps(
            policy, reject_deviating(policy, by_index[symbol]), samples[-1][1] if samples else None
        )
        price = index_price(policy, quotes)
        if price is not None:
            samples = prune(policy, (*samples, (now_us, price)), now_us)
            history[symbol] = samples
        prices.append(
            IndexPrice(
                index_symbol=symbol,
                ts_event=now_us,
                price_e9=price,
                quotes=quotes,
                twaps=twaps(policy, samples, now_us),
            )
        )
    return Round(OracleState(history, now_us), prices)


def index_price(policy: OraclePolicy, quotes: Iterable[OracleQuote]) -> int | None:
    """The median of the ACCEPTED quotes; None with fewer than `min_sources` of them."""
    accepted = [q.price_e9 for q in quotes if q.status is QuoteStatus.ACCEPTED]
    return median(accepted) if len(accepted) >= policy.min_sources else None


def twaps(policy: OraclePolicy, samples: Sequence[Sample], now_us: int) -> list[IndexTwap]:
    """The configured TWAPs at the round `now_us` (windows as in the module docstring)."""
    end = now_us + 1
    found = []
    for window_s in policy.twap_windows_s:
        start = end - window_s * US
        found.append(
            IndexTwap(
                window_s=window_s,
                price_e9=twap(samples, start, end),
                samples=sum(1 for ts, _ in samples if start <= ts < end),
            )
        )
    return found


def prune(policy: OraclePolicy, samples: tuple[Sample, ...], now_us: int) -> tuple[Sample, ...]:
    """`samples` without those no window can reach: keep the last one at or before the longest
    window's start (its price holds into the window), and everything after."""
    cutoff = now_us + 1 - policy.longest_window_us
    first = 0
    while first + 1 < len(samples) and samples[first + 1][0] <= cutoff:
        first += 1
    return samples[first:]


def remember(policy: OraclePolicy, state: OracleState, record: IndexPrice) -> OracleState:
    """The state after a round read back from oracle.prices (rebuilding after a restart).

    Idempotent: a record at or before an index's last sample (a re-published round) changes nothing.
    """
    last_round = max(record.ts_event, state.last_round_us or record.ts_event)
    samples = state.history.get(record.index_symbol, ())
    if record.price_e9 is None or (samples and record.ts_event <= samples[-1][0]):
        return OracleState(state.history, last_round)
    pruned = prune(policy, (*samples, (record.ts_event, record.price_e9)), record.ts_event)
    return OracleState({**state.history, record.index_symbol: pruned}, last_round)
