"""Replay protection: every signed struct is accepted at most once, with bounded memory.

The scheme is Hyperliquid's, in microseconds. A signer's nonce is a timestamp of their choosing
(µs since epoch). Per signer the guard keeps the `capacity` (100) highest nonces it accepted. A
command with deadline `deadline`, nonce `n`, received at `now` (`ts_init`, the only clock), is
refused, in this order:

1. `SIGNATURE_EXPIRED`   if deadline < now;
2. `NONCE_TOO_OLD`       if n < now − 2 days, or n is below the guard's `floor` (see `prune`);
3. `NONCE_TOO_FAR_AHEAD` if n > now + 1 day;
4. `NONCE_REUSED`        if n is among the signer's kept nonces;
5. `NONCE_TOO_OLD`       if the signer's set is full and n is below its smallest member.

Why this is safe: a nonce leaves a signer's set only by being the smallest of a full set (so
everything it could be confused with is below the new smallest: rule 5), or by `prune` (so it is
below the floor: rule 2). Why it is live: a client that stamps nonces from its clock is refused
only for a clock more than a day off, or for sending 100 commands out of order.

The guard is authoritative only where one writer sees every command of a signer (the partition
owner of `orders.commands`, keyed by trader); `export_state` / `import_state` carry it through
snapshots. Pure: no clock, no I/O; signers are opaque strings (the gateway passes lower-case
addresses).
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_left, insort
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Final

from services.common.codes import GatewayReject

MICROS_PER_DAY: Final = 86_400 * 1_000_000
DEFAULT_CAPACITY: Final = 100
DEFAULT_MAX_AGE_US: Final = 2 * MICROS_PER_DAY
DEFAULT_MAX_AHEAD_US: Final = 1 * MICROS_PER_DAY
FORMAT: Final = 1
"""Version of the exported layout; `import_state` refuses others."""

NonceState = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Accepted:
    """The nonce may be used (and, from `use`, now is)."""


ACCEPTED: Final = Accepted()


@dataclass(frozen=True, slots=True)
class NonceRejected:
    """Why a signed command was refused as a replay or a dead signature."""

    code: GatewayReject


class NonceInvariantError(AssertionError):
    """The guard's state is inconsistent, or `record` was called for a nonce `check` refuses: a bug."""


