"""Final Vault logs as the AccountEvents risk reads from accounts.events.

Ids derive from the log's place on the chain, so a log emitted again (a restart) carries the same
event id, and risk's own deduplication (deposits by ``chain_id:tx_hash:log_index``, withdrawals by
withdrawal id) ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.records import AccountEvent, DepositConfirmed, WithdrawalPaid
from services.watcher.core.chain import Block, Deposited, FinalBlock, VaultLog

MICROS_PER_SECOND = 1_000_000
EVENT_ID_PREFIX = "chain"


def event_id(chain_id: int, tx_hash: str, log_index: int) -> str:
    """``chain:<chain_id>:<tx_hash>:<log_index>``: the id of the AccountEvent for one log."""
    return f"{EVENT_ID_PREFIX}:{chain_id}:{tx_hash.lower()}:{log_index}"


@dataclass(frozen=True, slots=True)
class ChainEventId:
    """A parsed chain event id."""

    chain_id: int
    tx_hash: str
    log_index: int


def parse_event_id(text: str) -> ChainEventId | None:
    """The parts of a chain event id; None for ids of other producers (``topic:partition:…``, ``dev:…``)."""
    parts = text.split(":")
    if len(parts) != 4 or parts[0] != EVENT_ID_PREFIX:
        return None
    try:
        return ChainEventId(int(parts[1]), parts[2], int(parts[3]))
    except ValueError:
        return None


def account_event(chain_id: int, block: Block, log: VaultLog) -> AccountEvent:
    """The AccountEvent for one final log: keyed (and `trader`) by the log's trader topic, at the
    block's time in µs."""
    event = log.event
    body: DepositConfirmed | WithdrawalPaid
    if isinstance(event, Deposited):
        body = DepositConfirmed(
            amount=event.amount,
            chain_id=chain_id,
            tx_hash=log.tx_hash,
            log_index=log.log_index,
            block_number=log.block_number,
        )
    else:
        body = WithdrawalPaid(
            trader=event.trader,
            withdrawal_id=event.withdrawal_id,
            amount=event.amount,
            as_cxpt=event.as_cxpt,
            chain_id=chain_id,
            tx_hash=log.tx_hash,
            log_index=log.log_index,
            block_number=log.block_number,
        )
    return AccountEvent(
        event_id=event_id(chain_id, log.tx_hash, log.log_index),
        trader=event.trader,
        ts_event=block.timestamp * MICROS_PER_SECOND,
        body=body,
    )


def account_events(chain_id: int, final: tuple[FinalBlock, ...] | list[FinalBlock]) -> list[AccountEvent]:
    """Every AccountEvent of `final` blocks, in chain order (block, then log index)."""
    return [account_event(chain_id, f.block, log) for f in final for log in f.logs]


def resume_after(emitted_blocks: list[int], start_block: int) -> int:
    """The block to treat as final on a (re)start: the highest block of a log already emitted, or
    the block before `start_block` when nothing was emitted yet.

    Why the highest emitted block is safe: each poll emits the logs of whole blocks, oldest first,
    in one Kafka transaction, so every log of every block up to it is committed and none after it
    is. Blocks after it that had no logs are simply read again.
    """
    return max([*emitted_blocks, start_block - 1])
