"""EIP-712 structs: the worked example stays fixed, hashes match an independent encoding, a
signature binds to its signer, its fields and its domain, and only the canonical encoding passes."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any
from uuid import UUID

import pytest
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_utils.crypto import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.codes import GatewayReject
from services.common.settings import REPO_ROOT
from services.gateway.core.typed_data import (
    SECP256K1_N,
    TYPE_STRINGS,
    Amend,
    Cancel,
    CancelAll,
    ExchangeDomain,
    InvalidSignature,
    InvalidTypedData,
    Order,
    OrderTypeCode,
    Session,
    SideCode,
    SignatureRejected,
    StpCode,
    Struct,
    TimeInForceCode,
    Withdrawal,
    digest,
    domain_separator,
    recover_signer,
    sign,
    signable,
    struct_hash,
    type_hash,
    verify,
)
from tests.unit.gateway.kit import (
    ALICE,
    ALICE_KEY,
    ANVIL_CHAIN_ID,
    BOB,
    BOB_KEY,
    LOCAL_DOMAIN,
    MALLORY,
    MALLORY_KEY,
    VAULT_ON_ANVIL,
    amend_alice_order_1_to_size_2,
    cancel_alice_order_1,
    cancel_all_alice_everywhere,
    order_alice_buy_3_lots_at_650005_gtc,
    withdrawal_alice_250_usdc,
)

SIGNING_DOC = (REPO_ROOT / "docs" / "signing.md").read_text()

# The worked example of docs/signing.md. If one of these changes, every client and the Solidity
# verifier disagree with the gateway: change them only together with a new domain version.
EXAMPLE_DOMAIN_SEPARATOR = "b6c77195e204fe31a497cd86b92d555a19165e25a6b7082817f96a15ffa7d1ad"
EXAMPLE_STRUCT_HASH = "f33423f2f157db1b4bdff8a81904426194cf8cde8ef704188effd459a5fcb9d0"
EXAMPLE_DIGEST = "37eb302d0a21ce3b7bf09f773a7588956b1d382d3a510769edbf2903b54a2168"
EXAMPLE_SIGNATURE = (
    "336cc9658c0533daa497a1fd5a20088cee5969b945847a8195b3c334dd01414c"
    "570afc1c51725e4e1bb2f4b171ceef39043dafbf9e6f5566209584923bc5c6151c"
)
TYPE_HASHES = {
    "EIP712Domain": "8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f",
    "Order": "b27de5ca79a41095fabbfcfc0bec6bce48d7c9cf406f5d08292dc4b9c29d7d7d",
    "Cancel": "da642bfe56963d0a495680118010a3cbfdd2bf12d8995a730a47369ef61552b0",
    "CancelAll": "09393e113070f317b8530a4c1c67f09fac090074da9c960637f5ee19f1d93895",
    "Amend": "83449a155dafbe92404cd8343b6dabd81f7eac251415899d7c5b90e2957457d4",
    "Withdrawal": "b35ab9915b2a84085810e68c8007d654b6bd3ea3bd43f66f95cb190442a1ecfb",
    "Session": "60cdf109538f11e8f5b054fa03e9ab9da60f9421d78c1cd6d92ac377b44b4605",
}

ONE_OF_EACH: list[Struct] = [
    order_alice_buy_3_lots_at_650005_gtc(),
    cancel_alice_order_1(),
    cancel_alice_order_1(order_id=None, client_order_id="c1"),
    cancel_all_alice_everywhere(),
    cancel_all_alice_everywhere(market="BTC-PERP", side=SideCode.SELL),
    amend_alice_order_1_to_size_2(),
    withdrawal_alice_250_usdc(),
    Session(trader=ALICE, nonce=1_795_392_000_000_000, deadline=1_795_392_600_000_000),
]


# -- the contract with clients and the Solidity verifier --------------------------------------------


def test_worked_example_digest_and_signature_stay_fixed_and_match_the_doc() -> None:
    # State: the example order of docs/signing.md, the local anvil domain, anvil key #0.
    order = order_alice_buy_3_lots_at_650005_gtc()

    # Action.
    signature = sign(LOCAL_DOMAIN, order, ALICE_KEY)

    # Expectation: every published number is reproduced, and the doc shows each of them.
    assert domain_separator(LOCAL_DOMAIN).hex() == EXAMPLE_DOMAIN_SEPARATOR
    assert struct_hash(order).hex() == EXAMPLE_STRUCT_HASH
    assert digest(LOCAL_DOMAIN, order).hex() == EXAMPLE_DIGEST
    assert signature.hex() == EXAMPLE_SIGNATURE
    assert verify(LOCAL_DOMAIN, order, signature) == ALICE
    for published in (EXAMPLE_DOMAIN_SEPARATOR, EXAMPLE_STRUCT_HASH, EXAMPLE_DIGEST, EXAMPLE_SIGNATURE):
        assert published in SIGNING_DOC


def test_type_strings_and_type_hashes_are_the_published_ones() -> None:
    assert {name: type_hash(name).hex() for name in TYPE_STRINGS} == TYPE_HASHES
    for name, text in TYPE_STRINGS.items():
        assert f"`{text}`" in SIGNING_DOC, name
        assert TYPE_HASHES[name] in SIGNING_DOC, name


def _abi_word(kind: str, value: Any) -> tuple[str, Any]:
    """encodeData of one member, as Solidity's abi.encode sees it (EIP-712: strings are hashed)."""
    if kind == "string":
        return "bytes32", keccak(text=value)
    return kind, value


