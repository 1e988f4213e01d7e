"""The chain watcher service: the finality tracker (services/watcher/core) on an EVM RPC and Kafka.

Every `WATCHER_POLL_S` it asks the node for the head (`eth_blockNumber`), then reads the blocks
after the tracker's tip one at a time — `eth_getBlockByNumber` for the header, `eth_getLogs` by
*block hash* for the Vault's `Deposited` / `Withdrawn` logs in exactly that block — and offers
them to the tracker. The logs of blocks that became final go to `accounts.events` (keyed by
trader) in one Kafka transaction per poll; a deep reorg stops the service (exit code 2).

Exactly once across restarts, with no state of its own outside Kafka:

1. the transactional producer (`transactional.id` = ``<prefix>watcher-<chain id>``) is created
   first: it fences a previous instance and aborts its open transaction;
2. the cursor is read back from `accounts.events`: the chain event of this chain with the highest
   block number (`find_last_emitted`, reading each partition backwards from its end);
3. that block becomes the tracker's anchor (the watcher always emits whole blocks, oldest first,
   in one transaction, so nothing up to it is missing and nothing after it was committed); its
   log's transaction receipt must still be in that block — else the chain changed under a final
   block (a deep reorg while stopped, or a reset chain) and the service stops.

Duplicates are harmless anyway (risk dedupes deposits by chain:tx:log and withdrawals by id), but
none are produced.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from web3 import Web3
from web3.exceptions import BlockNotFound, TransactionNotFound, Web3Exception

from services.chain import client, deployments
from services.chain.deployments import DeploymentError, deployment_path
from services.common.bus import Bus, Outbound, TypedProducer, watermarks
from services.common.records import AccountEvent, DepositConfirmed, WithdrawalPaid
from services.common.serde import UndecodableRecord
from services.common.settings import Settings
from services.common.topics import ACCOUNTS_EVENTS
from services.watcher.core import (
    Anchor,
    Block,
    DeepReorg,
    FinalBlock,
    FinalityTracker,
    MalformedVaultLog,
    RawLog,
    Rule,
    VaultLog,
    account_events,
    decode_vault_log,
    parse_event_id,
    resume_after,
)
from services.watcher.core.logs import WATCHED_TOPICS

log = logging.getLogger(__name__)

MAX_BLOCKS_PER_POLL = 500
"""Blocks read before the final ones are produced: bounds one transaction while catching up."""
PLACEHOLDER_VAULT = "0x000000000000000000000000000000000000dead"
"""`VAULT_ADDRESS` when no Vault is deployed: nothing to watch."""
CURSOR_SCAN_WINDOW = 5_000
"""Records read per step while scanning a partition of accounts.events backwards for the cursor."""


class DeepReorgError(RuntimeError):
    """A block the watcher had treated as final is no longer on the chain: the operator decides."""


# -- the chain, as the watcher needs it (a narrow port; `Web3Chain` is the adapter) -------------


class ChainSource(Protocol):
    """The four reads the watcher makes."""

    def head(self) -> int:
        """The newest block number."""
        ...

    def block(self, number: int) -> Block | None:
        """The canonical block `number`, or None if the node has none (yet)."""
        ...

    def vault_logs(self, block: Block) -> list[RawLog]:
        """The Vault's watched logs in exactly `block` (by hash)."""
        ...

    def receipt_block(self, tx_hash: str) -> tuple[int, str] | None:
        """(block number, block hash) of a mined transaction, or None if the node does not know it."""
        ...


