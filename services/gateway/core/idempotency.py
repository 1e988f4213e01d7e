"""`Idempotency-Key`: the same request sent twice gets the same answer, and runs once.

The decision table, for a request from trader T with key K and fingerprint F (sha256 of the
canonical JSON of method, path and body), against what the store holds for (T, K):

==============================  =====================================================
stored entry for (T, K)         answer
==============================  =====================================================
none (NEW)                      proceed; store (T, K, F) IN_FLIGHT, run, complete it
any state, other fingerprint    refuse IDEMPOTENCY_KEY_REUSED (HTTP 422)
IN_FLIGHT, same fingerprint     refuse IDEMPOTENCY_IN_PROGRESS (HTTP 409)
COMPLETED, same fingerprint     replay the stored status and body, byte for byte
==============================  =====================================================

A different fingerprint is refused even while the first request is in flight: the client has a
bug, and telling it so beats a 409 that invites it to retry. Keys are scoped per trader — the
store is keyed by (trader, key) — so one trader's key can never answer another's request.

Idempotency here is about *answers*: a command can never *run* twice anyway, because its signed
nonce is spent in `services.common.nonces.ReplayGuard` (risk's is the authority). So losing an
entry (TTL, store outage) costs a client a refusal it would not otherwise have seen, never a double
execution. An IN_FLIGHT entry gets a
short TTL, so a gateway that dies mid-request blocks its key only for that long; a COMPLETED one
keeps the answer for a day.

`decide` is pure. `IdempotencyStore` is the narrow port the gateway needs
(`services/gateway/stores.py`: claims in the gateway process, answers shared through Cassandra);
`begin` is the one call that claims a key or reads who holds it, and it never reads the shared
answers: a new key — nearly every request — costs no store round trip. The shared answers are read
by `recover`, only for a request whose command came back refused as *already used* (its signed
nonce spent, or too old or expired to tell): that is what a retry of an answered request looks
like on a replica that has not seen the key (another replica, or this one after a restart), and
then the first answer is replayed, or the key's reuse for another body refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

from services.common.codes import GatewayReject

IN_FLIGHT_TTL_S: Final = 60
COMPLETED_TTL_S: Final = 86_400
MAX_KEY_LENGTH: Final = 255

JsonValue = dict[str, "JsonValue"] | list["JsonValue"] | str | int | float | bool | None


class IdempotencyState(StrEnum):
    """Where a key is in NEW → IN_FLIGHT → COMPLETED (NEW is the absence of an entry)."""

    IN_FLIGHT = "IN_FLIGHT"
    COMPLETED = "COMPLETED"


@dataclass(frozen=True, slots=True)
class IdempotencyEntry:
    """What the store holds for one (trader, key)."""

    trader: str
    key: str
    fingerprint: str
    state: IdempotencyState
    status: int = 0
    """The HTTP status answered (COMPLETED only)."""
    body: bytes = b""
    """The response body answered, exactly as sent (COMPLETED only)."""


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """A request that carries an `Idempotency-Key`, as the decision needs it."""

    trader: str
    key: str
    method: str
    path: str
    """The path as received, with its query string if any."""
    body: JsonValue
    """The parsed JSON body (so that whitespace and key order do not change the fingerprint)."""

    @property
    def fingerprint(self) -> str:
        """sha256 hex of the canonical JSON of [METHOD, path, body]."""
        return fingerprint(self.method, self.path, self.body)


def fingerprint(method: str, path: str, body: JsonValue) -> str:
    """sha256 hex of the canonical JSON (sorted keys, no spaces, UTF-8) of [METHOD, path, body]."""
    canonical = json.dumps(
        [method.upper(), path, body],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Proceed:
    """Run the request; `entry` is the IN_FLIGHT entry that claims the key."""

    entry: IdempotencyEntry


@dataclass(frozen=True, slots=True)
class Replay:
    """Answer with the stored response of the first request."""

    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer with an error."""

    code: GatewayReject
    http_status: int


Decision = Proceed | Replay | Refuse

KEY_REUSED: Final = Refuse(GatewayReject.IDEMPOTENCY_KEY_REUSED, 422)
IN_PROGRESS: Final = Refuse(GatewayReject.IDEMPOTENCY_IN_PROGRESS, 409)
INVALID_KEY: Final = Refuse(GatewayReject.INVALID_REQUEST, 400)


def check_key(key: str) -> Refuse | None:
    """INVALID_KEY unless `key` is 1 to 255 visible ASCII characters (what fits a header and a row)."""
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all("!" <= ch <= "~" for ch in key):
        return INVALID_KEY
    return None


