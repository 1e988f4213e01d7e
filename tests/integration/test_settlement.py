"""Settlement on the real Kafka, anvil and Cassandra: accounts.events written as risk writes them
(BalanceChanged per step, ExchangeAccountsChanged last; deposits matched by real Vault deposits),
the exchange deployed with `deploy_exchange`, the service run in-process or as a subprocess.

Each test deploys its own Vault and signs with fresh accounts funded through anvil_setBalance, so
tests running side by side never share a nonce or a Vault.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from cassandra.cluster import Session
from eth_account import Account
from web3 import Web3

from services.chain import artifacts, client
from services.chain.deploy import ExchangeDeployment, deploy_exchange
from services.common.binding import from_avro, to_avro
from services.common.bus import Bus, Outbound, TypedProducer, read_topic
from services.common.partitioning import partition_for
from services.common.records import AccountEvent, BatchStatus, SettlementBatch, WithdrawalFailed
from services.common.settings import REPO_ROOT, Settings
from services.common.topics import ACCOUNTS_EVENTS, SETTLEMENT_BATCHES
from services.gateway.core.typed_data import ExchangeDomain, Withdrawal, sign
from services.settlement.core import Batch
from services.settlement.service import SettlementService
from services.settlement.store import BatchProjection
from services.settlement.vault import GWEI, GasPolicy, RevertedError, Sent, VaultClient
from tests.integration.chain import funded_key
from tests.unit.settlement.risk_stream import RiskPartition

USDC = 1_000_000


def trader_in(partition: int) -> tuple[str, str]:
    """(address lower-case, key) of a new trader whose accounts.events partition is `partition`."""
    while True:
        account = Account.create()
        if partition_for(account.address.lower(), ACCOUNTS_EVENTS.partitions) == partition:
            return account.address.lower(), "0x" + bytes(account.key).hex()


@dataclass
class Exchange:
    """One deployed exchange, its settlement key, and the risk partitions' ledgers we write."""

    w3: Web3
    settings: Settings
    bus: Bus
    deployment: ExchangeDeployment
    admin_key: str
    settlement_key: str
    ledgers: dict[int, RiskPartition] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.producer = TypedProducer(self.bus)
        self.usdc = client.bind(self.w3, artifacts.load("MockUSDC"), self.deployment.usdc)
        self.vault = self.vault_client()

    def vault_client(self, *, max_fee_gwei: int = 200) -> VaultClient:
        """A new client of the deployed Vault with the settlement key (its own nonce count)."""
        return VaultClient(
            self.w3, artifacts.load("Vault"), self.deployment.vault, self.settlement_key,
            gas=GasPolicy(max_fee_gwei * GWEI, GWEI), from_block=self.deployment.block,
        )  # fmt: skip

    def traded_pair(self, partition: int) -> tuple[str, str]:
        """Two new traders on `partition`, 100 USDC deposited each, then the first pays the second
        1 USDC less a 0.005 USDC fee."""
        (alice, _), (bob, _) = trader_in(partition), trader_in(partition)
        for trader in (alice, bob):
            self.deposit(trader, 100 * USDC)
        self.trade(partition, {alice: -USDC, bob: USDC - 5_000}, fees=5_000)
        return alice, bob

    def ledger(self, trader: str) -> RiskPartition:
        p = partition_for(trader, ACCOUNTS_EVENTS.partitions)
        return self.ledgers.setdefault(p, RiskPartition(p, chain_id=self.deployment.chain_id))

    def write(self, partition: int, records: list[AccountEvent]) -> None:
        """Produce `records` to accounts.events partition `partition` (as risk partition p does)."""
        for record in records:
            self.producer.send(
                Outbound(ACCOUNTS_EVENTS, key=record.trader, value=to_avro(record), partition=partition)
            )
        self.producer.flush()

    def deposit(self, trader: str, amount: int) -> None:
        """A real Vault deposit (minted MockUSDC, by the admin for the trader), then its records."""
        admin = client.address_of(self.admin_key)
        for call in (
            self.usdc.functions.mint(admin, amount),
            self.usdc.functions.approve(self.deployment.vault, amount),
        ):
            client.transact(self.w3, call, key=self.admin_key)
        vault = client.bind(self.w3, artifacts.load("Vault"), self.deployment.vault)
        receipt = client.transact(
            self.w3, vault.functions.deposit(Web3.to_checksum_address(trader), amount), key=self.admin_key
        )
        ledger = self.ledger(trader)
        self.write(
            ledger.partition, ledger.deposit(trader, amount, tx_hash=receipt["transactionHash"].to_0x_hex())
        )

    def trade(self, partition: int, moves: dict[str, int], fees: int, insurance: int = 0) -> None:
        ledger = self.ledgers.setdefault(partition, RiskPartition(partition))
        self.write(partition, ledger.trade(moves, fees=fees, insurance=insurance))

    def signed_withdrawal(
        self, trader: str, key: str, amount: int, deadline: int
    ) -> tuple[str, bytes, int]:  # fmt: skip
        """(withdrawal id, EIP-712 signature, nonce) the trader signs for the Vault."""
        wid = uuid.uuid4()
        nonce = time.time_ns() // 1000
        struct = Withdrawal(trader=trader, withdrawal_id=wid, amount=amount, as_cxpt=False, nonce=nonce,
                            deadline=deadline)  # fmt: skip
        domain = ExchangeDomain(self.deployment.chain_id, self.deployment.vault)
        return str(wid), sign(domain, struct, key), nonce

    def agrees(self) -> bool:
        """Whether every trader's Vault balance and the exchange accounts equal the ledger's."""
        for ledger in self.ledgers.values():
            for trader, account in ledger.accounts.items():
                if self.vault.balance_of(trader) != account.total:
                    return False
        ledger_accounts = tuple(
            sum(getattr(ledger, name) for ledger in self.ledgers.values())
            for name in ("fees", "clearing", "insurance")
        )
        return self.vault.exchange_accounts() == ledger_accounts


