"""Decoding the Vault's logs from raw topics and data."""

from __future__ import annotations

import uuid

import pytest
from eth_abi.abi import encode
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.crypto import keccak

from services.chain import artifacts
from services.watcher.core import Deposited, MalformedVaultLog, RawLog, Withdrawn, decode_vault_log
from services.watcher.core.logs import (
    DEPOSITED_SIGNATURE,
    DEPOSITED_TOPIC,
    WITHDRAWN_SIGNATURE,
    WITHDRAWN_TOPIC,
)

TRADER = "0x" + "ab" * 20
PAYER = "0x" + "cd" * 20
WITHDRAWAL = uuid.UUID("0192f0a1-7b3c-7def-8123-456789abcdef")


def address_topic(address: str) -> str:
    return "0x" + "00" * 12 + address[2:]


def raw(topics: tuple[str, ...], data: bytes) -> RawLog:
    return RawLog(
        address="0x" + "11" * 20,
        topics=topics,
        data=data,
        block_number=7,
        block_hash="0x" + "AA" * 32,
        tx_hash="0x" + "BB" * 32,
        log_index=3,
    )


def test_topics_are_the_keccak_of_the_signatures() -> None:
    assert "0x" + keccak(text=DEPOSITED_SIGNATURE).hex() == DEPOSITED_TOPIC
    assert "0x" + keccak(text=WITHDRAWN_SIGNATURE).hex() == WITHDRAWN_TOPIC


def test_topics_match_the_compiled_ivault_abi() -> None:
    abi = {e["name"]: e for e in artifacts.load("IVault").abi if e["type"] == "event"}
    assert "0x" + event_abi_to_log_topic(abi["Deposited"]).hex() == DEPOSITED_TOPIC  # type: ignore[arg-type]
    assert "0x" + event_abi_to_log_topic(abi["Withdrawn"]).hex() == WITHDRAWN_TOPIC  # type: ignore[arg-type]


def test_a_deposit_decodes_with_lower_case_addresses_and_hashes() -> None:
    log = decode_vault_log(
        raw(
            (DEPOSITED_TOPIC, address_topic(TRADER.upper().replace("0X", "0x")), address_topic(PAYER)),
            encode(["uint256", "uint256"], [1_000_000_000, 999]),
        )
    )
    assert log is not None
    assert log.event == Deposited(trader=TRADER, sender=PAYER, amount=1_000_000_000, shares=999)
    assert (log.block_number, log.block_hash, log.tx_hash, log.log_index) == (
        7,
        "0x" + "aa" * 32,
        "0x" + "bb" * 32,
        3,
    )


def test_a_withdrawal_id_is_the_uuid_of_the_bytes16_topic() -> None:
    log = decode_vault_log(
        raw(
            (WITHDRAWN_TOPIC, address_topic(TRADER), "0x" + WITHDRAWAL.bytes.hex() + "00" * 16),
            encode(["uint256", "uint256", "bool"], [5_000_000, 5_000_000, True]),
        )
    )
    assert log is not None
    assert log.event == Withdrawn(
        trader=TRADER, withdrawal_id=str(WITHDRAWAL), amount=5_000_000, shares=5_000_000, as_cxpt=True
    )


def test_other_vault_events_are_not_the_watchers() -> None:
    batch = "0x" + keccak(text="BatchSettled(bytes32,uint256,int256,int256,int256)").hex()
    assert decode_vault_log(raw((batch, "0x" + "00" * 32), b"")) is None
    assert decode_vault_log(raw((), b"")) is None


@pytest.mark.parametrize(
    "topics, data",
    [
        ((DEPOSITED_TOPIC, address_topic(TRADER)), encode(["uint256", "uint256"], [1, 1])),  # a topic short
        ((DEPOSITED_TOPIC, address_topic(TRADER), address_topic(PAYER)), b"\x01"),  # data cut
        ((DEPOSITED_TOPIC, "0x" + "ff" * 32, address_topic(PAYER)), encode(["uint256", "uint256"], [1, 1])),
        (
            (WITHDRAWN_TOPIC, address_topic(TRADER), "0x" + "ff" * 32),
            encode(["uint256", "uint256", "bool"], [1, 1, False]),
        ),
    ],
    ids=["missing-topic", "short-data", "not-an-address", "not-a-bytes16"],
)
def test_a_watched_topic_of_the_wrong_shape_is_refused_loudly(topics: tuple[str, ...], data: bytes) -> None:
    with pytest.raises(MalformedVaultLog):
        decode_vault_log(raw(topics, data))
