"""What the watcher reads from the chain, as plain values: blocks and the Vault's logs in them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Block:
    """A block header as far as finality needs it. Hashes are lower-case 0x hex."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int
    """Seconds since the epoch (the block's own clock, not this machine's)."""


@dataclass(frozen=True, slots=True)
class Deposited:
    """`Deposited(trader indexed, from indexed, amount, shares)`: USDC credited to `trader`."""

    trader: str
    """Lower-case 0x hex address."""
    sender: str
    """Who paid (the `from` topic), lower-case 0x hex."""
    amount: int
    """Micro-USDC."""
    shares: int


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """`Withdrawn(trader indexed, withdrawalId indexed, amount, shares, asCxpt)`: a withdrawal paid."""

    trader: str
    """Lower-case 0x hex address."""
    withdrawal_id: str
    """The bytes16 id as the UUID string the gateway and risk use (``str(uuid.UUID(bytes=…))``)."""
    amount: int
    """Micro-USDC."""
    shares: int
    as_cxpt: bool


VaultEvent = Deposited | Withdrawn


@dataclass(frozen=True, slots=True)
class VaultLog:
    """One Vault event at its place on the chain; (tx_hash, log_index) identifies it."""

    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    """The log's index in its block (the RPC's `logIndex`)."""
    event: VaultEvent


@dataclass(frozen=True, slots=True)
class FinalBlock:
    """A block that became final, with the Vault logs it holds (in log order)."""

    block: Block
    logs: tuple[VaultLog, ...]
