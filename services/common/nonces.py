"""Replay protection: every signed struct is accepted at most once, with bounded memory.

The scheme is Hyperliquid's, in microseconds. A signer's nonce is a timestamp of their choosing
(µs since epoch). Per signer the guard keeps the `capacity` (100) highest nonces it accepted. A
command with deadline `deadline`, nonce `n`, received at `now` (`ts_init`, the only clock), is
refused, in this order:

1. `SIGNATURE_EXPIRED`   if deadline < now (skipped when the caller checked the deadline itself);
2. `NONCE_TOO_OLD`       if n < now − 2 days, or n is below the guard's `floor` or the signer's
                         own floor (see `prune`, `prune_signer` and eviction);
3. `NONCE_TOO_FAR_AHEAD` if n > now + 1 day;
4. `NONCE_REUSED`        if n is among the signer's kept nonces;
5. `NONCE_TOO_OLD`       if the signer's set is full and n is below its smallest member.

Why this is safe: a nonce leaves a signer's set only by being the smallest of a full set (so
everything it could be confused with is below the new smallest: rule 5, and below the signer's
floor, which eviction raises past it), or by `prune` / `prune_signer` (so it is below a floor:
rule 2). Why it is live: a client that stamps nonces from its clock is refused only for a clock
more than a day off, or for sending 100 commands out of order.

The guard is authoritative only where one writer sees every command of a signer: the risk
partition that owns the trader on `orders.commands` (keyed by trader), which carries each signer's
part through its changelog (`export_signer` / `import_signer`); the gateway runs a guard too, as a
fast local check (`export_state` / `import_state` carry a whole guard through snapshots). Pure: no
clock, no I/O; signers are opaque strings (lower-case addresses). Shared by the gateway and risk,
hence in `services.common`.
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
SignerState = dict[str, Any]
"""One signer's part: `{"floor": int, "nonces": [int, …]}` (floor 0: none of its own)."""


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
        self._floors: dict[str, int] = {}  # per signer, only where above `floor`

    def __len__(self) -> int:
        """How many signers the guard holds nonces for."""
        return len(self._nonces)

    def check(self, signer: str, nonce: int, now: int, *, deadline: int | None) -> Accepted | NonceRejected:
        """Whether a command signed by `signer` with `nonce` and `deadline` may run at `now`. No change.
        `deadline` None: the caller checked it (risk: the gateway did, the Avro command has none)."""
        if deadline is not None and deadline < now:
            return NonceRejected(GatewayReject.SIGNATURE_EXPIRED)
        if nonce < now - self.max_age_us or nonce < self.signer_floor(signer):
            return NonceRejected(GatewayReject.NONCE_TOO_OLD)
        if nonce > now + self.max_ahead_us:
            return NonceRejected(GatewayReject.NONCE_TOO_FAR_AHEAD)
        return self._check_set(signer, nonce) or ACCEPTED

    def record(self, signer: str, nonce: int) -> None:
        """Remember that `signer` used `nonce` (after `check` accepted it), evicting the smallest
        nonce of a full set. Raises NonceInvariantError for a nonce the set would refuse."""
        if nonce < self.signer_floor(signer) or self._check_set(signer, nonce) is not None:
            raise NonceInvariantError(f"{signer} cannot use nonce {nonce}: check first")
        kept = self._nonces.setdefault(signer, [])
        insort(kept, nonce)
        if len(kept) > self.capacity:
            # Rule 5 already refuses it; the floor keeps it refused whatever the capacity a
            # later import runs with, so a signer's part stands on its own (`export_signer`).
            self._raise_floor(signer, kept.pop(0) + 1)

    def use(self, signer: str, nonce: int, now: int, *, deadline: int | None) -> Accepted | NonceRejected:
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
        self._floors = {signer: f for signer, f in self._floors.items() if f > self.floor}
        return dropped

    def prune_signer(self, signer: str, now: int) -> int:
        """`prune` for one signer: forget their nonces the window at `now` refuses, raising their
        own floor past them (so an earlier `now` still refuses them); returns how many were
        forgotten. What a process that owns the signer calls on each of their commands."""
        kept = self._nonces.get(signer)
        limit = now - self.max_age_us
        if not kept or kept[0] >= limit:
            return 0
        stale = bisect_left(kept, limit)
        if stale == len(kept):
            del self._nonces[signer]
        else:
            del kept[:stale]
        self._raise_floor(signer, limit)
        return stale

    def signer_floor(self, signer: str) -> int:
        """No nonce of `signer` below this is accepted, whatever `now` says."""
        return max(self.floor, self._floors.get(signer, 0))

    def signers(self) -> list[str]:
        """Every signer the guard holds anything for (nonces or a floor of their own), sorted."""
        return sorted(self._nonces.keys() | self._floors.keys())

    def _raise_floor(self, signer: str, floor: int) -> None:
        if floor > self.signer_floor(signer):
            self._floors[signer] = floor

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
        holds a nonce below its floor, or a signer's floor is not above the guard's."""
        for signer in self.signers():
            self._validate_signer(signer)

    def _validate_signer(self, signer: str) -> None:
        floor = self._floors.get(signer)
        if floor is not None and floor <= self.floor:
            raise NonceInvariantError(f"{signer}: own floor {floor} not above floor {self.floor}")
        kept = self._nonces.get(signer)
        if kept is None:
            return
        if not kept or len(kept) > self.capacity:
            raise NonceInvariantError(f"{signer}: {len(kept)} nonces, capacity {self.capacity}")
        if any(a >= b for a, b in pairwise(kept)):
            raise NonceInvariantError(f"{signer}: nonces not strictly increasing")
        if kept[0] < self.signer_floor(signer):
            raise NonceInvariantError(f"{signer}: nonce {kept[0]} below floor {self.signer_floor(signer)}")

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
            "floors": [[signer, self._floors[signer]] for signer in sorted(self._floors)],
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
        guard._floors = {signer: floor for signer, floor in state.get("floors", [])}  # absent: none
        try:
            guard.validate()
        except NonceInvariantError as error:
            raise ValueError(f"corrupt nonce state: {error}") from error
        return guard

    def state_hash(self) -> str:
        """A digest of the whole state; equal guards give equal hashes."""
        canonical = json.dumps(self.export_state(), sort_keys=True, separators=(",", ":"))
        return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()

    def export_signer(self, signer: str) -> SignerState | None:
        """One signer's part as JSON-ready plain data (None if the guard holds nothing for them).
        Self-contained: `import_signer` into a guard of the same window gives the same answers."""
        kept = self._nonces.get(signer)
        floor = self._floors.get(signer, 0)
        if not kept and not floor:
            return None
        return {"floor": floor, "nonces": list(kept or [])}

    def import_signer(self, signer: str, state: SignerState | None) -> None:
        """Replace `signer`'s part with one `export_signer` gave; raises ValueError if corrupt."""
        self._nonces.pop(signer, None)
        self._floors.pop(signer, None)
        if state is None:
            return
        if state["nonces"]:
            self._nonces[signer] = list(state["nonces"])
        if state["floor"] > self.floor:
            self._floors[signer] = state["floor"]
        try:
            self._validate_signer(signer)
        except NonceInvariantError as error:
            raise ValueError(f"corrupt nonce state of {signer}: {error}") from error