@pytest.fixture
def exchange(settings: Settings, bus: Bus) -> Exchange:
    w3 = client.connect(settings.eth_rpc_url)
    admin_key, settlement_key = funded_key(w3), funded_key(w3)
    deployment = deploy_exchange(
        w3, admin_key=admin_key, settlement_address=client.address_of(settlement_key)
    )
    fast = settings.model_copy(
        update={
            "vault_address": deployment.vault,
            "settlement_batch_window_s": 1,
            "settlement_withdrawal_margin_s": 5,
        }
    )
    return Exchange(w3, fast, Bus(fast), deployment, admin_key, settlement_key)


def statuses(bus: Bus) -> dict[str, list[SettlementBatch]]:
    """Every settlement.batches record, per batch id, in order."""
    found: dict[str, list[SettlementBatch]] = {}
    serde = bus.serde(SETTLEMENT_BATCHES)
    for message in read_topic(bus, SETTLEMENT_BATCHES):
        record: SettlementBatch = from_avro(SettlementBatch, serde.decode(message.value()))
        found.setdefault(record.batch_id, []).append(record)
    return found


def account_events(bus: Bus) -> list[AccountEvent]:
    serde = bus.serde(ACCOUNTS_EVENTS)
    return [from_avro(AccountEvent, serde.decode(m.value())) for m in read_topic(bus, ACCOUNTS_EVENTS)]