@pytest.mark.parametrize("struct", ONE_OF_EACH, ids=lambda s: type(s).__name__)
def test_struct_hash_is_keccak_of_type_hash_and_abi_encoded_members(struct: Struct) -> None:
    """What `keccak256(abi.encode(TYPEHASH, …))` computes in Solidity, with eth-abi, not eth-account."""
    members = struct.message_types()[struct.PRIMARY_TYPE]
    words = [_abi_word(m["type"], struct.message()[m["name"]]) for m in members]

    expected = keccak(
        abi_encode(
            ["bytes32", *(k for k, _ in words)], [type_hash(struct.PRIMARY_TYPE), *(v for _, v in words)]
        )
    )

    assert struct_hash(struct) == expected
    message = signable(LOCAL_DOMAIN, struct)  # eth-account's general encoder: the reference
    assert message.body == expected
    assert digest(LOCAL_DOMAIN, struct) == keccak(b"\x19" + message.version + message.header + message.body)


def test_domain_separator_is_keccak_of_the_abi_encoded_domain() -> None:
    expected = keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                type_hash("EIP712Domain"),
                keccak(text="CXPT Exchange"),
                keccak(text="1"),
                ANVIL_CHAIN_ID,
                VAULT_ON_ANVIL,
            ],
        )
    )

    assert domain_separator(LOCAL_DOMAIN) == expected


def test_python_fields_are_the_snake_case_of_the_type_string_members() -> None:
    for struct in ONE_OF_EACH:
        members = [m["name"] for m in struct.message_types()[struct.PRIMARY_TYPE]]
        snake = ["".join("_" + c.lower() if c.isupper() else c for c in m) for m in members]
        assert [f.name for f in fields(struct)] == snake


def test_none_is_the_zero_value_on_the_wire() -> None:
    # State: optional fields left out.
    message = cancel_all_alice_everywhere().message()
    order = order_alice_buy_3_lots_at_650005_gtc().message()
    by_client_id = cancel_alice_order_1(order_id=None, client_order_id="c1").message()

    # Expectation.
    assert (message["market"], message["side"]) == ("", 0)
    assert order["expireAt"] == 0
    assert by_client_id["orderId"] == bytes(16)


# -- signing and verification ---------------------------------------------------------------------


@pytest.mark.parametrize("struct", ONE_OF_EACH, ids=lambda s: type(s).__name__)
def test_a_struct_signed_by_its_trader_verifies_to_the_trader(struct: Struct) -> None:
    signature = sign(LOCAL_DOMAIN, struct, ALICE_KEY)

    assert len(signature) == 65
    assert recover_signer(LOCAL_DOMAIN, struct, signature) == ALICE
    assert verify(LOCAL_DOMAIN, struct, signature) == ALICE