class Web3Chain:
    """`ChainSource` over JSON-RPC with web3."""

    def __init__(self, w3: Web3, vault: str) -> None:
        self.w3 = w3
        self.vault = Web3.to_checksum_address(vault)

    def head(self) -> int:
        return int(self.w3.eth.block_number)

    def block(self, number: int) -> Block | None:
        try:
            raw = self.w3.eth.get_block(number)
        except BlockNotFound:
            return None
        return Block(
            number=int(raw["number"]),
            hash=_hex(raw["hash"]),
            parent_hash=_hex(raw["parentHash"]),
            timestamp=int(raw["timestamp"]),
        )

    def vault_logs(self, block: Block) -> list[RawLog]:
        # By block hash, not number: the logs are those of this very block even if the chain
        # reorganises between the two calls (the node then answers for the orphaned block, or
        # fails, and the next block read reveals the reorg).
        entries = self.w3.eth.get_logs(
            {"blockHash": block.hash, "address": self.vault, "topics": [list(WATCHED_TOPICS)]}  # type: ignore[typeddict-item]
        )
        return [
            RawLog(
                address=str(entry["address"]).lower(),
                topics=tuple(_hex(t) for t in entry["topics"]),
                data=bytes(entry["data"]),
                block_number=int(entry["blockNumber"]),
                block_hash=_hex(entry["blockHash"]),
                tx_hash=_hex(entry["transactionHash"]),
                log_index=int(entry["logIndex"]),
                removed=bool(entry.get("removed", False)),
            )
            for entry in entries
        ]

    def receipt_block(self, tx_hash: str) -> tuple[int, str] | None:
        try:
            receipt = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        return int(receipt["blockNumber"]), _hex(receipt["blockHash"])


def _hex(value: Any) -> str:
    """Lower-case 0x hex of HexBytes / bytes / str."""
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    text = str(value).lower()
    return text if text.startswith("0x") else "0x" + text


# -- the cursor, read back from accounts.events ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class LastEmitted:
    """The chain event of one chain with the highest block number on accounts.events."""

    block_number: int
    tx_hash: str
    log_index: int


def find_last_emitted(bus: Bus, chain_id: int, window: int = CURSOR_SCAN_WINDOW) -> LastEmitted | None:
    """The watcher's cursor: the highest-block chain event of `chain_id` on accounts.events.

    Each partition is read backwards in windows from its end until a window holds one of this
    chain's events: within a partition the watcher's events are in block order, so the first window
    (from the end) holding one holds that partition's highest. The topic is kept forever and
    mostly holds risk's events, so a full scan would grow without bound.
    """
    spec = bus.topic(ACCOUNTS_EVENTS)
    serde = bus.serde(ACCOUNTS_EVENTS)
    consumer = Consumer(bus.consumer_config("watcher-cursor") | {"enable.partition.eof": True})
    best: LastEmitted | None = None
    try:
        for partition in range(spec.partitions):
            low, high = watermarks(consumer, TopicPartition(spec.name, partition))
            end = high
            while end > low:
                start = max(low, end - window)
                found = _scan(
                    consumer,
                    serde,
                    topic=spec.name,
                    partition=partition,
                    start=start,
                    end=end,
                    chain_id=chain_id,
                )
                if found is not None:
                    if best is None or found.block_number > best.block_number:
                        best = found
                    break
                end = start
    finally:
        consumer.close()
    return best


def _scan(
    consumer: Consumer, serde: Any, *, topic: str, partition: int, start: int, end: int, chain_id: int
) -> LastEmitted | None:
    """The highest chain event of `chain_id` in offsets [start, end) of one partition."""
    consumer.assign([TopicPartition(topic, partition, start)])
    best: LastEmitted | None = None
    while True:
        message = consumer.poll(10)
        if message is None:
            raise TimeoutError(f"reading {topic}[{partition}] from {start}: nothing within 10 s")
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                return best
            raise KafkaException(error)
        if (message.offset() or 0) >= end:
            return best
        try:
            event: AccountEvent = serde.decode_record(message.value())
        except UndecodableRecord:
            continue  # not ours to judge: consumers of the topic dead-letter it
        parsed = parse_event_id(event.event_id)
        body = event.body
        if (
            parsed is None
            or parsed.chain_id != chain_id
            or not isinstance(body, DepositConfirmed | WithdrawalPaid)
        ):
            continue
        if best is None or body.block_number >= best.block_number:
            best = LastEmitted(body.block_number, parsed.tx_hash, parsed.log_index)