def claim(request: IdempotentRequest) -> IdempotencyEntry:
    """The IN_FLIGHT entry that claims the request's key."""
    return IdempotencyEntry(request.trader, request.key, request.fingerprint, IdempotencyState.IN_FLIGHT)


def decide(entry: IdempotencyEntry | None, request: IdempotentRequest) -> Decision:
    """The decision table above. `entry` is what the store holds for (request.trader, request.key)."""
    if entry is None:
        return Proceed(claim(request))
    if (entry.trader, entry.key) != (request.trader, request.key):
        # The store answered for another (trader, key): keys would leak between traders.
        raise ValueError(f"store returned the entry of {entry.trader}/{entry.key} for {request.trader}")
    if entry.fingerprint != request.fingerprint:
        return KEY_REUSED
    if entry.state is IdempotencyState.IN_FLIGHT:
        return IN_PROGRESS
    return Replay(entry.status, entry.body)


class IdempotencyStore(Protocol):
    """Where entries live, with expiry. `put_if_absent` must be atomic where the store keeps its
    claims (in the gateway's implementation: within the process)."""

    def get(self, trader: str, key: str) -> IdempotencyEntry | None:
        """The live entry for (trader, key), if any."""
        ...

    def put_if_absent(self, entry: IdempotencyEntry, *, ttl_s: int) -> IdempotencyEntry | None:
        """Store `entry` for `ttl_s` seconds unless (trader, key) holds a live entry; None if stored,
        else the entry already there."""
        ...

    def complete(
        self, trader: str, key: str, fingerprint: str, status: int, body: bytes, *, ttl_s: int
    ) -> bool:
        """Mark the entry COMPLETED with the answer, for `ttl_s` seconds from now, if it still holds
        `fingerprint`; whether it did."""
        ...

    def release(self, trader: str, key: str, fingerprint: str) -> bool:
        """Drop the entry if it still holds `fingerprint` (the request failed before it took
        effect, so the same request may be sent again at once); whether it did."""
        ...

    def answered(self, trader: str, key: str) -> IdempotencyEntry | None:
        """The answer another replica (or this process before a restart) stored for (trader, key),
        if the store shares answers; may block on I/O, and raises `AnswersUnavailable` when the
        shared store cannot be read."""
        ...


class AnswersUnavailable(Exception):
    """The shared store of answers could not be read: whether a request was answered before is
    unknown (the caller must not guess; it answers "retry as is")."""


def begin(store: IdempotencyStore, request: IdempotentRequest, *, ttl_s: int = IN_FLIGHT_TTL_S) -> Decision:
    """Claim the request's key, or decide from the entry that already holds it.

    One atomic write in the common case (a new key); no separate read first, which would only add a
    round trip and a race.
    """
    refusal = check_key(request.key)
    if refusal is not None:
        return refusal
    entry = claim(request)
    existing = store.put_if_absent(entry, ttl_s=ttl_s)
    return Proceed(entry) if existing is None else decide(existing, request)


def finish(
    store: IdempotencyStore, claimed: Proceed, status: int, body: bytes, *, ttl_s: int = COMPLETED_TTL_S
) -> bool:
    """Store the answer to a request `begin` let proceed; False if its claim had already expired
    and another request took the key (the answer is then simply not replayable)."""
    entry = claimed.entry
    return store.complete(entry.trader, entry.key, entry.fingerprint, status, body, ttl_s=ttl_s)


def abandon(store: IdempotencyStore, claimed: Proceed) -> bool:
    """Give the key back: the request `begin` let proceed failed before it took effect."""
    entry = claimed.entry
    return store.release(entry.trader, entry.key, entry.fingerprint)


def recover(store: IdempotencyStore, claimed: Proceed) -> Replay | Refuse | None:
    """For a request `begin` let proceed whose command was refused as already used: the first
    answer stored for its key elsewhere, replayed (and kept as this process's answer); KEY_REUSED
    if that answer was to another body; None if no answer is stored (the refusal then stands)."""
    mine = claimed.entry
    found = store.answered(mine.trader, mine.key)
    if found is None:
        return None
    if found.fingerprint != mine.fingerprint:
        store.release(mine.trader, mine.key, mine.fingerprint)
        return KEY_REUSED
    store.complete(mine.trader, mine.key, mine.fingerprint, found.status, found.body, ttl_s=COMPLETED_TTL_S)
    return Replay(found.status, found.body)
