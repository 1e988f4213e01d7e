"""Custody end to end on the running stack: deposit on-chain, trade, settle, withdraw — and the
chain equals the ledger to the micro-unit.

Real parts only, in threads of this process: the matcher and risk on Kafka, the chain watcher and
the settlement service on the shared anvil, against a Vault deployed for this test. Orders and the
withdrawal are the trader commands the gateway would forward (the withdrawal signed for the Vault
with EIP-712: the Vault verifies the signature again on-chain).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from web3 import Web3

from services.chain import artifacts, client
from services.chain.deploy import ExchangeDeployment, deploy_exchange
from services.common.binding import to_avro
from services.common.bus import Bus, Outbound, TypedProducer
from services.common.records import MatcherCommand, PlaceOrder, RequestWithdrawal, Side, TraderCommand
from services.common.settings import Settings
from services.common.topics import MATCHER_COMMANDS, ORDERS_COMMANDS, TRADE_LOG, TRADER_PARTITIONS
from services.gateway.core.typed_data import ExchangeDomain, Withdrawal, sign
from services.risk.core import RiskEngine
from services.risk.service import rebuild
from services.settlement.service import SettlementService
from services.settlement.vault import GWEI, GasPolicy, VaultClient
from services.watcher.service import WatcherService, Web3Chain
from tests.integration.chain import funded_key
from tests.integration.stack import exchange
from tests.integration.test_risk_service import Tail
from tests.kit import Commands, limit_order, order_id

USDC = 1_000_000
PRICE = 650_000


def eventually(check: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


class Custody:
    """A Vault deployed for the test, the services around it, and what traders do."""

    def __init__(self, settings: Settings) -> None:
        self.w3 = client.connect(settings.eth_rpc_url)
        self.admin_key, settlement_key = funded_key(self.w3), funded_key(self.w3)
        self.deployment: ExchangeDeployment = deploy_exchange(
            self.w3, admin_key=self.admin_key, settlement_address=client.address_of(settlement_key)
        )
        self.settings = settings.model_copy(
            update={
                "vault_address": self.deployment.vault,
                "settlement_batch_window_s": 1,
                "settlement_withdrawal_margin_s": 5,
            }
        )
        self.bus = Bus(self.settings)
        self.vault = VaultClient(
            self.w3, artifacts.load("Vault"), self.deployment.vault, settlement_key,
            gas=GasPolicy(200 * GWEI, GWEI), from_block=self.deployment.block,
        )  # fmt: skip
        self.usdc = client.bind(self.w3, artifacts.load("MockUSDC"), self.deployment.usdc)
        self._producer = TypedProducer(self.bus)
        self._log = Tail(self.bus, TRADE_LOG)
        self._sent = 0

    def services(self) -> tuple[WatcherService, SettlementService]:
        watcher = WatcherService(
            Bus(self.settings), Web3Chain(self.w3, self.deployment.vault), chain_id=self.deployment.chain_id,
            confirmations=1, start_block=self.deployment.block, poll_s=0.3,
        )  # fmt: skip
        return watcher, SettlementService(Bus(self.settings), self.vault)

    def list_btc_perp(self) -> None:
        listing: MatcherCommand = Commands(start_us=time.time_ns() // 1_000).create()
        self._send(MATCHER_COMMANDS, listing.market, listing)

    def deposit(self, trader_key: str, amount: int) -> None:
        """The trader's own wallet approves and deposits (MockUSDC minted to it first)."""
        wallet = client.address_of(trader_key)
        vault = client.bind(self.w3, artifacts.load("Vault"), self.deployment.vault)
        client.transact(self.w3, self.usdc.functions.mint(wallet, amount), key=self.admin_key)
        client.transact(self.w3, self.usdc.functions.approve(self.deployment.vault, amount), key=trader_key)
        client.transact(self.w3, vault.functions.deposit(wallet, amount), key=trader_key)

    def order(self, trader: str, side: Side, lots: int, price: int) -> None:
        """Place an order and wait until the book has it: traders' commands pass risk on their own
        partitions, so two sent back to back could reach the matcher in either order."""
        self._sent += 1
        body = limit_order(100 + self._sent, side, lots, price, nonce=time.time_ns() // 1_000)
        self._command(trader, body)
        self._log.until(lambda entries: any(b.get("order_id") == body.order_id for e in entries
                                            for _, b in e.value["events"]))  # fmt: skip

    def withdraw(self, trader: str, trader_key: str, amount: int) -> None:
        """A withdrawal signed for the Vault, as the gateway forwards it."""
        deadline = (int(time.time()) + 3_600) * 1_000_000
        wid, nonce = uuid.uuid4(), time.time_ns() // 1_000
        struct = Withdrawal(
            trader=trader, withdrawal_id=wid, amount=amount, as_cxpt=False, nonce=nonce, deadline=deadline
        )
        signature = sign(ExchangeDomain(self.deployment.chain_id, self.deployment.vault), struct, trader_key)
        self._command(
            trader,
            RequestWithdrawal(
                withdrawal_id=str(wid), amount=amount, nonce=nonce, expire_at=deadline, signature=signature
            ),
        )

    def ledger(self) -> dict[int, RiskEngine]:
        """Risk's committed state, rebuilt from its changelog."""
        return rebuild(self.bus, range(TRADER_PARTITIONS))

    def wallet_usdc(self, trader: str) -> int:
        return int(self.usdc.functions.balanceOf(Web3.to_checksum_address(trader)).call())

    def chain_equals_ledger(self, traders: list[str]) -> bool:
        """Every trader's Vault balance and the exchange accounts equal risk's ledger."""
        engines = self.ledger()
        accounts = tuple(
            sum(getattr(e.ledger, name) for e in engines.values())
            for name in ("fees", "clearing", "insurance")
        )
        return all(self.vault.balance_of(t) == total(engines, t) for t in traders) and (
            self.vault.exchange_accounts() == accounts
        )

    def close(self) -> None:
        self._log.close()

    def _command(self, trader: str, body: PlaceOrder | RequestWithdrawal) -> None:
        self._sent += 1
        command = TraderCommand(
            command_id=order_id(7_000_000 + self._sent), trader=trader, ts_init=body.nonce, body=body
        )
        self._send(ORDERS_COMMANDS, trader, command)

    def _send(self, spec: object, key: str, value: object) -> None:
        self._producer.send(Outbound(spec, key=key, value=to_avro(value)))  # type: ignore[arg-type]
        self._producer.flush()


def total(engines: dict[int, RiskEngine], trader: str) -> int:
    """A trader's USDC in the ledger: every bucket."""
    for engine in engines.values():
        account = engine.ledger.accounts.get(trader)
        if account is not None:
            return account.free + account.reserved + account.withdrawing + account.locked
    return 0


@pytest.fixture
def custody(settings: Settings, bus: Bus) -> Iterator[Custody]:
    custody = Custody(settings)  # `bus` created the test's topics
    yield custody
    custody.close()


def test_deposit_trade_settle_withdraw_and_the_chain_equals_the_ledger(custody: Custody) -> None:
    # State: a Vault on anvil; matcher, risk, chain watcher and settlement running; two traders.
    alice_key, bob_key = funded_key(custody.w3), funded_key(custody.w3)
    alice, bob = (client.address_of(k).lower() for k in (alice_key, bob_key))
    with exchange(custody.settings, *custody.services()):
        custody.list_btc_perp()
        # Action: each deposits 1,000 USDC on-chain. Expectation: the watcher brings both to risk.
        custody.deposit(alice_key, 1_000 * USDC)
        custody.deposit(bob_key, 1_000 * USDC)
        eventually(lambda: all(total(custody.ledger(), t) == 1_000 * USDC for t in (alice, bob)), "deposits")

        # Action: Bob sells Alice 2 lots at 65,000 and buys them back from her at 66,000.
        for trader, side, price in (
            (bob, Side.SELL, PRICE),
            (alice, Side.BUY, PRICE),
            (alice, Side.SELL, PRICE + 10_000),
            (bob, Side.BUY, PRICE + 10_000),
        ):
            custody.order(trader, side, 2, price)
        # Expectation: Alice's 2 USDC of PnL (less fees) reach the chain in a settlement batch.
        eventually(lambda: total(custody.ledger(), alice) > 1_000 * USDC, "the round trip in the ledger")
        eventually(lambda: custody.chain_equals_ledger([alice, bob]), "the trades settled on-chain")

        # Action: Alice withdraws 500 USDC. Expectation: paid to her wallet; once the watcher has
        # reported it to risk, the chain and the ledger agree again to the micro-unit.
        custody.withdraw(alice, alice_key, 500 * USDC)
        eventually(lambda: custody.wallet_usdc(alice) == 500 * USDC, "the withdrawal paid")
        eventually(
            lambda: sum(e.ledger.withdrawn for e in custody.ledger().values()) == 500 * USDC,
            "the ledger to book the withdrawal",
        )
        eventually(lambda: custody.chain_equals_ledger([alice, bob]), "the chain and the ledger to agree")
    # And no USDC appeared or vanished: the Vault holds what the ledger owes.
    engines = custody.ledger()
    owed = total(engines, alice) + total(engines, bob)
    owed += sum(e.ledger.fees + e.ledger.clearing + e.ledger.insurance for e in engines.values())
    assert owed == 1_500 * USDC == custody.usdc.functions.balanceOf(custody.deployment.vault).call()
