"""Idempotency-Key: the fingerprint, the decision table, per-trader scoping, and the claim/finish
flow over the store port (a memory store here; Cassandra implements the same port)."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.codes import GatewayReject
from services.gateway.core.idempotency import (
    COMPLETED_TTL_S,
    IN_FLIGHT_TTL_S,
    IN_PROGRESS,
    INVALID_KEY,
    KEY_REUSED,
    Decision,
    IdempotencyEntry,
    IdempotencyState,
    IdempotencyStore,
    IdempotentRequest,
    JsonValue,
    Proceed,
    Replay,
    begin,
    check_key,
    decide,
    fingerprint,
    finish,
    recover,
)
from services.gateway.stores import CassandraAnswers, LocalIdempotencyStore, TieredIdempotencyStore
from tests.unit.gateway.kit import ALICE, BOB, MemoryIdempotencyStore

# Both implementations satisfy the port (checked by mypy, which runs on the tests).
IMPLEMENTATIONS: tuple[type[IdempotencyStore], ...] = (LocalIdempotencyStore, TieredIdempotencyStore)

KEY = "3f1b0c9e-order-1"
ORDER_BODY: dict[str, JsonValue] = {"market": "BTC-PERP", "side": "BUY", "price": 650005, "size": 3}
ACCEPTED_202 = (202, b'{"order_id":"01a205b3-d000-7000-8000-000000000001"}')


def alice_posts_order(key: str = KEY, body: JsonValue = ORDER_BODY) -> IdempotentRequest:
    """Alice POSTs /v1/orders with Idempotency-Key `key`."""
    return IdempotentRequest(trader=ALICE, key=key, method="POST", path="/v1/orders", body=body)


def bob_posts_order() -> IdempotentRequest:
    """Bob POSTs the same body under the same key as Alice."""
    return IdempotentRequest(trader=BOB, key=KEY, method="POST", path="/v1/orders", body=ORDER_BODY)


# -- fingerprint ------------------------------------------------------------------------------------


def test_the_fingerprint_ignores_key_order_and_method_case() -> None:
    reordered = dict(reversed(list(ORDER_BODY.items())))

    assert fingerprint("post", "/v1/orders", reordered) == fingerprint("POST", "/v1/orders", ORDER_BODY)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/orders", ORDER_BODY),
        ("POST", "/v1/orders/", ORDER_BODY),
        ("POST", "/v1/orders", ORDER_BODY | {"size": 4}),
        ("POST", "/v1/orders", ORDER_BODY | {"size": 3.0}),  # JSON 3 and 3.0 are different requests
        ("POST", "/v1/orders", None),
    ],
)
def test_the_fingerprint_changes_with_method_path_or_body(method: str, path: str, body: JsonValue) -> None:
    assert fingerprint(method, path, body) != fingerprint("POST", "/v1/orders", ORDER_BODY)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(body=st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_the_fingerprint_is_a_function_of_the_json_value_not_its_insertion_order(
    body: dict[str, JsonValue],
) -> None:
    reversed_body = dict(reversed(list(body.items())))

    assert fingerprint("POST", "/p", reversed_body) == fingerprint("POST", "/p", body)
    assert len(fingerprint("POST", "/p", body)) == 64


# -- the decision table ---------------------------------------------------------------------------------


def entry(
    state: IdempotencyState, request: IdempotentRequest, *, status: int = 0, body: bytes = b""
) -> IdempotencyEntry:
    return IdempotencyEntry(request.trader, request.key, request.fingerprint, state, status, body)


class DecisionCase(NamedTuple):
    stored: IdempotencyEntry | None
    request: IdempotentRequest
    expected: Decision


FIRST = alice_posts_order()
OTHER_BODY = alice_posts_order(body=ORDER_BODY | {"size": 4})


@pytest.mark.parametrize(
    "case",
    [
        DecisionCase(None, FIRST, Proceed(entry(IdempotencyState.IN_FLIGHT, FIRST))),
        DecisionCase(entry(IdempotencyState.IN_FLIGHT, FIRST), FIRST, IN_PROGRESS),
        DecisionCase(
            entry(IdempotencyState.COMPLETED, FIRST, status=202, body=b"{}"), FIRST, Replay(202, b"{}")
        ),
        DecisionCase(entry(IdempotencyState.IN_FLIGHT, FIRST), OTHER_BODY, KEY_REUSED),
        DecisionCase(entry(IdempotencyState.COMPLETED, FIRST, status=202), OTHER_BODY, KEY_REUSED),
    ],
    ids=["new", "in-flight-same", "completed-same", "in-flight-other", "completed-other"],
)
def test_decision_table(case: DecisionCase) -> None:
    assert decide(case.stored, case.request) == case.expected


def test_refusals_carry_their_code_and_http_status() -> None:
    assert (KEY_REUSED.code, KEY_REUSED.http_status) == (GatewayReject.IDEMPOTENCY_KEY_REUSED, 422)
    assert (IN_PROGRESS.code, IN_PROGRESS.http_status) == (GatewayReject.IDEMPOTENCY_IN_PROGRESS, 409)
    assert (INVALID_KEY.code, INVALID_KEY.http_status) == (GatewayReject.INVALID_REQUEST, 400)


def test_an_entry_of_another_trader_is_a_broken_store_not_an_answer() -> None:
    with pytest.raises(ValueError, match="store returned the entry of"):
        decide(entry(IdempotencyState.COMPLETED, FIRST), bob_posts_order())


@pytest.mark.parametrize(
    ("key", "valid"),
    [("k", True), ("a" * 255, True), ("", False), ("a" * 256, False), ("has space", False), ("é", False)],
    ids=["one-char", "255", "empty", "256", "space", "non-ascii"],
)
def test_keys_are_1_to_255_visible_ascii_characters(key: str, valid: bool) -> None:
    assert (check_key(key) is None) is valid
    assert (begin(MemoryIdempotencyStore(), alice_posts_order(key=key)) == INVALID_KEY) is not valid


# -- the flow over a store ------------------------------------------------------------------------------


def test_first_request_proceeds_then_retries_replay_the_stored_answer() -> None:
    # State: an empty store.
    store = MemoryIdempotencyStore()

    # Action: Alice's request claims the key and is answered.
    claimed = begin(store, alice_posts_order())
    assert isinstance(claimed, Proceed)
    assert finish(store, claimed, *ACCEPTED_202)

    # Expectation: the retry gets the same bytes back, and runs nothing.
    assert begin(store, alice_posts_order()) == Replay(*ACCEPTED_202)


def test_a_retry_while_the_first_is_running_is_told_to_wait() -> None:
    store = MemoryIdempotencyStore()
    assert isinstance(begin(store, alice_posts_order()), Proceed)

    assert begin(store, alice_posts_order()) == IN_PROGRESS


def test_the_same_key_for_a_different_request_is_refused_in_any_state() -> None:
    store = MemoryIdempotencyStore()
    claimed = begin(store, alice_posts_order())
    other = alice_posts_order(body=ORDER_BODY | {"size": 4})

    in_flight = begin(store, other)
    assert isinstance(claimed, Proceed)
    finish(store, claimed, *ACCEPTED_202)
    completed = begin(store, other)

    assert in_flight == completed == KEY_REUSED


def test_keys_are_scoped_per_trader() -> None:
    # State: Alice has used KEY and been answered.
    store = MemoryIdempotencyStore()
    claimed = begin(store, alice_posts_order())
    assert isinstance(claimed, Proceed)
    finish(store, claimed, *ACCEPTED_202)

    # Action: Bob sends the very same request under the same key.
    bob = begin(store, bob_posts_order())

    # Expectation: Bob's request is new to the store; Alice's answer is not his.
    assert bob == Proceed(entry(IdempotencyState.IN_FLIGHT, bob_posts_order()))


def test_an_abandoned_claim_expires_and_the_key_can_be_claimed_again() -> None:
    # State: a gateway claimed the key and died.
    store = MemoryIdempotencyStore()
    abandoned = begin(store, alice_posts_order())

    # Action: the in-flight TTL passes; the client retries.
    store.now_s += IN_FLIGHT_TTL_S
    retried = begin(store, alice_posts_order())

    # Expectation: the retry proceeds (its nonce still forbids running the command twice), and the
    # dead gateway's late answer, had it come, lands on the same request and changes nothing.
    assert isinstance(retried, Proceed)
    assert isinstance(abandoned, Proceed)
    assert finish(store, retried, *ACCEPTED_202)


def test_a_late_finish_does_not_overwrite_another_request_under_the_key() -> None:
    # State: Alice's first request claimed the key; its claim expired; she then reused the key for
    # another body, which claimed it.
    store = MemoryIdempotencyStore()
    first = begin(store, alice_posts_order())
    store.now_s += IN_FLIGHT_TTL_S
    second = begin(store, alice_posts_order(body=ORDER_BODY | {"size": 4}))
    assert isinstance(first, Proceed)
    assert isinstance(second, Proceed)

    # Action / Expectation: the first request's answer is not stored over the second's claim.
    assert not finish(store, first, *ACCEPTED_202)
    assert store.get(ALICE, KEY) == second.entry


def test_a_completed_answer_is_kept_for_a_day() -> None:
    store = MemoryIdempotencyStore()
    claimed = begin(store, alice_posts_order())
    assert isinstance(claimed, Proceed)
    finish(store, claimed, *ACCEPTED_202)

    store.now_s += COMPLETED_TTL_S - 1
    assert begin(store, alice_posts_order()) == Replay(*ACCEPTED_202)
    store.now_s += 1
    assert isinstance(begin(store, alice_posts_order()), Proceed)


# -- the tiered store: answers shared between replicas through Cassandra -----------------------


class SharedAnswers(CassandraAnswers):
    """`CassandraAnswers` over a dict: what every replica's writes have made visible; counts reads."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], IdempotencyEntry] = {}
        self.reads = 0

    def get(self, trader: str, key: str) -> IdempotencyEntry | None:
        self.reads += 1
        return self.rows.get((trader, key))

    def save(self, entry: IdempotencyEntry, *, ttl_s: int) -> None:
        self.rows[(entry.trader, entry.key)] = entry


