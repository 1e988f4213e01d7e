"""Replay protection: the window, the per-signer set, pruning, snapshots (whole, and one signer at a
time as risk keeps them) — and, whatever the sequence of commands, no nonce accepted twice for a
signer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codes import GatewayReject
from services.common.nonces import (
    ACCEPTED,
    Accepted,
    NonceInvariantError,
    NonceRejected,
    ReplayGuard,
)
from tests.unit.gateway.kit import ALICE, BOB, DAY, MINUTE, NOW

EXPIRED = NonceRejected(GatewayReject.SIGNATURE_EXPIRED)
REUSED = NonceRejected(GatewayReject.NONCE_REUSED)
TOO_OLD = NonceRejected(GatewayReject.NONCE_TOO_OLD)
TOO_FAR_AHEAD = NonceRejected(GatewayReject.NONCE_TOO_FAR_AHEAD)


@pytest.fixture
def guard() -> Iterator[ReplayGuard]:
    guard = ReplayGuard()
    yield guard
    guard.validate()


def guard_alice_full_with_nonces_now_minus_99_to_now() -> ReplayGuard:
    """Alice has used the 100 nonces NOW − 99 … NOW (µs apart): her set is full, its smallest NOW − 99."""
    guard = ReplayGuard()
    for nonce in range(NOW - 99, NOW + 1):
        assert guard.use(ALICE, nonce, NOW, deadline=NOW) == ACCEPTED
    return guard


# -- the window ---------------------------------------------------------------------------------------


class WindowCase(NamedTuple):
    nonce: int
    deadline: int
    expected: Accepted | NonceRejected


@pytest.mark.parametrize(
    "case",
    [
        WindowCase(NOW, NOW + MINUTE, ACCEPTED),
        WindowCase(NOW, NOW, ACCEPTED),  # the deadline itself is still in time
        WindowCase(NOW, NOW - 1, EXPIRED),
        WindowCase(NOW - 2 * DAY, NOW, ACCEPTED),
        WindowCase(NOW - 2 * DAY - 1, NOW, TOO_OLD),
        WindowCase(NOW + DAY, NOW + 2 * DAY, ACCEPTED),
        WindowCase(NOW + DAY + 1, NOW + 2 * DAY, TOO_FAR_AHEAD),
        WindowCase(0, NOW, TOO_OLD),
        # An expired deadline wins over a bad nonce: re-signing fixes both.
        WindowCase(NOW + DAY + 1, NOW - 1, EXPIRED),
    ],
    ids=repr,
)
def test_the_window_around_the_command_time(guard: ReplayGuard, case: WindowCase) -> None:
    # State: a guard that has seen nothing.  Action / Expectation:
    assert guard.use(ALICE, case.nonce, NOW, deadline=case.deadline) == case.expected


def test_without_a_deadline_only_the_nonce_is_checked(guard: ReplayGuard) -> None:
    """Risk's call: the Avro command carries no deadline (the gateway checked it)."""
    assert guard.use(ALICE, NOW, NOW, deadline=None) == ACCEPTED
    assert guard.use(ALICE, NOW, NOW, deadline=None) == REUSED
    assert guard.use(ALICE, NOW - 2 * DAY - 1, NOW, deadline=None) == TOO_OLD
    assert guard.use(ALICE, NOW + DAY + 1, NOW, deadline=None) == TOO_FAR_AHEAD


def test_a_nonce_is_accepted_once_per_signer(guard: ReplayGuard) -> None:
    # Action: Alice uses a nonce, then again; Bob uses the same number.
    first = guard.use(ALICE, NOW, NOW, deadline=NOW + MINUTE)
    again = guard.use(ALICE, NOW, NOW + 1, deadline=NOW + MINUTE)
    bob = guard.use(BOB, NOW, NOW, deadline=NOW + MINUTE)

    # Expectation: nonces are per signer.
    assert (first, again, bob) == (ACCEPTED, REUSED, ACCEPTED)


def test_check_changes_nothing_and_record_refuses_what_check_refuses(guard: ReplayGuard) -> None:
    # Action: two checks of the same nonce.
    assert guard.check(ALICE, NOW, NOW, deadline=NOW) == ACCEPTED
    assert guard.check(ALICE, NOW, NOW, deadline=NOW) == ACCEPTED
    guard.record(ALICE, NOW)

    # Expectation: recording it twice is a bug, not a business refusal.
    assert guard.check(ALICE, NOW, NOW, deadline=NOW) == REUSED
    with pytest.raises(NonceInvariantError):
        guard.record(ALICE, NOW)


