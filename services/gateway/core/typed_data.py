"""EIP-712 typed data: the structs traders sign, and how the gateway checks a signature.

What a trader signs mirrors the Avro commands (`schemas/avro/exchange.cxpt.PlaceOrder.avsc`, …),
with three additions on every struct, so that a signature binds to one account and dies:

* `trader` — the signer's address; verification fails unless the recovered signer is this address;
* `nonce` — the signer's timestamp in **microseconds**, never reused (rules in `services/common/nonces.py`);
* `deadline` — microseconds since epoch; the command is refused after it (`SIGNATURE_EXPIRED`).
  It bounds when the *signed message* may reach the exchange, not how long an order rests (that is
  `Order.expireAt`, the GTT expiry). `Withdrawal.deadline` is the Avro `expire_at`.

The type strings below are the contract with the Solidity verifier (docs/signing.md): the struct
dataclasses are derived from them, not the other way round, so the two cannot drift apart.

Encodings, one table (each enum starts at 1 so that a zero-initialised Solidity struct never signs
a real value by accident; 0 is reserved for "none"):

=================  ========================================  ==============================
field              values                                    0 means
=================  ========================================  ==============================
side               1 BUY, 2 SELL                             both sides (CancelAll only)
orderType          1 LIMIT, 2 MARKET                         invalid
timeInForce        1 GTC, 2 IOC, 3 FOK, 4 GTT                invalid
stp                1 CANCEL_MAKER, 2 CANCEL_TAKER,           invalid
                   3 CANCEL_BOTH
=================  ========================================  ==============================

Where an Avro field is optional (`null`), the struct field is `None` in Python and the type's zero
value on the wire ("" for strings, 16 zero bytes for ids, 0 for integers); the explicit zero value
is therefore refused, so each wire value has exactly one meaning. Enum members carry the Avro
symbol names, so `records.Side[SideCode.BUY.name]` maps a code to the Avro enum.

Ids (`orderId`, `withdrawalId`) are `bytes16`: the 16 bytes of the UUID the client chose (a UUIDv7).
Not the UUID *string*: "ABC…" and "abc…" would be the same id with different hashes, and a
fixed-size `bytes16` is cheaper to encode in Solidity.

Pure: no clock, no I/O. Hashing, encoding and ECDSA are eth-account's; this module only checks
what eth-account lets through (high-s signatures, v outside {27, 28}) to match OpenZeppelin's
`ECDSA.tryRecover`, which the on-chain verifier uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from enum import IntEnum
from functools import cache
from typing import Any, ClassVar, Final
from uuid import UUID

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_hash.backends.pysha3 import PySha3Backend
from eth_hash.main import Keccak256
from eth_keys.datatypes import Signature as KeySignature
from eth_keys.exceptions import BadSignature

from services.common.codes import GatewayReject

keccak256 = Keccak256(PySha3Backend())
"""keccak256 through eth-hash's pysha3 backend (0.6 µs a call; the backend eth-hash picks by itself,
pycryptodome, costs 3.5 µs, and a signature check hashes five times)."""

# -- the type strings (the Solidity library hashes exactly these) ----------------------------------

DOMAIN_TYPE: Final = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
ORDER_TYPE: Final = (
    "Order(address trader,string market,bytes16 orderId,string clientOrderId,uint8 side,uint8 orderType,"
    "int64 price,int64 size,uint8 timeInForce,bool postOnly,bool reduceOnly,uint64 expireAt,uint8 stp,"
    "uint64 nonce,uint64 deadline)"
)
CANCEL_TYPE: Final = (
    "Cancel(address trader,string market,bytes16 orderId,string clientOrderId,uint64 nonce,uint64 deadline)"
)
CANCEL_ALL_TYPE: Final = "CancelAll(address trader,string market,uint8 side,uint64 nonce,uint64 deadline)"
AMEND_TYPE: Final = (
    "Amend(address trader,string market,bytes16 orderId,int64 newPrice,int64 newSize,uint64 nonce,"
    "uint64 deadline)"
)
WITHDRAWAL_TYPE: Final = (
    "Withdrawal(address trader,bytes16 withdrawalId,uint64 amount,bool asCxpt,uint64 nonce,uint64 deadline)"
)
SESSION_TYPE: Final = "Session(address trader,uint64 nonce,uint64 deadline)"

TYPE_STRINGS: Final[dict[str, str]] = {
    text[: text.index("(")]: text
    for text in (
        DOMAIN_TYPE,
        ORDER_TYPE,
        CANCEL_TYPE,
        CANCEL_ALL_TYPE,
        AMEND_TYPE,
        WITHDRAWAL_TYPE,
        SESSION_TYPE,
    )
}
"""Primary type name → its EIP-712 type string."""

DOMAIN_NAME: Final = "CXPT Exchange"
DOMAIN_VERSION: Final = "1"

SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""Order of the secp256k1 group; a signature's s must be at most half of it (EIP-2)."""
SIGNATURE_LENGTH: Final = 65

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_INT_RANGES: Final[dict[str, tuple[int, int]]] = {
    "uint8": (0, 2**8 - 1),
    "uint64": (0, 2**64 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint256": (0, 2**256 - 1),
}
_ZERO_ID: Final = UUID(int=0)


@cache
def type_hash(name: str) -> bytes:
    """keccak256 of the type string of `name` ("Order", …, or "EIP712Domain"): Solidity's TYPEHASH."""
    return keccak256(TYPE_STRINGS[name].encode())


@cache
def _members(type_string: str) -> list[tuple[str, str]]:
    """[(solidity type, field name), …] of a type string, in order."""
    inner = type_string[type_string.index("(") + 1 : -1]
    return [(kind, name) for kind, name in (member.split(" ") for member in inner.split(","))]


@cache
def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# -- enums -------------------------------------------------------------------------------------------


class SideCode(IntEnum):
    """`side` on the wire. 0 (CancelAll: both sides) is `None` in Python."""

    BUY = 1
    SELL = 2


class OrderTypeCode(IntEnum):
    """`orderType` on the wire."""

    LIMIT = 1
    MARKET = 2


class TimeInForceCode(IntEnum):
    """`timeInForce` on the wire."""

    GTC = 1
    IOC = 2
    FOK = 3
    GTT = 4


class StpCode(IntEnum):
    """`stp` (self-trade prevention) on the wire."""

    CANCEL_MAKER = 1
    CANCEL_TAKER = 2
    CANCEL_BOTH = 3


# -- domain and structs ------------------------------------------------------------------------------


class InvalidTypedData(ValueError):
    """A struct or domain field cannot be encoded (out of range, malformed address, explicit zero for
    an optional field). The HTTP layer answers INVALID_REQUEST."""


def _check_address(what: str, value: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise InvalidTypedData(f"{what} must be a 0x-prefixed 20-byte hex address, got {value!r}")
    # Lower-case is the exchange's spelling of an account (TraderCommand.trader); the EIP-712 value
    # is the same 20 bytes whatever the case, so normalising never changes what was signed.
    return value.lower()


@dataclass(frozen=True, slots=True)
class ExchangeDomain:
    """The EIP-712 domain: one exchange deployment (chain and Vault contract)."""

    chain_id: int
    verifying_contract: str
    """The Vault contract's address (stored lower-case)."""
    name: str = DOMAIN_NAME
    version: str = DOMAIN_VERSION

    def __post_init__(self) -> None:
        low, high = _INT_RANGES["uint256"]
        if isinstance(self.chain_id, bool) or not isinstance(self.chain_id, int):
            raise InvalidTypedData(f"chain_id must be an integer, got {self.chain_id!r}")
        if not low < self.chain_id <= high:
            raise InvalidTypedData(f"chain_id out of range: {self.chain_id}")
        contract = _check_address("verifying_contract", self.verifying_contract)
        object.__setattr__(self, "verifying_contract", contract)

    def as_eip712(self) -> dict[str, Any]:
        """The domain as eth-account's `domain_data`."""
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }


class _Struct:
    """Common behaviour of the signed structs: validation and encoding, both driven by TYPE_STRING.

    A Python field is the snake_case of the EIP-712 member; `None` stands for the zero value.
    """

    __slots__ = ()
    TYPE_STRING: ClassVar[str]
    PRIMARY_TYPE: ClassVar[str]
    trader: str
    nonce: int
    deadline: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.PRIMARY_TYPE = cls.TYPE_STRING[: cls.TYPE_STRING.index("(")]

    def _validate(self) -> None:
        """Check every member against its Solidity type; normalise addresses to lower-case."""
        optional = {f.name for f in fields(self) if "None" in str(f.type).split(" | ")}  # type: ignore[arg-type]
        for kind, member in _members(self.TYPE_STRING):
            attr = _snake(member)
            where = f"{self.PRIMARY_TYPE}.{attr}"
            value = getattr(self, attr)
            if value is None:
                if attr not in optional:
                    raise InvalidTypedData(f"{where} is required")
                continue
            if kind == "address":
                object.__setattr__(self, attr, _check_address(where, value))
            elif not _fits(kind, value):
                raise InvalidTypedData(
                    f"{where} must be a {_PYTHON_TYPE[kind]} fitting {kind}, got {value!r}"
                )
            if attr in optional and _encode(kind, value) == _encode(kind, None):
                # The zero value *is* "none" on the wire: accepting it explicitly would give one
                # signature two readings.
                raise InvalidTypedData(f"{where}: use None, not the zero value")

    def message(self) -> dict[str, Any]:
        """The struct as eth-account's `message_data` (EIP-712 member names, wire values)."""
        return {
            member: _encode(kind, getattr(self, _snake(member)))
            for kind, member in _members(self.TYPE_STRING)
        }

    @classmethod
    def message_types(cls) -> dict[str, list[dict[str, str]]]:
        """The struct's type as eth-account's `message_types`."""
        return {cls.PRIMARY_TYPE: [{"name": n, "type": k} for k, n in _members(cls.TYPE_STRING)]}


_PYTHON_TYPE: Final = {
    "uint8": "int",
    "uint64": "int",
    "int64": "int",
    "bytes16": "UUID",
    "bool": "bool",
    "string": "str",
}


def _fits(kind: str, value: Any) -> bool:
    """Whether a (non-None) Python value is representable as Solidity type `kind`."""
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if kind == "bytes16":
        return isinstance(value, UUID)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    raise AssertionError(f"no rule for Solidity type {kind}")  # a new type in a type string needs one


def _encode(kind: str, value: Any) -> Any:
    """A Python value as eth-account takes it for a member of Solidity type `kind`."""
    if kind == "bytes16":
        return (value or _ZERO_ID).bytes
    if kind == "string":
        return value or ""
    if kind in _INT_RANGES:
        return int(value or 0)  # IntEnum → plain int
    return value


@dataclass(frozen=True, slots=True)
class Order(_Struct):
    """Place an order (Avro `PlaceOrder`). Price in ticks, size in lots, times in µs since epoch."""

    TYPE_STRING: ClassVar[str] = ORDER_TYPE
    trader: str
    market: str
    order_id: UUID
    client_order_id: str
    side: SideCode
    order_type: OrderTypeCode
    price: int
    size: int
    time_in_force: TimeInForceCode
    post_only: bool
    reduce_only: bool
    expire_at: int | None
    """GTT expiry (µs); None = no expiry (0 on the wire)."""
    stp: StpCode
    nonce: int
    deadline: int

    def __post_init__(self) -> None:
        _require_enum(self, "side", SideCode)
        _require_enum(self, "order_type", OrderTypeCode)
        _require_enum(self, "time_in_force", TimeInForceCode)
        _require_enum(self, "stp", StpCode)
        self._validate()


@dataclass(frozen=True, slots=True)
class Cancel(_Struct):
    """Cancel one order (Avro `CancelOrder`) by exactly one of venue order id or client order id."""

    TYPE_STRING: ClassVar[str] = CANCEL_TYPE
    trader: str
    market: str
    order_id: UUID | None
    client_order_id: str | None
    nonce: int
    deadline: int

    def __post_init__(self) -> None:
        if (self.order_id is None) == (self.client_order_id is None):
            raise InvalidTypedData("Cancel needs exactly one of order_id and client_order_id")
        self._validate()


@dataclass(frozen=True, slots=True)
class CancelAll(_Struct):
    """Cancel all open orders (Avro `CancelAllOrders`); None = every market / both sides."""

    TYPE_STRING: ClassVar[str] = CANCEL_ALL_TYPE
    trader: str
    market: str | None
    side: SideCode | None
    nonce: int
    deadline: int

    def __post_init__(self) -> None:
        if self.side is not None:
            _require_enum(self, "side", SideCode)
        self._validate()


@dataclass(frozen=True, slots=True)
class Amend(_Struct):
    """Change an open order's price and/or size (Avro `AmendOrder`); None = unchanged."""

    TYPE_STRING: ClassVar[str] = AMEND_TYPE
    trader: str
    market: str
    order_id: UUID
    new_price: int | None
    new_size: int | None
    nonce: int
    deadline: int

    def __post_init__(self) -> None:
        self._validate()


@dataclass(frozen=True, slots=True)
class Withdrawal(_Struct):
    """Withdraw free collateral (Avro `RequestWithdrawal`); `deadline` is the Avro `expire_at`."""

    TYPE_STRING: ClassVar[str] = WITHDRAWAL_TYPE
    trader: str
    withdrawal_id: UUID
    amount: int
    """Micro-USDC."""
    as_cxpt: bool
    nonce: int
    deadline: int

    def __post_init__(self) -> None:
        self._validate()


@dataclass(frozen=True, slots=True)
class Session(_Struct):
    """Open a read session (`POST /sessions`): proves the trader holds the key, moves no money.

    Off-chain only: the Vault never verifies it. `deadline` also bounds the session's lifetime.
    """

    TYPE_STRING: ClassVar[str] = SESSION_TYPE

    trader: str
    nonce: int
    deadline: int

    def __post_init__(self) -> None:
        self._validate()


Struct = Order | Cancel | CancelAll | Amend | Withdrawal | Session
"""Anything a trader signs."""


def _require_enum(struct: _Struct, attr: str, enum: type[IntEnum]) -> None:
    value = getattr(struct, attr)
    try:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(value)
        member = enum(value)
    except ValueError:
        raise InvalidTypedData(f"{type(struct).__name__}.{attr}: not a {enum.__name__}: {value!r}") from None
    # Stored as the enum so that repr and equality read as names, whatever int the caller passed.
    object.__setattr__(struct, attr, member)


# -- hashing, signing, recovery ------------------------------------------------------------------------


def signable(domain: ExchangeDomain, struct: Struct) -> SignableMessage:
    """The EIP-191 version 0x01 message eth-account signs: header = domain separator, body = struct hash."""
    return encode_typed_data(
        domain_data=domain.as_eip712(), message_types=struct.message_types(), message_data=struct.message()
    )


@cache
def domain_separator(domain: ExchangeDomain) -> bytes:
    """hashStruct(domain): Solidity's `_domainSeparatorV4()` (computed by eth-account, once)."""
    return bytes(_any_signable(domain).header)


def struct_hash(struct: Struct) -> bytes:
    """hashStruct(struct) = keccak256(typeHash ‖ encodeData(struct)).

    Computed here, not through eth-account's general typed-data encoder, because the gateway checks
    every order: our structs hold only atomic members, so encodeData is one 32-byte word per member
    (`_word`): 6.5 µs, where eth-abi's general encoder took 57 µs and eth-account's ~0.5 ms. Tests
    hold it equal to eth-account's result for every struct, and (through `sign` and `verify`) for
    random values.
    """
    words = [_word(kind, _encode(kind, getattr(struct, attr))) for kind, attr in _layout(struct.TYPE_STRING)]
    return keccak256(type_hash(struct.PRIMARY_TYPE) + b"".join(words))


@cache
def _layout(type_string: str) -> tuple[tuple[str, str], ...]:
    """(Solidity type, Python attribute) of each member of a type string, in order."""
    return tuple((kind, _snake(member)) for kind, member in _members(type_string))


def _word(kind: str, value: Any) -> bytes:
    """encodeData of one atomic member (EIP-712): the member's 32-byte ABI word, a string's keccak256."""
    if kind == "string":
        return keccak256(value.encode())
    if kind == "bytes16":
        return bytes(value).ljust(32, b"\0")  # fixed-size bytes sit left-aligned in their word
    if kind == "address":
        return bytes(12) + bytes.fromhex(value[2:])
    return int(value).to_bytes(32, "big", signed=True)  # bool and ints, sign-extended (all < 2**255)


def digest(domain: ExchangeDomain, struct: Struct) -> bytes:
    """The 32 bytes actually signed: keccak256(0x19 0x01 ‖ domainSeparator ‖ structHash) (EIP-712)."""
    return keccak256(b"\x19\x01" + domain_separator(domain) + struct_hash(struct))


def _any_signable(domain: ExchangeDomain) -> SignableMessage:
    # eth-account computes the domain separator only as part of a whole message; any struct will do.
    probe = CancelAll(trader="0x" + "00" * 20, market=None, side=None, nonce=0, deadline=0)
    return signable(domain, probe)


def sign(domain: ExchangeDomain, struct: Struct, private_key: bytes | str) -> bytes:
    """The 65-byte signature r ‖ s ‖ v (v in {27, 28}, low s) of `struct` under `domain`."""
    return bytes(Account.sign_message(signable(domain, struct), private_key).signature)


@dataclass(frozen=True, slots=True)
class SignatureRejected:
    """Why a signature was refused: INVALID_SIGNATURE, MALLEABLE_SIGNATURE or SIGNER_MISMATCH."""

    code: GatewayReject


class InvalidSignature(ValueError):
    """No signer can be recovered from these bytes; `code` says why (as `verify` would answer)."""

    def __init__(self, code: GatewayReject, detail: str) -> None:
        super().__init__(f"{code.name}: {detail}")
        self.code = code


def _canonical_rsv(signature: bytes) -> tuple[int, int, int]:
    """(v, r, s) of a signature OpenZeppelin's ECDSA would accept; raises InvalidSignature otherwise."""
    if not isinstance(signature, bytes | bytearray) or len(signature) != SIGNATURE_LENGTH:
        raise InvalidSignature(GatewayReject.INVALID_SIGNATURE, "not 65 bytes")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    # Checked first, as OpenZeppelin does: (r, n − s, v ^ 1) signs the same digest for the same key,
    # so accepting both would give one order two valid encodings (EIP-2).
    if s > SECP256K1_N // 2:
        raise InvalidSignature(GatewayReject.MALLEABLE_SIGNATURE, "s is in the upper half of the curve order")
    # eth-account also takes v in {0, 1}; ecrecover does not, and the Vault must agree with us.
    if v not in (27, 28):
        raise InvalidSignature(GatewayReject.INVALID_SIGNATURE, f"v must be 27 or 28, got {v}")
    if not (0 < r < SECP256K1_N and s > 0):
        raise InvalidSignature(GatewayReject.INVALID_SIGNATURE, "r or s out of range")
    return v, r, s


def recover_signer(domain: ExchangeDomain, struct: Struct, signature: bytes) -> str:
    """The lower-case address whose key made `signature` over `struct` under `domain`.

    Raises InvalidSignature for a malformed or malleable signature. A signature made under another
    domain or over other field values still recovers — to some other address.
    """
    v, r, s = _canonical_rsv(signature)
    try:
        public_key = KeySignature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest(domain, struct))
    except BadSignature as error:  # r is not the x coordinate of a curve point
        raise InvalidSignature(GatewayReject.INVALID_SIGNATURE, str(error)) from error
    return "0x" + keccak256(public_key.to_bytes())[-20:].hex()  # an address: keccak's last 20 bytes


def verify(domain: ExchangeDomain, struct: Struct, signature: bytes) -> str | SignatureRejected:
    """The signer (lower-case address) if `signature` is the struct's trader's, else why not.

    Wrong chain id, wrong Vault address or any changed field all answer SIGNER_MISMATCH: the
    signature recovers to an unrelated address.
    """
    try:
        signer = recover_signer(domain, struct, signature)
    except InvalidSignature as error:
        return SignatureRejected(error.code)
    if signer != struct.trader:
        return SignatureRejected(GatewayReject.SIGNER_MISMATCH)
    return signer