# -- the service ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll did."""

    blocks_read: int
    emitted: int
    dropped: int
    head: int


class WatcherService:
    """Reads the chain, tracks finality, produces final Vault events exactly once."""

    def __init__(
        self,
        bus: Bus,
        chain: ChainSource,
        *,
        chain_id: int,
        confirmations: int,
        start_block: int,
        poll_s: float,
    ) -> None:
        self.bus = bus
        self.chain = chain
        self.chain_id = chain_id
        self.confirmations = confirmations
        self.start_block = start_block
        self.poll_s = poll_s
        # First, so that a previous instance is fenced (its open transaction aborted) before the
        # cursor is read back: what we read is all it will ever have committed.
        self._producer = TypedProducer(bus, transactional_id=f"{bus.settings.topic_prefix}watcher-{chain_id}")
        self.tracker: FinalityTracker | None = self._recover()
        """None after a failed transaction: the next poll recovers it from Kafka first."""
        self.stats = {"polls": 0, "emitted": 0, "dropped": 0}

    def _recover(self) -> FinalityTracker:
        """The tracker anchored at the last block emitted (or before the start block)."""
        last = find_last_emitted(self.bus, self.chain_id)
        number = resume_after([last.block_number] if last else [], self.start_block)
        if last is not None and number == last.block_number:
            where = self.chain.receipt_block(last.tx_hash)
            if where is None or where[0] != last.block_number:
                raise DeepReorgError(
                    f"the last emitted log {last.tx_hash}:{last.log_index} (block {last.block_number}) is no "
                    f"longer on chain {self.chain_id} (receipt: {where}): a deep reorg or a reset chain"
                )
            anchor = Anchor(number, where[1])
        else:
            block = self.chain.block(number) if number >= 0 else None
            anchor = Anchor(number, block.hash if block is not None else None)
        log.info(
            "watcher resumes after block %s (last emitted: %s), %s confirmations",
            number,
            last,
            self.confirmations,
        )
        return FinalityTracker(self.confirmations, anchor)

    def poll_once(self) -> PollResult:
        """Read the blocks after the tip (up to the head) and produce the logs that became final.

        An RPC failure part-way still produces what became final before it, then re-raises; a
        failed Kafka transaction rebuilds the tracker from what Kafka holds.
        """
        if self.tracker is None:
            self.tracker = self._recover()
        tracker = self.tracker
        final: list[FinalBlock] = []
        read = dropped = 0
        head = -1
        failure: Exception | None = None
        try:
            head = self.chain.head()
            while tracker.next_number <= head and read < MAX_BLOCKS_PER_POLL:
                block = self.chain.block(tracker.next_number)
                if block is None:
                    break  # the head moved back (a reorg to a shorter chain): read again next poll
                logs = [
                    decoded for raw in self.chain.vault_logs(block) if (decoded := _decode(raw)) is not None
                ]
                step = tracker.offer(block, logs)
                read += 1
                if step.rule is Rule.HALT:
                    assert step.halt is not None
                    failure = DeepReorgError(_halt_message(step.halt, self.confirmations))
                    break
                if step.rule is Rule.DROP:
                    dropped += len(step.dropped)
                    log.warning("reorg: dropped block %s", [(b.number, b.hash) for b in step.dropped])
                final.extend(step.final)
        except MalformedVaultLog:
            raise  # not the Vault we were written for: nothing is emitted, the service stops
        except (Web3Exception, OSError, ValueError) as exc:  # requests' errors are OSErrors
            failure = exc
        emitted = self._produce(final)
        self.stats["polls"] += 1
        self.stats["emitted"] += emitted
        self.stats["dropped"] += dropped
        if failure is not None:
            raise failure
        return PollResult(blocks_read=read, emitted=emitted, dropped=dropped, head=head)

    def _produce(self, final: list[FinalBlock]) -> int:
        events = account_events(self.chain_id, final)
        if not events:
            return 0
        try:
            with self._producer.transaction() as tx:
                for event in events:
                    tx.send(Outbound(ACCOUNTS_EVENTS, key=event.trader, value=event))
        except KafkaException:
            # Nothing of this poll is committed, but the tracker moved past it: the next poll
            # starts again from what Kafka holds.
            self.tracker = None
            raise
        log.info(
            "emitted %s events of blocks %s..%s", len(events), final[0].block.number, final[-1].block.number
        )
        return len(events)

    def run(self, stop: threading.Event) -> None:
        """Poll every `poll_s` until `stop` is set; a deep reorg raises `DeepReorgError`."""
        while not stop.is_set():
            try:
                result = self.poll_once()
            except (DeepReorgError, MalformedVaultLog):
                raise
            except KafkaException as exc:
                if exc.args and isinstance(exc.args[0], KafkaError) and exc.args[0].fatal():
                    raise  # e.g. fenced by a newer instance: this one must stop
                log.warning("Kafka failed, recovering and retrying in %ss: %s", self.poll_s, exc)
                stop.wait(self.poll_s)
                continue
            except (Web3Exception, OSError, ValueError) as exc:
                log.warning("poll failed, retrying in %ss: %s", self.poll_s, exc)
                stop.wait(self.poll_s)
                continue
            if result.blocks_read < MAX_BLOCKS_PER_POLL:  # caught up: wait; else go on at once
                stop.wait(self.poll_s)