class ReplayGuard:
    """Per-signer sets of the highest accepted nonces, and the time window around each command."""

    def __init__(
        self,
        *,
        capacity: int = DEFAULT_CAPACITY,
        max_age_us: int = DEFAULT_MAX_AGE_US,
        max_ahead_us: int = DEFAULT_MAX_AHEAD_US,
    ) -> None:
        if capacity < 1 or max_age_us < 0 or max_ahead_us < 0:
            raise ValueError("capacity must be >= 1 and the window bounds >= 0")
        self.capacity = capacity
        self.max_age_us = max_age_us
        self.max_ahead_us = max_ahead_us
        self.floor = 0
        """No nonce below this is accepted, whatever `now` says: `prune` forgot what lies below it."""
        self._nonces: dict[str, list[int]] = {}  # each list sorted ascending, no duplicates

    def __len__(self) -> int:
        """How many signers the guard holds nonces for."""
        return len(self._nonces)

    def check(self, signer: str, nonce: int, now: int, *, deadline: int) -> Accepted | NonceRejected:
        """Whether a command signed by `signer` with `nonce` and `deadline` may run at `now`. No change."""
        if deadline < now:
            return NonceRejected(GatewayReject.SIGNATURE_EXPIRED)
        if nonce < now - self.max_age_us or nonce < self.floor:
            return NonceRejected(GatewayReject.NONCE_TOO_OLD)
        if nonce > now + self.max_ahead_us:
            return NonceRejected(GatewayReject.NONCE_TOO_FAR_AHEAD)
        return self._check_set(signer, nonce) or ACCEPTED

    def record(self, signer: str, nonce: int) -> None:
        """Remember that `signer` used `nonce` (after `check` accepted it), evicting the smallest
        nonce of a full set. Raises NonceInvariantError for a nonce the set would refuse."""
        if nonce < self.floor or self._check_set(signer, nonce) is not None:
            raise NonceInvariantError(f"{signer} cannot use nonce {nonce}: check first")
        kept = self._nonces.setdefault(signer, [])
        insort(kept, nonce)
        if len(kept) > self.capacity:
            del kept[0]

    def use(self, signer: str, nonce: int, now: int, *, deadline: int) -> Accepted | NonceRejected:
        """`check`, and `record` if accepted: the one call a command handler makes."""
        verdict = self.check(signer, nonce, now, deadline=deadline)
        if isinstance(verdict, Accepted):
            self.record(signer, nonce)
        return verdict

    def prune(self, now: int) -> int:
        """Forget every nonce the time window at `now` already refuses; returns how many signers
        were dropped entirely. Raises the floor, so a later command with an earlier `now` (another
        gateway's clock) still cannot reuse what was forgotten."""
        self.floor = max(self.floor, now - self.max_age_us)
        dropped = 0
        for signer in list(self._nonces):
            kept = self._nonces[signer]
            stale = bisect_left(kept, self.floor)
            if stale == len(kept):
                del self._nonces[signer]
                dropped += 1
            elif stale:
                del kept[:stale]
        return dropped

    def _check_set(self, signer: str, nonce: int) -> NonceRejected | None:
        kept = self._nonces.get(signer)
        if not kept:
            return None
        at = bisect_left(kept, nonce)
        if at < len(kept) and kept[at] == nonce:
            return NonceRejected(GatewayReject.NONCE_REUSED)
        if len(kept) >= self.capacity and nonce < kept[0]:
            return NonceRejected(GatewayReject.NONCE_TOO_OLD)
        return None

    # -- state ----------------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise NonceInvariantError if any signer's set is unsorted, duplicated, over capacity or
        holds a nonce below the floor."""
        for signer, kept in self._nonces.items():
            if not kept or len(kept) > self.capacity:
                raise NonceInvariantError(f"{signer}: {len(kept)} nonces, capacity {self.capacity}")
            if any(a >= b for a, b in pairwise(kept)):
                raise NonceInvariantError(f"{signer}: nonces not strictly increasing")
            if kept[0] < self.floor:
                raise NonceInvariantError(f"{signer}: nonce {kept[0]} below floor {self.floor}")

    def export_state(self) -> NonceState:
        """The guard as JSON-ready plain data (the settings too: a set that was full under one
        capacity must not look half-empty under a larger one)."""
        return {
            "format": FORMAT,
            "capacity": self.capacity,
            "max_age_us": self.max_age_us,
            "max_ahead_us": self.max_ahead_us,
            "floor": self.floor,
            "signers": [[signer, list(self._nonces[signer])] for signer in sorted(self._nonces)],
        }

    @classmethod
    def import_state(cls, state: NonceState) -> ReplayGuard:
        """A guard equal to the one `state` was exported from (same `state_hash`, same answers)."""
        if state.get("format") != FORMAT:
            raise ValueError(f"unknown nonce state format {state.get('format')!r}")
        guard = cls(
            capacity=state["capacity"], max_age_us=state["max_age_us"], max_ahead_us=state["max_ahead_us"]
        )
        guard.floor = state["floor"]
        guard._nonces = {signer: list(nonces) for signer, nonces in state["signers"]}
        try:
            guard.validate()
        except NonceInvariantError as error:
            raise ValueError(f"corrupt nonce state: {error}") from error
        return guard

    def state_hash(self) -> str:
        """A digest of the whole state; equal guards give equal hashes."""
        canonical = json.dumps(self.export_state(), sort_keys=True, separators=(",", ":"))
        return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()