# -- the per-signer set ------------------------------------------------------------------------------


def test_nonces_may_arrive_out_of_order_until_the_set_is_full(guard: ReplayGuard) -> None:
    for nonce in (NOW, NOW - 5, NOW + 3, NOW - 1):
        assert guard.use(ALICE, nonce, NOW, deadline=NOW) == ACCEPTED


def test_a_full_set_refuses_below_its_smallest_and_evicts_it_for_a_new_one() -> None:
    # State: Alice's set is full, smallest NOW − 99.
    guard = guard_alice_full_with_nonces_now_minus_99_to_now()

    # Action / Expectation: below the smallest is too old; inside the set is reused.
    assert guard.use(ALICE, NOW - 100, NOW, deadline=NOW) == TOO_OLD
    assert guard.use(ALICE, NOW - 99, NOW, deadline=NOW) == REUSED

    # Action: a new, higher nonce.
    assert guard.use(ALICE, NOW + 1, NOW, deadline=NOW) == ACCEPTED

    # Expectation: the old smallest was evicted, and is now refused as too old, never re-accepted.
    assert guard.use(ALICE, NOW - 99, NOW, deadline=NOW) == TOO_OLD
    assert guard.use(ALICE, NOW - 98, NOW, deadline=NOW) == REUSED
    assert guard.export_state()["signers"][0][1] == list(range(NOW - 98, NOW + 2))
    guard.validate()


def test_a_gap_above_the_smallest_of_a_full_set_can_still_be_filled() -> None:
    # State: Alice's full set skips NOW − 50.
    guard = ReplayGuard(capacity=3)
    for nonce in (NOW - 60, NOW - 40, NOW):
        guard.use(ALICE, nonce, NOW, deadline=NOW)

    # Action / Expectation: the gap is fresh; it evicts NOW − 60.
    assert guard.use(ALICE, NOW - 50, NOW, deadline=NOW) == ACCEPTED
    assert guard.use(ALICE, NOW - 60, NOW, deadline=NOW) == TOO_OLD


# -- pruning ----------------------------------------------------------------------------------------


def test_prune_forgets_signers_whose_nonces_the_window_refuses_anyway(guard: ReplayGuard) -> None:
    # State: Alice signed three days ago, Bob an hour ago.
    guard.use(ALICE, NOW - 3 * DAY, NOW - 3 * DAY, deadline=NOW)
    guard.use(BOB, NOW - 60 * MINUTE, NOW, deadline=NOW)

    # Action.
    dropped = guard.prune(NOW)

    # Expectation: only Alice is forgotten.
    assert (dropped, len(guard)) == (1, 1)
    assert guard.floor == NOW - 2 * DAY


def test_a_pruned_nonce_stays_refused_even_for_an_earlier_clock(guard: ReplayGuard) -> None:
    # State: Alice's nonce was pruned at NOW + 2 days + 1 µs.
    guard.use(ALICE, NOW, NOW, deadline=NOW + 3 * DAY)
    guard.prune(NOW + 2 * DAY + 1)

    # Action: a replay stamped by a gateway whose clock lags by 2 µs (its window would allow it).
    replay = guard.use(ALICE, NOW, NOW + 2 * DAY - 1, deadline=NOW + 3 * DAY)

    # Expectation: the floor refuses it.
    assert replay == TOO_OLD


def test_prune_signer_forgets_one_signers_old_nonces_and_keeps_them_refused(guard: ReplayGuard) -> None:
    # State: Alice signed three days ago and an hour ago; Bob three days ago.
    guard.use(ALICE, NOW - 3 * DAY, NOW - 3 * DAY, deadline=None)
    guard.use(ALICE, NOW - 60 * MINUTE, NOW, deadline=None)
    guard.use(BOB, NOW - 3 * DAY, NOW - 3 * DAY, deadline=None)

    # Action.
    forgotten = guard.prune_signer(ALICE, NOW)

    # Expectation: only Alice's old nonce is gone; Bob and the guard's floor are untouched.
    assert forgotten == 1
    assert guard.export_signer(ALICE) == {"floor": NOW - 2 * DAY, "nonces": [NOW - 60 * MINUTE]}
    assert guard.export_signer(BOB) == {"floor": 0, "nonces": [NOW - 3 * DAY]}
    assert guard.floor == 0
    # A replay stamped three days ago (a clock whose window would allow it) is still refused.
    assert guard.use(ALICE, NOW - 3 * DAY, NOW - 3 * DAY, deadline=None) == TOO_OLD


