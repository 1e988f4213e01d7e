"""A net settlement batch, its id, and the table of its statuses.

The id is a pure function of where the batch sits in the log and which Vault it is for::

    batch_id = keccak256(abi.encode(
        "cxpt.settlement.batch.v1", uint256 chainId, address vault,
        string topic, uint32 partition, uint64 fromOffset, uint64 toOffset))

so the same offsets always give the same id, and the Vault, which accepts an id once, refuses a
second settlement of the same offsets whoever sends it and however often.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from services.common.money import MicroUsdc
from services.common.records import BatchStatus

ID_DOMAIN = "cxpt.settlement.batch.v1"
"""First field of the id's encoding: a later encoding takes another tag, never the same ids."""


def batch_id(  # noqa: PLR0917 - the id's six fields, in their encoding order
    chain_id: int, vault: str, topic: str, partition: int, from_offset: int, to_offset: int
) -> str:
    """0x-prefixed keccak256 of the canonical ABI encoding above (the vault address in any case)."""
    if not 0 <= from_offset < to_offset:
        raise ValueError(f"empty or negative range [{from_offset}, {to_offset})")
    encoded = abi_encode(
        ["string", "uint256", "address", "string", "uint32", "uint64", "uint64"],
        [ID_DOMAIN, chain_id, vault.lower(), topic, partition, from_offset, to_offset],
    )
    return "0x" + keccak(encoded).hex()


@dataclass(frozen=True, slots=True)
class Batch:
    """One partition's records [from_offset, to_offset), netted: what `Vault.settle` applies.

    `deltas` holds each trader's net change (non-zero only), sorted by trader; the trader deltas and
    the three exchange-account deltas sum to exactly 0.
    """

    topic: str
    partition: int
    from_offset: int
    to_offset: int
    deltas: tuple[tuple[str, MicroUsdc], ...]
    fees_delta: MicroUsdc
    clearing_delta: MicroUsdc
    insurance_delta: MicroUsdc

    @property
    def total(self) -> int:
        """Σ trader deltas + Σ exchange deltas: 0 for every batch the fold closes."""
        return sum(d for _, d in self.deltas) + self.fees_delta + self.clearing_delta + self.insurance_delta

    @property
    def empty(self) -> bool:
        """Nothing moves: no transaction is needed to settle it."""
        return not self.deltas and self.fees_delta == self.clearing_delta == self.insurance_delta == 0

    def id(self, chain_id: int, vault: str) -> str:
        """The batch id on `vault` of chain `chain_id` (see the module docstring)."""
        return batch_id(chain_id, vault, self.topic, self.partition, self.from_offset, self.to_offset)


class IllegalTransition(Exception):
    """A status change the table does not allow: a bug in the service, never a business outcome."""


S = BatchStatus
TRANSITIONS: dict[tuple[BatchStatus | None, BatchStatus], str] = {
    (None, S.BUILT): "closed at a consistent cut; recorded before anything is sent",
    (S.BUILT, S.SUBMITTED): "settle() sent",
    (S.BUILT, S.CONFIRMED): "empty (nothing to send), or found settled on-chain at recovery",
    (S.BUILT, S.FAILED): "settle() would revert (simulated): nothing sent",
    (S.SUBMITTED, S.SUBMITTED): "sent again: after a restart, or stuck and replaced (same nonce, more fee)",
    (S.SUBMITTED, S.CONFIRMED): "mined, CONFIRMATION_DEPTH deep, or found settled",
    (S.SUBMITTED, S.FAILED): "reverted while the id is still unused",
    (S.FAILED, S.SUBMITTED): "retried after a back-off",
    (S.FAILED, S.FAILED): "the retry would revert again",
    (S.FAILED, S.CONFIRMED): "found settled on-chain",
}
"""(status, next status) → when. CONFIRMED is final."""


def advance(current: BatchStatus | None, new: BatchStatus) -> BatchStatus:
    """`new` if the table allows `current` → `new`; raises `IllegalTransition` otherwise."""
    if (current, new) not in TRANSITIONS:
        raise IllegalTransition(f"batch status {current} → {new} is not allowed")
    return new