def replica(shared: SharedAnswers) -> TieredIdempotencyStore:
    return TieredIdempotencyStore(MemoryIdempotencyStore(), shared)


@pytest.fixture
def answered_on_a() -> tuple[SharedAnswers, TieredIdempotencyStore]:
    """Replica A answered Alice's order; replica B (or A after a restart) has not seen the key."""
    shared = SharedAnswers()
    a = replica(shared)
    first = begin(a, alice_posts_order())
    assert isinstance(first, Proceed)
    finish(a, first, *ACCEPTED_202)
    return shared, replica(shared)


def test_a_new_key_is_claimed_without_reading_the_shared_answers(
    answered_on_a: tuple[SharedAnswers, TieredIdempotencyStore],
) -> None:
    # State: an answer stored by A. Action: B claims keys, the stored one among them.
    shared, b = answered_on_a
    # Expectation: every claim proceeds at once; Cassandra is never read on the way.
    assert isinstance(begin(b, alice_posts_order(key="a-new-key")), Proceed)
    assert isinstance(begin(b, alice_posts_order()), Proceed)
    assert shared.reads == 0


def test_a_retry_refused_as_already_used_replays_the_first_answer(
    answered_on_a: tuple[SharedAnswers, TieredIdempotencyStore],
) -> None:
    # State: the same request reached B, whose command came back NONCE_REUSED (risk spent it).
    shared, b = answered_on_a
    claimed = begin(b, alice_posts_order())
    assert isinstance(claimed, Proceed)
    # Action: recover. Expectation: A's answer, byte for byte, now B's answer for the key too.
    assert recover(b, claimed) == Replay(*ACCEPTED_202)
    assert begin(b, alice_posts_order()) == Replay(*ACCEPTED_202)
    assert shared.reads == 1