def run_until(service: SettlementService, done: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out; stats {service.stats}"
        service.step(0.2)


def all_confirmed(bus: Bus, at_least: int) -> Callable[[], bool]:
    def check() -> bool:
        latest = [records[-1].status for records in statuses(bus).values()]
        return len(latest) >= at_least and all(s is BatchStatus.CONFIRMED for s in latest)

    return check


def settled_events(ex: Exchange, batch_id: str) -> int:
    event = ex.vault.contract.events.BatchSettled()
    logs = event.get_logs(
        from_block=ex.deployment.block, argument_filters={"batchId": bytes.fromhex(batch_id[2:])}
    )
    return len(logs)


# -- end to end ---------------------------------------------------------------------------------


def test_trades_settle_to_the_micro_unit_and_a_withdrawal_is_paid_once_covered(
    exchange: Exchange, cassandra_session: Session
) -> None:
    ex = exchange
    # State: Alice and Bob on partition 1, Carol on partition 5; real deposits on the Vault.
    (alice, _), (bob, bob_key), (carol, _) = trader_in(1), trader_in(1), trader_in(5)
    for trader, amount in ((alice, 1_000 * USDC), (bob, 500 * USDC), (carol, 200 * USDC)):
        ex.deposit(trader, amount)
    # Trades: Alice pays Bob 120.5 USDC with a 0.6 fee; Carol (another partition) gains 3 USDC of
    # PnL out of CLEARING, which partition 1's CLEARING holds; INSURANCE takes 0.000001.
    ex.trade(1, {alice: -121_100_000, bob: 120_500_000 - 1}, fees=600_000, insurance=1)
    ex.trade(5, {carol: 3 * USDC}, fees=0)
    ex.trade(1, {alice: -2_999_999, bob: 0}, fees=0)

    keyspace = ex.settings.cassandra_keyspace
    service = SettlementService(
        ex.bus, ex.vault, projection=BatchProjection(ex.bus, cassandra_session, keyspace)
    )
    try:
        service.start()
        run_until(service, lambda: all_confirmed(ex.bus, 2)() and ex.agrees())
        # Expectation: the Vault holds exactly what the ledger says, per trader and per account.
        assert ex.vault.balance_of(alice) == 1_000 * USDC - 121_100_000 - 2_999_999
        assert ex.vault.balance_of(carol) == 203 * USDC
        # CLEARING: 0 (first trade) − 3,000,000 (Carol, partition 5) + 2,999,999 (Alice) = −1.
        assert ex.vault.exchange_accounts() == (600_000, -1, 1)

        # Action: Bob withdraws 100 USDC (signed); one with a deadline already past.
        deadline = int(time.time() + 3600) * 1_000_000
        wid, signature, nonce = ex.signed_withdrawal(bob, bob_key, 100 * USDC, deadline)
        ledger = ex.ledger(bob)
        requested = ledger.request_withdrawal(
            bob, 100 * USDC, withdrawal_id=wid, expire_at=deadline, signature=signature, nonce=nonce
        )
        ex.write(ledger.partition, requested)
        stale_id, stale_sig, stale_nonce = ex.signed_withdrawal(bob, bob_key, 5 * USDC, 1_000_000)
        stale = ledger.request_withdrawal(
            bob, 5 * USDC, withdrawal_id=stale_id, expire_at=1_000_000, signature=stale_sig, nonce=stale_nonce
        )
        ex.write(ledger.partition, stale)
        bob_usdc = ex.usdc.functions.balanceOf(Web3.to_checksum_address(bob)).call()
        run_until(service, lambda: ex.vault.withdrawal_paid(wid))
        run_until(service, lambda: any(isinstance(e.body, WithdrawalFailed) for e in account_events(ex.bus)))
        # Expectation: Bob got 100 USDC; the stale one failed, DEADLINE_PASSED, keyed by Bob.
        assert ex.usdc.functions.balanceOf(Web3.to_checksum_address(bob)).call() == bob_usdc + 100 * USDC
        failed = [(e.trader, e.body) for e in account_events(ex.bus) if isinstance(e.body, WithdrawalFailed)]
        assert [(trader, body.withdrawal_id, body.reason) for trader, body in failed] == [
            (bob, stale_id, "DEADLINE_PASSED")
        ]

        # The watcher's WithdrawalPaid and risk's answers come back: the ledger and the chain agree again.
        ex.write(ledger.partition, ledger.withdrawal_paid(wid) + ledger.withdrawal_failed(stale_id)[1:])
        run_until(service, lambda: ex.agrees() and not service.core.withdrawals.pending())
        assert service.core.folds[1].totals[bob] == ex.vault.balance_of(bob)

        # Cassandra: one row per batch, at its latest status.
        run_until(service, lambda: service.projection is not None and service.projection.written >= 6)
        recorded = statuses(ex.bus)
        rows = {
            r.batch_id: r for r in cassandra_session.execute(f"SELECT * FROM {keyspace}.settlement_batches")
        }
        for batch_id, records in recorded.items():
            assert (
                rows[batch_id].status == "CONFIRMED"
                and rows[batch_id].to_offset == records[-1].ranges[0].to_offset
            )
    finally:
        service.close()


# -- crash between submit and record ------------------------------------------------------------


def _start(ex: Exchange, failpoints: str = "") -> subprocess.Popen[bytes]:
    s = ex.settings
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
        "CASSANDRA_CONTACT_POINTS": s.cassandra_contact_points,
        "CASSANDRA_PORT": str(s.cassandra_port),
        "CASSANDRA_KEYSPACE": s.cassandra_keyspace,
        "ETH_RPC_URL": s.eth_rpc_url,
        "TOPIC_PREFIX": s.topic_prefix,
        "VAULT_ADDRESS": ex.deployment.vault,
        "CHAIN_SETTLEMENT_KEY": ex.settlement_key,
        "SETTLEMENT_BATCH_WINDOW_S": "1",
        "CXPT_FAILPOINTS": failpoints,
        "LOG_JSON": "false",
    }
    return subprocess.Popen([sys.executable, "-m", "services.settlement"], cwd=REPO_ROOT, env=env)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_for(done: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def test_killed_after_submitting_and_before_recording_a_batch_settles_it_once(
    exchange: Exchange, cassandra_session: Session, processes: list[subprocess.Popen[bytes]]
) -> None:
    ex = exchange
    (alice, _), (bob, _) = trader_in(2), trader_in(2)
    ex.deposit(alice, 50 * USDC)
    ex.deposit(bob, 50 * USDC)
    ex.trade(2, {alice: -7 * USDC, bob: 7 * USDC - 70_000}, fees=70_000)

    # Action: the service sends the batch's settle(), then is SIGKILLed before recording SUBMITTED.
    first = _start(ex, failpoints="settlement.after_submit=kill@1")
    processes.append(first)
    assert first.wait(60) == -signal.SIGKILL
    (batch_id,) = statuses(ex.bus)
    assert [r.status for r in statuses(ex.bus)[batch_id]] == [BatchStatus.BUILT]
    assert ex.vault.batch_settled(batch_id)  # the transaction went through before the kill

    # Restart; more trades arrive.
    processes.append(_start(ex))
    ex.trade(2, {alice: -1 * USDC, bob: 1 * USDC}, fees=0)
    wait_for(lambda: all_confirmed(ex.bus, 2)() and ex.agrees())

    # Expectation: the first batch settled exactly once, recorded CONFIRMED with that transaction;
    # no batch lost; the chain equals the ledger.
    records = statuses(ex.bus)
    assert settled_events(ex, batch_id) == 1
    assert [r.status for r in records[batch_id]] == [BatchStatus.BUILT, BatchStatus.CONFIRMED]
    assert records[batch_id][-1].tx_hash == ex.vault.settled_by(batch_id)
    assert all(settled_events(ex, other) == 1 for other in records)
    ranges = sorted((r[0].ranges[0].from_offset, r[0].ranges[0].to_offset) for r in records.values())
    assert ranges[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(ranges))


# -- a stuck transaction ------------------------------------------------------------------------


def automine(w3: Web3, on: bool) -> None:
    """anvil mines a block per transaction (on), or only when told (`evm_mine`): a stuck mempool."""
    w3.provider.make_request("evm_setAutomine", [on])  # type: ignore[arg-type]


def test_a_stuck_settle_transaction_is_replaced_with_higher_fees_even_across_a_restart(
    exchange: Exchange,
) -> None:
    ex = exchange
    # State: deposits and a trade on partition 2; then the chain stops including transactions.
    alice, _ = ex.traded_pair(2)
    impatient = ex.settings.model_copy(update={"settlement_stuck_after_s": 1.0})
    first = SettlementService(Bus(impatient), ex.vault)
    sends: list[Sent] = []  # each send as the node holds it while pending

    def sent_again() -> Callable[[], bool]:
        """True once the batch's latest recorded send is a new transaction pending at the node."""

        def check() -> bool:
            latest = [r for r in statuses(ex.bus).values() if r[-1].ranges[0].partition == 2]
            if not latest or latest[0][-1].status is not BatchStatus.SUBMITTED:
                return False
            held = ex.vault.pending(latest[0][-1].tx_hash or "")
            if held is not None and (not sends or held.tx_hash != sends[-1].tx_hash):
                sends.append(held)
                return True
            return False

        return check

    automine(ex.w3, False)
    try:
        first.start()
        run_until(first, sent_again())
        # Action: the settle transaction waits in the mempool past SETTLEMENT_STUCK_AFTER_S.
        run_until(first, sent_again())
        first.close()
        # Action: a new process (its own nonce count) starts while the replacement is pending.
        second = SettlementService(Bus(impatient), ex.vault_client())
        second.start()
        run_until(second, sent_again())
        ex.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    finally:
        automine(ex.w3, True)
    try:
        run_until(second, lambda: all_confirmed(ex.bus, 1)() and ex.agrees())
    finally:
        second.close()

    # Expectation: three sends of one call with one nonce, each fee at least 12.5 % above the last;
    # the last one mined and recorded, the others gone from the node; the batch settled once.
    assert len(sends) == 3 and len({s.nonce for s in sends}) == 1
    for earlier, later in itertools.pairwise(sends):
        assert later.max_fee_wei >= earlier.max_fee_wei * 9 // 8
        assert later.priority_fee_wei >= earlier.priority_fee_wei * 9 // 8
    (records,) = [r for r in statuses(ex.bus).values() if r[-1].ranges[0].partition == 2]
    assert records[-1].status is BatchStatus.CONFIRMED and records[-1].tx_hash == sends[-1].tx_hash
    assert [ex.vault.mined(s.tx_hash) is not None for s in sends] == [False, False, True]
    assert settled_events(ex, records[-1].batch_id) == 1
    assert ex.vault.balance_of(alice) == 99 * USDC


def test_a_send_the_node_refuses_for_its_fee_fails_the_batch_and_the_retry_settles_it(
    exchange: Exchange,
) -> None:
    ex = exchange
    # State: a trade on partition 3; a settlement key allowed at most 1 gwei a gas, and the next
    # block's base fee at 5 gwei.
    alice, _ = ex.traded_pair(3)
    service = SettlementService(ex.bus, ex.vault_client(max_fee_gwei=1))

    def next_base_fee(wei: int) -> None:
        ex.w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(wei)])  # type: ignore[arg-type]

    try:
        next_base_fee(5 * GWEI)
        # Action: settlement builds the batch and sends it.
        service.start()
        run_until(service, lambda: service.stats["failed"] >= 1)
        # Expectation: FAILED with the node's reason, nothing sent; the loop goes on.
        (records,) = [r for r in statuses(ex.bus).values() if r[-1].ranges[0].partition == 3]
        assert records[-1].status is BatchStatus.FAILED and records[-1].tx_hash is None
        assert "refused by the node for its fee" in records[-1].detail
        # Action: the base fee falls back under the cap; the retry after its back-off settles it.
        next_base_fee(GWEI // 10)
        run_until(service, lambda: all_confirmed(ex.bus, 1)() and ex.agrees())
    finally:
        next_base_fee(GWEI // 10)
        service.close()
    assert ex.vault.balance_of(alice) == 99 * USDC


# -- refusals -----------------------------------------------------------------------------------


def test_the_vault_refuses_a_settlement_from_an_account_without_the_role_and_a_used_batch_id(
    exchange: Exchange,
) -> None:
    ex = exchange
    (alice, _) = trader_in(3)
    ex.deposit(alice, 10 * USDC)
    batch = Batch(ex.bus.topic(ACCOUNTS_EVENTS).name, 3, 0, 2, ((alice, -USDC),), USDC, 0, 0)  # type: ignore[arg-type]
    batch_id = batch.id(ex.deployment.chain_id, ex.deployment.vault)
    outsider = VaultClient(
        ex.w3,
        artifacts.load("Vault"),
        ex.deployment.vault,
        funded_key(ex.w3),
        gas=GasPolicy(200 * GWEI, GWEI),
    )
    # An account without SETTLEMENT_ROLE: refused, named.
    revert = outsider.simulate(outsider.settle_call(batch_id, batch))
    assert revert is not None and revert.name == "AccessControlUnauthorizedAccount"
    with pytest.raises(RevertedError, match="AccessControlUnauthorizedAccount"):
        outsider.send(outsider.settle_call(batch_id, batch))
    # The settlement key: accepted once, then the same id is refused.
    sent = ex.vault.send(ex.vault.settle_call(batch_id, batch))
    wait_for(lambda: ex.vault.mined(sent.tx_hash) is not None)
    mined = ex.vault.mined(sent.tx_hash)
    assert mined is not None and mined.succeeded
    again = ex.vault.simulate(ex.vault.settle_call(batch_id, batch))
    assert again is not None and again.name == "BatchAlreadySettled"
    assert ex.vault.balance_of(alice) == 9 * USDC and settled_events(ex, batch_id) == 1
