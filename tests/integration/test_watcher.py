"""The chain watcher on the real anvil and the real Kafka: the exchange deployed with
`deploy_exchange`, deposits made on-chain, blocks mined past the depth, AccountEvents read back.

Reorgs (`evm_snapshot` / `evm_revert`) rewind the *whole* chain, so those tests run on an anvil
of their own (same binary, a free port, no state file, stopped at the end): reverting the shared
anvil would wipe the contracts and transactions of everyone else using it. The happy path runs on
the shared anvil, signing with a fresh funded account (no nonce races).
"""

from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from web3 import Web3

from services.chain import client
from services.chain.artifacts import load
from services.chain.deploy import MOCK_USDC, VAULT, ExchangeDeployment, deploy_exchange, record
from services.common.binding import from_avro
from services.common.bus import Bus, read_topic
from services.common.records import AccountEvent, DepositConfirmed
from services.common.settings import REPO_ROOT, Settings
from services.common.topics import ACCOUNTS_EVENTS
from services.watcher.deposit import DepositDone, deposit
from services.watcher.service import DeepReorgError, WatcherService, Web3Chain, find_last_emitted
from tests.integration.chain import funded_key

ONE_USDC = 1_000_000


# -- chains -----------------------------------------------------------------------------------------


def _anvil_binary() -> str | None:
    found = glob.glob(str(REPO_ROOT / "deploy/local/node_modules/@foundry-rs/anvil-*/bin/anvil"))
    return found[0] if found else shutil.which("anvil")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_w3(tmp_path: Path) -> Iterator[Web3]:
    """An anvil of this test's own, for snapshots and reverts; stopped (by its pid) afterwards."""
    binary = _anvil_binary()
    if binary is None:
        pytest.skip("no anvil binary (deploy/local/node_modules or PATH)")
    port = _free_port()
    log = (tmp_path / "anvil.log").open("w")
    proc = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", str(port), "--chain-id", "31337"], stdout=log, stderr=log
    )
    try:
        w3 = client.connect(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 20
        while True:
            try:
                assert w3.eth.block_number >= 0
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield w3
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def shared_w3(settings: Settings) -> Web3:
    return client.connect(settings.eth_rpc_url)


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    response = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response["result"]


def exchange_on(w3: Web3, tmp_path: Path) -> tuple[ExchangeDeployment, Path]:
    """A fresh exchange (MockUSDC, CXPT, Vault behind its proxy), recorded in a deployment file."""
    admin = funded_key(w3)
    exchange = deploy_exchange(w3, admin_key=admin, settlement_address=client.address_of(funded_key(w3)))
    path = tmp_path / "deployments" / "local.json"
    record(path, exchange)
    return exchange, path


class Payer:
    """A funded account that minted and approved plenty of MockUSDC up front, so that each deposit
    afterwards is one transaction, one block: reorg tests then know exactly how deep they go."""

    def __init__(self, w3: Web3, exchange: ExchangeDeployment) -> None:
        self.w3 = w3
        self.key = funded_key(w3)
        self.vault = client.bind(w3, load(VAULT), exchange.vault)
        usdc = client.bind(w3, load(MOCK_USDC), exchange.usdc)
        client.transact(w3, usdc.functions.mint(client.address_of(self.key), 10**9 * ONE_USDC), key=self.key)
        client.transact(w3, usdc.functions.approve(exchange.vault, 10**9 * ONE_USDC), key=self.key)

    def deposit(self, to: str, amount: int) -> tuple[str, int]:
        """(tx hash, block number) of a deposit of `amount` for `to`."""
        call = self.vault.functions.deposit(Web3.to_checksum_address(to), amount)
        receipt = client.transact(self.w3, call, key=self.key)
        return "0x" + bytes(receipt["transactionHash"]).hex(), int(receipt["blockNumber"])


def trader(n: int) -> str:
    return "0x" + f"{n:040x}"


# -- reading back ---------------------------------------------------------------------------------


def chain_events(bus: Bus) -> list[AccountEvent]:
    serde = bus.serde(ACCOUNTS_EVENTS)
    events = [from_avro(AccountEvent, serde.decode(m.value())) for m in read_topic(bus, ACCOUNTS_EVENTS)]
    return [e for e in events if e.event_id.startswith("chain:")]


def watcher(bus: Bus, w3: Web3, exchange: ExchangeDeployment, confirmations: int) -> WatcherService:
    return WatcherService(
        bus,
        Web3Chain(w3, exchange.vault),
        chain_id=exchange.chain_id,
        confirmations=confirmations,
        start_block=exchange.block,
        poll_s=0.1,
    )


def mine(w3: Web3, blocks: int) -> None:
    rpc(w3, "anvil_mine", hex(blocks))


# -- tests ----------------------------------------------------------------------------------------


def test_a_deposit_is_emitted_once_after_the_depth_and_not_again_after_a_restart(
    bus: Bus, private_w3: Web3, tmp_path: Path
) -> None:
    # State: the exchange on a chain of our own, a watcher with depth 3.
    w3 = private_w3
    exchange, path = exchange_on(w3, tmp_path)
    service = watcher(bus, w3, exchange, confirmations=3)
    # Action: a deposit of 1000 USDC for trader 1, no blocks on top.
    done = deposit(w3, path, trader(1), 1_000 * ONE_USDC, key=None, mine=0)
    service.poll_once()
    # Expectation: 1 block deep → nothing; 2 deep → nothing; 3 deep → emitted.
    assert chain_events(bus) == []
    mine(w3, 1)
    service.poll_once()
    assert chain_events(bus) == []
    mine(w3, 1)
    assert service.poll_once().emitted == 1
    [event] = chain_events(bus)
    block = w3.eth.get_block(done.block_number)
    assert event == AccountEvent(
        event_id=done.event_id,
        trader=trader(1),
        ts_event=int(block["timestamp"]) * 1_000_000,
        body=DepositConfirmed(
            amount=1_000 * ONE_USDC,
            chain_id=31337,
            tx_hash=done.tx_hash,
            log_index=done.log_index,
            block_number=done.block_number,
        ),
    )
    # Action: more blocks, polls, then a restart (a new instance fences the old one) and polls.
    mine(w3, 5)
    service.poll_once()
    restarted = watcher(bus, w3, exchange, confirmations=3)
    mine(w3, 3)
    restarted.poll_once()
    # Expectation: still exactly one event; the cursor is that deposit.
    assert [e.event_id for e in chain_events(bus)] == [done.event_id]
    last = find_last_emitted(bus, 31337)
    assert last is not None and last.block_number == done.block_number


def test_a_reorg_shallower_than_the_depth_never_emits_the_orphaned_deposit(
    bus: Bus, private_w3: Web3, tmp_path: Path
) -> None:
    # State: the exchange, a payer ready, a watcher with depth 3 caught up; a snapshot.
    w3 = private_w3
    exchange, _ = exchange_on(w3, tmp_path)
    payer = Payer(w3, exchange)
    service = watcher(bus, w3, exchange, confirmations=3)
    service.poll_once()
    snapshot = rpc(w3, "evm_snapshot")
    # Action: a deposit and one block on it: read by the watcher, 2 deep of 3, pending.
    orphan_tx, orphan_block = payer.deposit(trader(2), 500 * ONE_USDC)
    mine(w3, 1)
    service.poll_once()
    assert service.tracker is not None
    assert orphan_block in {b.number for b in service.tracker.pending}
    # Action: a 2-block reorg (revert to the snapshot), another deposit, blocks past the depth.
    assert rpc(w3, "evm_revert", snapshot) is True
    canonical_tx, canonical_block = payer.deposit(trader(3), 700 * ONE_USDC)
    assert canonical_block == orphan_block
    mine(w3, 4)
    service.poll_once()
    # Expectation: the watcher dropped the orphaned blocks; only the new deposit is emitted.
    assert service.stats["dropped"] >= 1
    [event] = chain_events(bus)
    assert event.event_id == f"chain:31337:{canonical_tx}:{event.body.log_index}"  # type: ignore[union-attr]
    assert event.trader == trader(3)
    # Action: a restart, more blocks. Expectation: nothing twice, the orphan never.
    mine(w3, 3)
    watcher(bus, w3, exchange, confirmations=3).poll_once()
    events = chain_events(bus)
    assert [e.event_id for e in events] == [event.event_id]
    assert orphan_tx not in {e.body.tx_hash for e in events if isinstance(e.body, DepositConfirmed)}


def test_a_reorg_under_a_final_block_stops_the_watcher(bus: Bus, private_w3: Web3, tmp_path: Path) -> None:
    # State: depth 2; a deposit emitted (final).
    w3 = private_w3
    exchange, path = exchange_on(w3, tmp_path)
    service = watcher(bus, w3, exchange, confirmations=2)
    snapshot = rpc(w3, "evm_snapshot")
    first = deposit(w3, path, trader(4), 10 * ONE_USDC, key=None, mine=2)
    service.poll_once()
    assert [e.event_id for e in chain_events(bus)] == [first.event_id]
    # Action: a reorg replacing the final block, the new branch longer.
    rpc(w3, "evm_revert", snapshot)
    deposit(w3, path, trader(5), 20 * ONE_USDC, key=None, mine=6)
    # Expectation: the running watcher stops; a restarted one refuses to start; nothing emitted.
    with pytest.raises(DeepReorgError, match="deep reorg"):
        service.poll_once()
    with pytest.raises(DeepReorgError, match="no longer on chain"):
        watcher(bus, w3, exchange, confirmations=2)
    assert [e.event_id for e in chain_events(bus)] == [first.event_id]


def test_a_fenced_instance_cannot_emit_and_the_new_one_emits_each_deposit_once(
    bus: Bus, private_w3: Web3, tmp_path: Path
) -> None:
    # State: an instance that emitted one deposit; another deposit pending.
    w3 = private_w3
    exchange, path = exchange_on(w3, tmp_path)
    old = watcher(bus, w3, exchange, confirmations=2)
    first = deposit(w3, path, trader(6), 1 * ONE_USDC, key=None, mine=1)
    old.poll_once()
    second = deposit(w3, path, trader(7), 2 * ONE_USDC, key=None, mine=0)
    old.poll_once()  # the second is read, pending
    # Action: a new instance starts (fencing the old one); blocks arrive; both poll.
    new = watcher(bus, w3, exchange, confirmations=2)
    mine(w3, 2)
    with pytest.raises(KafkaException):
        old.poll_once()
    new.poll_once()
    # Expectation: each deposit exactly once.
    assert sorted(e.event_id for e in chain_events(bus)) == sorted([first.event_id, second.event_id])


def test_the_dev_deposit_command_on_the_shared_anvil_reaches_accounts_events(
    bus: Bus, shared_w3: Web3, tmp_path: Path
) -> None:
    # State: an exchange of this test's own on the shared anvil (others may mine blocks too).
    exchange, path = exchange_on(shared_w3, tmp_path)
    service = watcher(bus, shared_w3, exchange, confirmations=2)
    # Action: the dev command's deposit, which mines confirmations − 1 blocks itself.
    done: DepositDone = deposit(shared_w3, path, trader(8), 42 * ONE_USDC, key=None, mine=1)
    deadline = time.monotonic() + 10
    while not chain_events(bus) and time.monotonic() < deadline:
        service.poll_once()
    # Expectation: one DepositConfirmed for trader 8, however many more polls.
    service.poll_once()
    [event] = chain_events(bus)
    assert (event.event_id, event.trader) == (done.event_id, trader(8))
    assert isinstance(event.body, DepositConfirmed) and event.body.amount == 42 * ONE_USDC
