"""Final logs → AccountEvent records, ids and the restart rule."""

from __future__ import annotations

from services.common.binding import from_avro, to_avro
from services.common.records import AccountEvent, DepositConfirmed, WithdrawalPaid
from services.common.serde import AvroSerde, ManifestRegistry
from services.watcher.core import (
    Block,
    Deposited,
    FinalBlock,
    VaultLog,
    Withdrawn,
    account_events,
    event_id,
    parse_event_id,
    resume_after,
)

TRADER = "0x" + "ab" * 20
BLOCK = Block(number=42, hash="0x" + "01" * 32, parent_hash="0x" + "00" * 32, timestamp=1_800_000_000)
TX = "0x" + "0f" * 32


def log(index: int, event: Deposited | Withdrawn) -> VaultLog:
    return VaultLog(block_number=42, block_hash=BLOCK.hash, tx_hash=TX, log_index=index, event=event)


def test_a_deposit_becomes_a_deposit_confirmed_keyed_by_trader_at_block_time() -> None:
    [event] = account_events(31337, [FinalBlock(BLOCK, (log(2, Deposited(TRADER, TRADER, 7_000_000, 7)),))])
    assert event == AccountEvent(
        event_id=f"chain:31337:{TX}:2",
        trader=TRADER,
        ts_event=1_800_000_000_000_000,
        body=DepositConfirmed(amount=7_000_000, chain_id=31337, tx_hash=TX, log_index=2, block_number=42),
    )


def test_a_withdrawal_becomes_a_withdrawal_paid() -> None:
    wid = "0192f0a1-7b3c-7def-8123-456789abcdef"
    [event] = account_events(1, [FinalBlock(BLOCK, (log(0, Withdrawn(TRADER, wid, 5, 5, True)),))])
    assert event.body == WithdrawalPaid(
        trader=TRADER,
        withdrawal_id=wid,
        amount=5,
        as_cxpt=True,
        chain_id=1,
        tx_hash=TX,
        log_index=0,
        block_number=42,
    )
    assert event.event_id == f"chain:1:{TX}:0"


def test_records_round_trip_through_the_accounts_events_schema() -> None:
    events = account_events(
        31337,
        [
            FinalBlock(
                BLOCK, (log(0, Deposited(TRADER, TRADER, 1, 1)), log(1, Withdrawn(TRADER, "x", 1, 1, False)))
            )
        ],
    )
    serde = AvroSerde(ManifestRegistry(), "exchange.cxpt.AccountEvent")
    for event in events:
        assert from_avro(AccountEvent, serde.decode(serde.encode(to_avro(event)))) == event


def test_event_ids_parse_back_and_other_producers_ids_do_not() -> None:
    parsed = parse_event_id(event_id(31337, TX.upper().replace("0X", "0x"), 4))
    assert parsed is not None and (parsed.chain_id, parsed.tx_hash, parsed.log_index) == (31337, TX, 4)
    assert parse_event_id("accounts.events:3:1200:0") is None
    assert parse_event_id("dev:dev-1234") is None


def test_resume_after_the_highest_emitted_block_or_before_the_start() -> None:
    assert resume_after([5, 9, 7], start_block=0) == 9
    assert resume_after([], start_block=0) == -1
    assert resume_after([], start_block=120) == 119
    assert resume_after([3], start_block=120) == 119