@pytest.mark.parametrize("struct", ONE_OF_EACH, ids=lambda s: type(s).__name__)
def test_someone_elses_signature_is_a_signer_mismatch(struct: Struct) -> None:
    # State: Mallory signs a struct naming Alice as trader.
    signature = sign(LOCAL_DOMAIN, struct, MALLORY_KEY)

    # Expectation: it recovers to Mallory, and is refused for Alice.
    assert recover_signer(LOCAL_DOMAIN, struct, signature) == MALLORY
    assert verify(LOCAL_DOMAIN, struct, signature) == SignatureRejected(GatewayReject.SIGNER_MISMATCH)


@pytest.mark.parametrize(
    "other_domain",
    [
        ExchangeDomain(chain_id=1, verifying_contract=VAULT_ON_ANVIL),
        ExchangeDomain(chain_id=ANVIL_CHAIN_ID, verifying_contract="0x" + "ee" * 20),
        ExchangeDomain(chain_id=ANVIL_CHAIN_ID, verifying_contract=VAULT_ON_ANVIL, name="Other Exchange"),
        ExchangeDomain(chain_id=ANVIL_CHAIN_ID, verifying_contract=VAULT_ON_ANVIL, version="2"),
    ],
    ids=["chain-id", "verifying-contract", "name", "version"],
)
def test_a_signature_from_another_domain_does_not_verify(other_domain: ExchangeDomain) -> None:
    # State: Alice signed for another deployment (another chain, another Vault, another version).
    order = order_alice_buy_3_lots_at_650005_gtc()
    signature = sign(other_domain, order, ALICE_KEY)

    # Expectation: here it recovers to someone else, so it is refused.
    assert verify(LOCAL_DOMAIN, order, signature) == SignatureRejected(GatewayReject.SIGNER_MISMATCH)
    assert verify(other_domain, order, signature) == ALICE


FILLED_IN = {"expire_at": 1, "side": SideCode.BUY, "market": "BTC-PERP", "new_price": 650_000}
"""A value for each optional field some fixture leaves as None."""


def _other_value(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, OrderTypeCode | TimeInForceCode | StpCode | SideCode):
        return type(value)(value % len(type(value)) + 1)  # the next code, cyclically
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    assert isinstance(value, UUID)
    return UUID(int=value.int ^ 1)


def _changed(struct: Struct, field: str) -> Struct:
    """`struct` with `field` set to another valid value."""
    value = getattr(struct, field)
    if field == "trader":
        return replace(struct, trader=BOB)
    changes: dict[str, Any] = {field: FILLED_IN[field] if value is None else _other_value(value)}
    return replace(struct, **changes)


@pytest.mark.parametrize(
    ("struct", "field"),
    [
        (s, f.name)
        for s in ONE_OF_EACH
        for f in fields(s)
        # Cancel carries exactly one of its two ids: swapping which one is a change of another test.
        if not (isinstance(s, Cancel) and getattr(s, f.name) is None)
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_changing_any_signed_field_breaks_the_signature(struct: Struct, field: str) -> None:
    # State: Alice's signature over the original.
    signature = sign(LOCAL_DOMAIN, struct, ALICE_KEY)

    # Action: one field changes after signing.
    tampered = _changed(struct, field)

    # Expectation: the signature no longer belongs to the (possibly new) trader.
    assert verify(LOCAL_DOMAIN, tampered, signature) == SignatureRejected(GatewayReject.SIGNER_MISMATCH)


def _high_s_twin(signature: bytes) -> bytes:
    """(r, n − s, v ^ 1): the other valid ECDSA signature of the same digest by the same key."""
    s = int.from_bytes(signature[32:64], "big")
    return signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - signature[64]])