def test_a_key_that_answered_another_body_elsewhere_is_refused_on_recovery(
    answered_on_a: tuple[SharedAnswers, TieredIdempotencyStore],
) -> None:
    _, b = answered_on_a
    claimed = begin(b, alice_posts_order(body={"market": "ETH-PERP"}))
    assert isinstance(claimed, Proceed)
    assert recover(b, claimed) == KEY_REUSED
    assert isinstance(begin(b, alice_posts_order(body={"market": "ETH-PERP"})), Proceed)  # released


def test_recovery_without_a_stored_answer_leaves_the_refusal_standing() -> None:
    # State: nobody answered the key (the first copy is still in flight on another replica).
    b = replica(SharedAnswers())
    claimed = begin(b, alice_posts_order())
    assert isinstance(claimed, Proceed)
    # Expectation: nothing to replay; B's own claim stays for its own answer.
    assert recover(b, claimed) is None
    assert begin(b, alice_posts_order()) == IN_PROGRESS


def test_claims_stay_local_only_answers_are_shared() -> None:
    # State: replica A is running Alice's order.
    shared = SharedAnswers()
    a, b = replica(shared), replica(shared)
    assert isinstance(begin(a, alice_posts_order()), Proceed)
    # Expectation: A tells a concurrent duplicate to wait; nothing is shared until the answer, so B
    # lets it proceed — where the spent nonce stops it from running twice (docs/gateway.md).
    assert begin(a, alice_posts_order()) == IN_PROGRESS
    assert shared.rows == {}
    assert isinstance(begin(b, alice_posts_order()), Proceed)