def test_prune_signer_keeps_the_floor_of_a_signer_it_empties(guard: ReplayGuard) -> None:
    guard.use(ALICE, NOW, NOW, deadline=None)

    guard.prune_signer(ALICE, NOW + 2 * DAY + 1)

    assert len(guard) == 0
    assert guard.signers() == [ALICE]
    assert guard.export_signer(ALICE) == {"floor": NOW + 1, "nonces": []}
    assert guard.use(ALICE, NOW, NOW + 2 * DAY - 1, deadline=None) == TOO_OLD


def test_eviction_raises_the_signers_floor_past_the_evicted_nonce() -> None:
    # State: Alice's set (capacity 3) is full; a fourth nonce evicts the smallest.
    guard = ReplayGuard(capacity=3)
    for nonce in (NOW - 60, NOW - 40, NOW, NOW + 1):
        guard.use(ALICE, nonce, NOW, deadline=None)

    # Expectation: her part stands on its own — a guard with a larger capacity still refuses it.
    assert guard.export_signer(ALICE) == {"floor": NOW - 59, "nonces": [NOW - 40, NOW, NOW + 1]}
    larger = ReplayGuard(capacity=100)
    larger.import_signer(ALICE, guard.export_signer(ALICE))
    assert larger.use(ALICE, NOW - 60, NOW, deadline=None) == TOO_OLD
    assert larger.use(ALICE, NOW - 50, NOW, deadline=None) == ACCEPTED  # never used: a gap


# -- snapshots ---------------------------------------------------------------------------------------


def test_export_import_signer_by_signer_gives_the_same_hash_and_answers() -> None:
    # State.
    guard = guard_alice_full_with_nonces_now_minus_99_to_now()
    guard.use(BOB, NOW - 3 * DAY, NOW - 3 * DAY, deadline=None)
    guard.use(BOB, NOW, NOW, deadline=None)
    guard.prune_signer(BOB, NOW)

    # Action: every signer's part into a fresh guard, as risk recovers traders from its changelog.
    restored = ReplayGuard()
    for signer in guard.signers():
        restored.import_signer(signer, guard.export_signer(signer))

    # Expectation.
    assert restored.state_hash() == guard.state_hash()
    for signer, nonce in [(ALICE, NOW - 100), (ALICE, NOW), (BOB, NOW - 3 * DAY), (BOB, NOW + 1)]:
        assert restored.check(signer, nonce, NOW, deadline=None) == guard.check(
            signer, nonce, NOW, deadline=None
        )


def test_import_signer_replaces_and_none_clears(guard: ReplayGuard) -> None:
    guard.use(ALICE, NOW, NOW, deadline=None)

    guard.import_signer(ALICE, {"floor": 0, "nonces": [NOW + 1]})
    assert guard.export_signer(ALICE) == {"floor": 0, "nonces": [NOW + 1]}
    guard.import_signer(ALICE, None)
    assert guard.export_signer(ALICE) is None
    assert guard.signers() == []


@pytest.mark.parametrize(
    "corrupt",
    [
        {"floor": 0, "nonces": [NOW, NOW - 1]},
        {"floor": 0, "nonces": [NOW, NOW]},
        {"floor": NOW + 1, "nonces": [NOW]},
        {"floor": 0, "nonces": list(range(101))},
    ],
    ids=["unsorted", "duplicated", "below-floor", "over-capacity"],
)
def test_import_signer_refuses_a_corrupt_part(corrupt: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="nonce state of"):
        ReplayGuard().import_signer(ALICE, corrupt)


def test_export_import_gives_the_same_hash_and_the_same_answers() -> None:
    # State.
    guard = guard_alice_full_with_nonces_now_minus_99_to_now()
    guard.use(BOB, NOW, NOW, deadline=NOW)
    guard.prune(NOW - DAY)

    # Action.
    restored = ReplayGuard.import_state(guard.export_state())

    # Expectation.
    assert restored.state_hash() == guard.state_hash()
    assert restored.export_state() == guard.export_state()
    for signer, nonce in [(ALICE, NOW - 100), (ALICE, NOW), (ALICE, NOW + 1), (BOB, NOW), (BOB, NOW + 1)]:
        assert restored.check(signer, nonce, NOW, deadline=NOW) == guard.check(
            signer, nonce, NOW, deadline=NOW
        )


def test_the_hash_changes_with_the_state(guard: ReplayGuard) -> None:
    empty = guard.state_hash()
    guard.use(ALICE, NOW, NOW, deadline=NOW)

    assert guard.state_hash() != empty


