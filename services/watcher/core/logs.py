"""Decoding the Vault's `Deposited` and `Withdrawn` logs (contracts/src/interfaces/IVault.sol).

Pure: the topics are keccak-256 of the event signatures, fixed here as constants (a unit test
holds them equal to the compiled IVault ABI). Other Vault events (`BatchSettled`,
`TraderSettled`) are not the watcher's business and decode to None.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from eth_abi.abi import decode as abi_decode

from services.watcher.core.chain import Deposited, VaultEvent, VaultLog, Withdrawn

DEPOSITED_SIGNATURE = "Deposited(address,address,uint256,uint256)"
WITHDRAWN_SIGNATURE = "Withdrawn(address,bytes16,uint256,uint256,bool)"
DEPOSITED_TOPIC = "0xf5681f9d0db1b911ac18ee83d515a1cf1051853a9eae418316a2fdf7dea427c5"
"""keccak-256 of `DEPOSITED_SIGNATURE`."""
WITHDRAWN_TOPIC = "0xe30937a9b2d34f701bd34b9beb7e76f9f28a91e6fa79bb15b22d1499f369a00b"
"""keccak-256 of `WITHDRAWN_SIGNATURE`."""
WATCHED_TOPICS = (DEPOSITED_TOPIC, WITHDRAWN_TOPIC)
"""topic0 values the watcher asks the RPC for (`eth_getLogs` topics filter: any of them)."""


class MalformedVaultLog(ValueError):
    """A log with a watched topic0 whose shape is not the event's: the contract at the watched
    address is not the Vault the watcher was written for. Never skipped silently."""


@dataclass(frozen=True, slots=True)
class RawLog:
    """A log as the RPC returns it, reduced to plain values (hex strings lower-case, 0x-prefixed)."""

    address: str
    topics: tuple[str, ...]
    data: bytes
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    removed: bool = False
    """True when the node reports the log as reorged out (`removed`); such a log is never used."""


def decode_vault_log(raw: RawLog) -> VaultLog | None:
    """The Vault event in `raw`, or None if it is another event; raises `MalformedVaultLog`."""
    if not raw.topics:
        return None
    topic0 = raw.topics[0].lower()
    event: VaultEvent
    try:
        if topic0 == DEPOSITED_TOPIC:
            _expect_topics(raw, 3)
            amount, shares = abi_decode(["uint256", "uint256"], raw.data)
            event = Deposited(
                trader=_address(raw.topics[1]), sender=_address(raw.topics[2]), amount=amount, shares=shares
            )
        elif topic0 == WITHDRAWN_TOPIC:
            _expect_topics(raw, 3)
            amount, shares, as_cxpt = abi_decode(["uint256", "uint256", "bool"], raw.data)
            event = Withdrawn(
                trader=_address(raw.topics[1]),
                withdrawal_id=_uuid16(raw.topics[2]),
                amount=amount,
                shares=shares,
                as_cxpt=bool(as_cxpt),
            )
        else:
            return None
    except MalformedVaultLog:
        raise
    except Exception as exc:  # eth_abi raises several types for short or odd data
        raise MalformedVaultLog(f"log {raw.tx_hash}:{raw.log_index}: cannot decode data ({exc})") from exc
    return VaultLog(
        block_number=raw.block_number,
        block_hash=raw.block_hash.lower(),
        tx_hash=raw.tx_hash.lower(),
        log_index=raw.log_index,
        event=event,
    )


def _expect_topics(raw: RawLog, count: int) -> None:
    if len(raw.topics) != count:
        where = f"log {raw.tx_hash}:{raw.log_index}"
        raise MalformedVaultLog(f"{where}: {len(raw.topics)} topics, expected {count}")


def _word(topic: str) -> bytes:
    word = bytes.fromhex(topic.removeprefix("0x"))
    if len(word) != 32:
        raise MalformedVaultLog(f"topic {topic} is not 32 bytes")
    return word


def _address(topic: str) -> str:
    """An indexed address: the low 20 bytes of the topic word, whose high 12 bytes are zero."""
    word = _word(topic)
    if any(word[:12]):
        raise MalformedVaultLog(f"topic {topic} is not an address")
    return "0x" + word[12:].hex()


def _uuid16(topic: str) -> str:
    """An indexed bytes16: left-aligned in the topic word, zero-padded on the right."""
    word = _word(topic)
    if any(word[16:]):
        raise MalformedVaultLog(f"topic {topic} is not a bytes16")
    return str(uuid.UUID(bytes=word[:16]))
