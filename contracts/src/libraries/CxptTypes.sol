// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IVault} from "../interfaces/IVault.sol";

/// @title The EIP-712 structs traders sign, hashed exactly as the gateway hashes them.
/// @notice The type strings are copied character for character from
/// services/gateway/core/typed_data.py (ORDER_TYPE, CANCEL_TYPE, …); a unit test holds each
/// TYPEHASH equal to the gateway's `type_hash(name)` and the struct hashes equal to `struct_hash`.
/// EIP-712 `encodeData`: atomic members ABI-encoded as 32-byte words, `string` members replaced by
/// keccak256 of their UTF-8 bytes. The Withdrawal struct is IVault.Withdrawal (one definition).
/// Units and encodings are the gateway's: times in microseconds since the epoch, enums from 1
/// (0 = none), optional members as the zero value, ids as the 16 bytes of a UUID.
library CxptTypes {
    bytes32 internal constant ORDER_TYPEHASH = keccak256(
        "Order(address trader,string market,bytes16 orderId,string clientOrderId,uint8 side,uint8 orderType,"
        "int64 price,int64 size,uint8 timeInForce,bool postOnly,bool reduceOnly,uint64 expireAt,uint8 stp,"
        "uint64 nonce,uint64 deadline)"
    );
    bytes32 internal constant CANCEL_TYPEHASH = keccak256(
        "Cancel(address trader,string market,bytes16 orderId,string clientOrderId,uint64 nonce,uint64 deadline)"
    );
    bytes32 internal constant CANCEL_ALL_TYPEHASH =
        keccak256("CancelAll(address trader,string market,uint8 side,uint64 nonce,uint64 deadline)");
    bytes32 internal constant AMEND_TYPEHASH = keccak256(
        "Amend(address trader,string market,bytes16 orderId,int64 newPrice,int64 newSize,uint64 nonce,"
        "uint64 deadline)"
    );
    bytes32 internal constant WITHDRAWAL_TYPEHASH = keccak256(
        "Withdrawal(address trader,bytes16 withdrawalId,uint64 amount,bool asCxpt,uint64 nonce,uint64 deadline)"
    );
    bytes32 internal constant SESSION_TYPEHASH = keccak256("Session(address trader,uint64 nonce,uint64 deadline)");

    /// Place an order (Avro PlaceOrder). Price in ticks, size in lots.
    struct Order {
        address trader;
        string market;
        bytes16 orderId;
        string clientOrderId;
        uint8 side;
        uint8 orderType;
        int64 price;
        int64 size;
        uint8 timeInForce;
        bool postOnly;
        bool reduceOnly;
        uint64 expireAt;
        uint8 stp;
        uint64 nonce;
        uint64 deadline;
    }

    /// Cancel one order (Avro CancelOrder) by exactly one of orderId and clientOrderId.
    struct Cancel {
        address trader;
        string market;
        bytes16 orderId;
        string clientOrderId;
        uint64 nonce;
        uint64 deadline;
    }

    /// Cancel all open orders; market "" = every market, side 0 = both sides.
    struct CancelAll {
        address trader;
        string market;
        uint8 side;
        uint64 nonce;
        uint64 deadline;
    }

    /// Change an open order's price and/or size; 0 = unchanged.
    struct Amend {
        address trader;
        string market;
        bytes16 orderId;
        int64 newPrice;
        int64 newSize;
        uint64 nonce;
        uint64 deadline;
    }

    /// Open a read session (off-chain only; hashed here so every struct has one definition).
    struct Session {
        address trader;
        uint64 nonce;
        uint64 deadline;
    }

    function hash(Order calldata o) internal pure returns (bytes32) {
        // Two abi.encode halves: fifteen members plus the type hash are too many stack slots at once.
        bytes memory head = abi.encode(
            ORDER_TYPEHASH,
            o.trader,
            keccak256(bytes(o.market)),
            o.orderId,
            keccak256(bytes(o.clientOrderId)),
            o.side,
            o.orderType,
            o.price
        );
        bytes memory tail = abi.encode(
            o.size, o.timeInForce, o.postOnly, o.reduceOnly, o.expireAt, o.stp, o.nonce, o.deadline
        );
        return keccak256(bytes.concat(head, tail));
    }

    function hash(Cancel calldata c) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                CANCEL_TYPEHASH,
                c.trader,
                keccak256(bytes(c.market)),
                c.orderId,
                keccak256(bytes(c.clientOrderId)),
                c.nonce,
                c.deadline
            )
        );
    }

    function hash(CancelAll calldata c) internal pure returns (bytes32) {
        return keccak256(abi.encode(CANCEL_ALL_TYPEHASH, c.trader, keccak256(bytes(c.market)), c.side, c.nonce, c.deadline));
    }

    function hash(Amend calldata a) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                AMEND_TYPEHASH,
                a.trader,
                keccak256(bytes(a.market)),
                a.orderId,
                a.newPrice,
                a.newSize,
                a.nonce,
                a.deadline
            )
        );
    }

    function hash(IVault.Withdrawal calldata w) internal pure returns (bytes32) {
        return keccak256(abi.encode(WITHDRAWAL_TYPEHASH, w.trader, w.withdrawalId, w.amount, w.asCxpt, w.nonce, w.deadline));
    }

    function hash(Session calldata s) internal pure returns (bytes32) {
        return keccak256(abi.encode(SESSION_TYPEHASH, s.trader, s.nonce, s.deadline));
    }

    /// Whether a message signed with `deadline` (µs since the epoch) is refused at this block:
    /// block.timestamp is in seconds, so a deadline inside the current second still passes.
    function expired(uint64 deadline) internal view returns (bool) {
        return block.timestamp * 1e6 > deadline;
    }
}
