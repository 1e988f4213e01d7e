// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title The CXPT Vault as the off-chain services see it.
/// @notice Custody of 100 % USDC collateral. Amounts are USDC micro-units (6 decimals), the same
/// integers as the off-chain ledger (`MicroUsdc`). Traders' balances are never negative; the
/// exchange's three accounts (FEES, CLEARING, INSURANCE) are signed, like off-chain: CLEARING and
/// INSURANCE may be negative between batches, FEES never.
/// Conservation (the invariant the tests hold): USDC held == Σ trader balances + fees + clearing +
/// insurance (plus any USDC sent to the Vault without a deposit, which belongs to no one).
interface IVault {
    /// One withdrawal a trader signed (EIP-712, the gateway's `Withdrawal` struct, byte for byte):
    /// Withdrawal(address trader,bytes16 withdrawalId,uint64 amount,bool asCxpt,uint64 nonce,uint64 deadline)
    struct Withdrawal {
        address trader;
        bytes16 withdrawalId;
        uint64 amount;
        bool asCxpt;
        uint64 nonce;
        uint64 deadline; // microseconds since the epoch, like every time off-chain: refused once block.timestamp * 1e6 > deadline
    }

    event Deposited(address indexed trader, address indexed from, uint256 amount, uint256 shares);
    event Withdrawn(
        address indexed trader, bytes16 indexed withdrawalId, uint256 amount, uint256 shares, bool asCxpt
    );
    event BatchSettled(
        bytes32 indexed batchId, uint256 traders, int256 feesDelta, int256 clearingDelta, int256 insuranceDelta
    );
    event TraderSettled(bytes32 indexed batchId, address indexed trader, int256 delta);

    /// Credit `amount` USDC (pulled from msg.sender with transferFrom) to `trader`. The one deposit entry point.
    function deposit(address trader, uint256 amount) external returns (uint256 shares);

    /// Pay a withdrawal the trader signed: USDC to the trader, or CXPT minted 1:1 when `asCxpt`.
    /// Only the settlement role (the off-chain ledger reserved the amount first); each withdrawalId once;
    /// refused after `deadline`. The one withdraw entry point.
    function withdraw(Withdrawal calldata w, bytes calldata signature) external returns (uint256 shares);

    /// Apply one net settlement batch: per-trader deltas plus the exchange accounts' deltas, summing
    /// to exactly 0. Only the settlement role; each batchId once; no trader balance may go negative.
    function settle(
        bytes32 batchId,
        address[] calldata traders,
        int256[] calldata deltas,
        int256 feesDelta,
        int256 clearingDelta,
        int256 insuranceDelta
    ) external;

    function balanceOf(address trader) external view returns (uint256 amount);
    function sharesOf(address trader) external view returns (uint256 shares);
    function exchangeAccounts() external view returns (int256 fees, int256 clearing, int256 insurance);
    function batchSettled(bytes32 batchId) external view returns (bool);
    function withdrawalPaid(bytes16 withdrawalId) external view returns (bool);
    function usdc() external view returns (address);
    function cxpt() external view returns (address);
}