@pytest.mark.parametrize(
    "corrupt",
    [
        {"format": 2},
        {"signers": [[ALICE, [NOW, NOW - 1]]]},  # unsorted
        {"signers": [[ALICE, [NOW, NOW]]]},  # duplicated
        {"signers": [[ALICE, []]]},  # an empty set is never kept
        {"capacity": 1, "signers": [[ALICE, [NOW - 1, NOW]]]},  # over capacity
        {"floor": NOW + 1, "signers": [[ALICE, [NOW]]]},  # below the floor
        {"floors": [[ALICE, NOW + 1]], "signers": [[ALICE, [NOW]]]},  # below the signer's floor
        {"floor": NOW, "floors": [[ALICE, NOW]]},  # a signer's floor not above the guard's
    ],
    ids=[
        "format",
        "unsorted",
        "duplicated",
        "empty",
        "over-capacity",
        "below-floor",
        "below-signer-floor",
        "redundant-signer-floor",
    ],
)
def test_import_refuses_a_corrupt_state(corrupt: dict[str, object]) -> None:
    state = ReplayGuard().export_state() | corrupt

    with pytest.raises(ValueError, match="nonce state"):
        ReplayGuard.import_state(state)


# -- properties -----------------------------------------------------------------------------------

SIGNERS = [ALICE, BOB]
clock_moves = st.integers(min_value=-2, max_value=3)  # may go back: several gateways stamp ts_init
steps = st.lists(
    st.one_of(
        # a new nonce near the clock
        st.tuples(st.just("use"), st.integers(min_value=-25, max_value=12), clock_moves),
        # a replay of any nonce tried before (accepted, refused or evicted since)
        st.tuples(st.just("replay"), st.integers(min_value=0), clock_moves),
        st.tuples(st.just("prune"), st.just(0), clock_moves),
        st.tuples(st.just("prune_signer"), st.just(0), clock_moves),
        st.tuples(st.just("snapshot"), st.just(0), st.just(0)),
        st.tuples(st.just("snapshot_signers"), st.just(0), st.just(0)),
    ),
    max_size=200,
)


@settings(max_examples=400, deadline=None)
@given(
    steps=steps,
    signers=st.lists(st.sampled_from(SIGNERS), min_size=200, max_size=200),
    capacity=st.integers(1, 6),
)
def test_no_nonce_is_ever_accepted_twice_for_a_signer(
    steps: list[tuple[str, int, int]], signers: list[str], capacity: int
) -> None:
    # State: a small set and a 20 µs window (2 days and 1 day scaled down) so that every rule fires.
    guard = ReplayGuard(capacity=capacity, max_age_us=20, max_ahead_us=10)
    now = 1_000
    tried: list[tuple[str, int]] = []
    accepted: set[tuple[str, int]] = set()

    for (action, number, clock_move), new_signer in zip(steps, signers, strict=False):
        now += clock_move
        if action == "use" or (action == "replay" and tried):
            signer, nonce = (new_signer, now + number) if action == "use" else tried[number % len(tried)]
            tried.append((signer, nonce))
            if guard.use(signer, nonce, now, deadline=now) == ACCEPTED:
                # Expectation: never twice.
                assert (signer, nonce) not in accepted
                accepted.add((signer, nonce))
        elif action == "prune":
            guard.prune(now)
        elif action == "prune_signer":
            guard.prune_signer(new_signer, now)
        elif action == "snapshot":
            guard = ReplayGuard.import_state(guard.export_state())
        elif action == "snapshot_signers":  # the way risk keeps it: one part per signer
            restored = ReplayGuard(capacity=capacity, max_age_us=20, max_ahead_us=10)
            restored.floor = guard.floor
            for signer in guard.signers():
                restored.import_signer(signer, guard.export_signer(signer))
            assert restored.state_hash() == guard.state_hash()
            guard = restored
        guard.validate()


@settings(max_examples=100, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=1, max_value=DAY), min_size=1, max_size=300),
    lag=st.integers(min_value=-DAY, max_value=2 * DAY),
    per_signer=st.booleans(),
)
def test_increasing_nonces_inside_the_window_are_always_accepted(
    gaps: list[int], lag: int, per_signer: bool
) -> None:
    """Liveness: a client stamping nonces from its clock, however far that clock is off within the
    window, is never refused."""
    guard = ReplayGuard()
    nonce = NOW
    for gap in gaps:
        nonce += gap
        now = nonce + lag  # the exchange's clock, `lag` behind or ahead of the client's
        assert guard.use(ALICE, nonce, now, deadline=now) == ACCEPTED
        if per_signer:
            guard.prune_signer(ALICE, now)
        else:
            guard.prune(now)
    guard.validate()