def _decode(raw: RawLog) -> VaultLog | None:
    return None if raw.removed else decode_vault_log(raw)


def _halt_message(halt: DeepReorg, confirmations: int) -> str:
    return f"{halt.describe()}; a reorg at least {confirmations} blocks deep: stopping (operator decision)"


# -- wiring ---------------------------------------------------------------------------------------


def resolve_vault(settings: Settings) -> tuple[str, int] | None:
    """The Vault to watch and the first block to read on a fresh start, or None if none is known.

    The Vault is `VAULT_ADDRESS` (which defaults to the deployment file's), else the deployment
    file's ``vault`` when it describes `CHAIN_ID` (deployed after the settings were read); the
    start block is `WATCHER_START_BLOCK`, else the ``vault_block`` recorded with that Vault, else 0.
    """
    recorded: dict[str, Any] = {}
    try:
        found = deployments.read(deployment_path(settings.cxpt_run_dir))
    except DeploymentError as exc:
        log.warning("deployment file unreadable: %s", exc)
        found = None
    if found is not None and found.chain_id == settings.chain_id:
        recorded = found.extra
    vault = settings.vault_address
    if vault.lower() == PLACEHOLDER_VAULT and isinstance(recorded.get("vault"), str):
        vault = recorded["vault"]
    if vault.lower() == PLACEHOLDER_VAULT:
        return None
    start = settings.watcher_start_block
    if start is None:
        same = str(recorded.get("vault", "")).lower() == vault.lower()
        start = int(recorded.get("vault_block", 0)) if same else 0
    return Web3.to_checksum_address(vault), start


def build(settings: Settings, bus: Bus | None = None) -> WatcherService:
    """The service for `settings`; raises RuntimeError when no Vault is known or the RPC's chain is
    not `CHAIN_ID`."""
    found = resolve_vault(settings)
    if found is None:
        raise RuntimeError("no Vault to watch: set VAULT_ADDRESS or run python -m services.chain.deploy")
    vault, start = found
    w3 = client.connect(settings.eth_rpc_url, retries=False)
    chain_id = int(w3.eth.chain_id)
    if chain_id != settings.chain_id:
        raise RuntimeError(
            f"{settings.eth_rpc_url} serves chain {chain_id}, but CHAIN_ID is {settings.chain_id}"
        )
    log.info("watching Vault %s on chain %s from block %s", vault, chain_id, start)
    return WatcherService(
        bus or Bus(settings),
        Web3Chain(w3, vault),
        chain_id=chain_id,
        confirmations=settings.watcher_confirmations,
        start_block=start,
        poll_s=settings.watcher_poll_s,
    )