def test_the_high_s_twin_of_a_valid_signature_is_refused_as_malleable() -> None:
    # State: Alice's valid signature and its twin.
    order = order_alice_buy_3_lots_at_650005_gtc()
    twin = _high_s_twin(sign(LOCAL_DOMAIN, order, ALICE_KEY))

    # Expectation: eth-account alone would accept the twin as Alice's; the gateway does not.
    assert Account.recover_message(signable(LOCAL_DOMAIN, order), signature=twin).lower() == ALICE
    assert verify(LOCAL_DOMAIN, order, twin) == SignatureRejected(GatewayReject.MALLEABLE_SIGNATURE)
    with pytest.raises(InvalidSignature) as refused:
        recover_signer(LOCAL_DOMAIN, order, twin)
    assert refused.value.code is GatewayReject.MALLEABLE_SIGNATURE


VALID = bytes.fromhex(EXAMPLE_SIGNATURE)
R, S, V = VALID[:32], VALID[32:64], VALID[64:]


@pytest.mark.parametrize(
    "signature",
    [
        b"",
        VALID[:64],
        VALID + b"\x00",
        R + S + b"\x00",  # eth-account reads v = 0 as 27; ecrecover does not
        R + S + b"\x01",
        R + S + b"\x1d",  # 29
        bytes(32) + S + V,  # r = 0
        SECP256K1_N.to_bytes(32, "big") + S + V,  # r = n
        R + bytes(32) + V,  # s = 0
        (5).to_bytes(32, "big") + S + V,  # r = 5 is no curve point's x
        bytes(65),
    ],
    ids=["empty", "64-bytes", "66-bytes", "v=0", "v=1", "v=29", "r=0", "r=n", "s=0", "r-off-curve", "zeros"],
)
def test_a_malformed_signature_is_invalid(signature: bytes) -> None:
    order = order_alice_buy_3_lots_at_650005_gtc()

    assert verify(LOCAL_DOMAIN, order, signature) == SignatureRejected(GatewayReject.INVALID_SIGNATURE)
    with pytest.raises(InvalidSignature):
        recover_signer(LOCAL_DOMAIN, order, signature)


# -- properties -----------------------------------------------------------------------------------

KEYS = {ALICE: ALICE_KEY, BOB: BOB_KEY, MALLORY: MALLORY_KEY}
uint64s = st.integers(min_value=0, max_value=2**64 - 1)
int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)
nonzero_int64s = int64s.filter(bool)
uuids = st.uuids().filter(lambda u: u.int != 0)
markets = st.text(min_size=1, max_size=24)
traders = st.sampled_from(sorted(KEYS))

orders = st.builds(
    Order,
    trader=traders,
    market=markets,
    order_id=uuids,
    client_order_id=st.text(max_size=36),
    side=st.sampled_from(SideCode),
    order_type=st.sampled_from(OrderTypeCode),
    price=int64s,
    size=int64s,
    time_in_force=st.sampled_from(TimeInForceCode),
    post_only=st.booleans(),
    reduce_only=st.booleans(),
    expire_at=st.none() | uint64s.filter(bool),
    stp=st.sampled_from(StpCode),
    nonce=uint64s,
    deadline=uint64s,
)
cancels = st.one_of(
    st.builds(Cancel, traders, markets, uuids, st.none(), uint64s, uint64s),
    st.builds(Cancel, traders, markets, st.none(), st.text(min_size=1), uint64s, uint64s),
)
cancel_alls = st.builds(
    CancelAll, traders, st.none() | markets, st.none() | st.sampled_from(SideCode), uint64s, uint64s
)
amends = st.builds(
    Amend, traders, markets, uuids, st.none() | nonzero_int64s, st.none() | nonzero_int64s, uint64s, uint64s
)
withdrawals = st.builds(Withdrawal, traders, uuids, uint64s, st.booleans(), uint64s, uint64s)
structs = st.one_of(orders, cancels, cancel_alls, amends, withdrawals)
domains = st.builds(
    ExchangeDomain,
    chain_id=st.integers(min_value=1, max_value=2**64),
    verifying_contract=st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(domain=domains, struct=structs)
def test_any_struct_signed_by_its_trader_round_trips_with_a_low_s_signature(
    domain: ExchangeDomain, struct: Struct
) -> None:
    signature = sign(domain, struct, KEYS[struct.trader])

    assert int.from_bytes(signature[32:64], "big") <= SECP256K1_N // 2
    assert signature[64] in (27, 28)
    assert verify(domain, struct, signature) == struct.trader
    assert verify(domain, struct, _high_s_twin(signature)) == SignatureRejected(
        GatewayReject.MALLEABLE_SIGNATURE
    )


# -- validation of the structs ----------------------------------------------------------------------


def test_addresses_are_stored_lower_case_and_checksummed_input_still_verifies() -> None:
    # State: the trader and the Vault given in EIP-55 mixed case.
    order = order_alice_buy_3_lots_at_650005_gtc(trader="0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
    domain = ExchangeDomain(
        chain_id=ANVIL_CHAIN_ID, verifying_contract="0x5FbDB2315678afecb367f032d93F642f64180aa3"
    )

    # Expectation: same values, same signature as the lower-case spelling.
    assert order.trader == ALICE
    assert domain == LOCAL_DOMAIN
    assert sign(domain, order, ALICE_KEY).hex() == EXAMPLE_SIGNATURE


def test_enum_fields_accept_their_integer_codes_and_store_the_enum() -> None:
    order = order_alice_buy_3_lots_at_650005_gtc(side=2, order_type=2, time_in_force=3, stp=3)

    assert (order.side, order.order_type, order.time_in_force, order.stp) == (
        SideCode.SELL,
        OrderTypeCode.MARKET,
        TimeInForceCode.FOK,
        StpCode.CANCEL_BOTH,
    )


@pytest.mark.parametrize(
    ("build", "why"),
    [
        (lambda: order_alice_buy_3_lots_at_650005_gtc(side=0), "side 0 is not an order side"),
        (lambda: order_alice_buy_3_lots_at_650005_gtc(order_type=3), "no order type 3"),
        (lambda: order_alice_buy_3_lots_at_650005_gtc(time_in_force=True), "a bool is not a code"),
        (lambda: order_alice_buy_3_lots_at_650005_gtc(price=2**63), "int64 overflow"),
        (lambda: order_alice_buy_3_lots_at_650005_gtc(nonce=-1), "uint64 underflow"),
        (lambda: order_alice_buy_3_lots_at_650005_gtc(expire_at=0), "0 is spelled None"),
        (lambda: order_alice_buy_3_lots_at_650005_gtc(trader="0x1234"), "short address"),
        (
            lambda: order_alice_buy_3_lots_at_650005_gtc(order_id="01a205b3-d000-7000-8000-000000000001"),
            "str id",
        ),
        (lambda: order_alice_buy_3_lots_at_650005_gtc(market=None), "market is required"),
        (lambda: order_alice_buy_3_lots_at_650005_gtc(post_only=1), "an int is not a bool"),
        (lambda: cancel_alice_order_1(client_order_id="c1"), "both ids"),
        (lambda: cancel_alice_order_1(order_id=None), "neither id"),
        (lambda: cancel_alice_order_1(order_id=UUID(int=0)), "the zero id is spelled None"),
        (lambda: cancel_all_alice_everywhere(market=""), "'' is spelled None"),
        (lambda: amend_alice_order_1_to_size_2(new_size=0), "0 is spelled None"),
        (lambda: withdrawal_alice_250_usdc(amount=2**64), "uint64 overflow"),
        (lambda: ExchangeDomain(chain_id=0, verifying_contract=VAULT_ON_ANVIL), "chain id 0"),
        (lambda: ExchangeDomain(chain_id=1, verifying_contract="vault"), "not an address"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_struct_that_cannot_be_encoded_is_refused_when_built(build: Any, why: str) -> None:
    with pytest.raises(InvalidTypedData):
        build()


def test_the_python_example_in_the_doc_runs() -> None:
    code = SIGNING_DOC.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}

    exec(code, namespace)

    assert namespace["signature"].hex() == EXAMPLE_SIGNATURE
    assert namespace["order"] == order_alice_buy_3_lots_at_650005_gtc()
