// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControlUpgradeable} from "@openzeppelin/contracts-upgradeable/access/AccessControlUpgradeable.sol";
import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts-upgradeable/proxy/utils/UUPSUpgradeable.sol";
import {PausableUpgradeable} from "@openzeppelin/contracts-upgradeable/utils/PausableUpgradeable.sol";
import {EIP712Upgradeable} from "@openzeppelin/contracts-upgradeable/utils/cryptography/EIP712Upgradeable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Create2} from "@openzeppelin/contracts/utils/Create2.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IVault} from "./interfaces/IVault.sol";
import {CxptTypes} from "./libraries/CxptTypes.sol";
import {SynthERC20} from "./token/SynthERC20.sol";

interface ICxptMinter {
    function mint(address to, uint256 amount) external;
}

/// @title The CXPT Vault: custody of the exchange's USDC collateral and net settlement.
/// @notice Behind an ERC-1967 proxy (UUPS). docs/contracts.md has the whole design; in short:
///
/// Shares. A trader owns shares of the *trader pool*; the pool's assets are counted by the Vault
/// (`pooledAssets`: every deposit, settlement delta and withdrawal), never read from
/// `usdc.balanceOf(this)`. Conversions are ERC-4626's with a virtual offset of 10**6 shares and 1
/// asset, deposit and credits rounding shares down, withdrawals and debits rounding shares burned
/// up. Since pool assets only move with shares minted or burned at the current price, the price
/// stays exactly 10**6 shares per micro-USDC: balances equal the off-chain micro-USDC amounts to
/// the unit, and USDC sent without `deposit` (a donation) moves no price: it belongs to no one
/// (IVault) and only the admin may sweep it (`sweepSurplus`), never a depositor's money.
///
/// Exchange accounts (FEES, CLEARING, INSURANCE) are signed integers outside the pool, moved only
/// by settlement batches. FEES never goes below 0.
///
/// Withdrawals paid as CXPT: CXPT is minted 1:1 to the trader and the withdrawn USDC goes to the
/// treasury (`setTreasury`), where it backs the CXPT supply (`CxptBacked`). The Vault's books move
/// exactly as for a USDC withdrawal — the trader's balance and the USDC held fall by the amount —
/// so the off-chain ledger, which books every paid withdrawal as withdrawn, agrees with the chain,
/// and conservation holds:
///     usdc.balanceOf(vault) == pooledAssets + fees + clearing + insurance + surplus, surplus >= 0.
///
/// Pause rule: a paused Vault moves no money and no token supply — deposit, withdraw, settle,
/// mintSynth, depositSynth and sweepSurplus revert `EnforcedPause`. Still allowed: every view,
/// cancelBySignature (moves nothing; a trader's proof of a cancel matters most in an incident),
/// deploySynth (creates an empty token), pause/unpause, role management and upgrades (the fix).
contract Vault is
    IVault,
    Initializable,
    UUPSUpgradeable,
    AccessControlUpgradeable,
    PausableUpgradeable,
    EIP712Upgradeable,
    ReentrancyGuardTransient
{
    using SafeERC20 for IERC20;
    using Math for uint256;

    bytes32 public constant SETTLEMENT_ROLE = keccak256("SETTLEMENT_ROLE");
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");
    bytes32 public constant UPGRADER_ROLE = keccak256("UPGRADER_ROLE");

    /// The gateway's EIP-712 domain (services/gateway/core/typed_data.py DOMAIN_NAME / DOMAIN_VERSION).
    string public constant DOMAIN_NAME = "CXPT Exchange";
    string public constant DOMAIN_VERSION = "1";

    /// Virtual shares: 10**SHARE_DECIMALS_OFFSET shares per micro-USDC (ERC-4626 decimals offset).
    uint8 public constant SHARE_DECIMALS_OFFSET = 6;
    uint256 private constant VIRTUAL_SHARES = 10 ** SHARE_DECIMALS_OFFSET;
    uint256 private constant VIRTUAL_ASSETS = 1;

    /// @custom:storage-location erc7201:cxpt.storage.Vault
    struct VaultStorage {
        IERC20 usdc;
        address cxpt;
        uint256 totalShares;
        uint256 pooledAssets;
        int256 fees;
        int256 clearing;
        int256 insurance;
        mapping(address trader => uint256) shares;
        mapping(bytes32 batchId => bool) batchSettled;
        mapping(bytes16 withdrawalId => bool) withdrawalPaid;
        mapping(bytes32 cancelHash => bool) cancelProven;
        mapping(bytes32 symbolHash => address) synths;
        address treasury; // appended last: upgrade-safe
    }

    // keccak256(abi.encode(uint256(keccak256("cxpt.storage.Vault")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant VAULT_STORAGE = 0x8ffe223749312e0b55b64f977190c45d242f001acc1bfe6f55be0275cc926000;

    event CancelProven(
        address indexed trader,
        bytes32 indexed cancelHash,
        string market,
        bytes16 orderId,
        string clientOrderId,
        uint64 nonce,
        uint64 deadline
    );
    event CxptBacked(bytes16 indexed withdrawalId, address indexed treasury, uint256 amount);
    event TreasuryChanged(address indexed treasury);
    event SynthDeployed(string symbol, address indexed synth);
    event SynthMinted(address indexed synth, address indexed to, uint256 amount);
    event SynthDeposited(address indexed synth, address indexed trader, address indexed from, uint256 amount);
    event SurplusSwept(address indexed to, uint256 amount);

    error ZeroAddress();
    error ZeroAmount();
    error TransferAmountMismatch(uint256 expected, uint256 received);
    error InsufficientBalance(address trader, uint256 balance, uint256 needed);
    error InsufficientLiquidity(uint256 available, uint256 needed);
    error LengthMismatch(uint256 traders, uint256 deltas);
    error BatchAlreadySettled(bytes32 batchId);
    error BatchNotBalanced(int256 sum);
    error NegativeFees(int256 fees);
    error WithdrawalAlreadyPaid(bytes16 withdrawalId);
    error SignatureExpired(uint64 deadline, uint256 nowMicros);
    error SignerMismatch(address signer, address trader);
    error CancelAlreadyProven(bytes32 cancelHash);
    error InvalidSymbol(string symbol);
    error SynthAlreadyDeployed(string symbol, address synth);
    error UnknownSynth(string symbol);
    error NoSurplus();
    error TreasuryUnset();

    /// @custom:oz-upgrades-unsafe-allow constructor
    constructor() {
        _disableInitializers();
    }

    /// Set up the proxy: roles, tokens and the EIP-712 domain. Once.
    /// `admin` receives DEFAULT_ADMIN_ROLE, PAUSER_ROLE and UPGRADER_ROLE; `settlement` SETTLEMENT_ROLE.
    function initialize(address admin, address settlement, address usdc_, address cxpt_) external initializer {
        if (admin == address(0) || settlement == address(0) || usdc_ == address(0) || cxpt_ == address(0)) {
            revert ZeroAddress();
        }
        __Pausable_init();
        __EIP712_init(DOMAIN_NAME, DOMAIN_VERSION);
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PAUSER_ROLE, admin);
        _grantRole(UPGRADER_ROLE, admin);
        _grantRole(SETTLEMENT_ROLE, settlement);
        VaultStorage storage $ = _s();
        $.usdc = IERC20(usdc_);
        $.cxpt = cxpt_;
    }

    // -- money in, money out, settlement -------------------------------------------------------------

    /// @inheritdoc IVault
    function deposit(address trader, uint256 amount) external whenNotPaused nonReentrant returns (uint256 shares) {
        if (trader == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        IERC20 token = _s().usdc;
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - before;
        // A token that takes a fee on transfer would credit more than arrived: refuse.
        if (received != amount) revert TransferAmountMismatch(amount, received);
        shares = _credit(trader, amount);
        emit Deposited(trader, msg.sender, amount, shares);
    }

    /// @inheritdoc IVault
    function withdraw(Withdrawal calldata w, bytes calldata signature)
        external
        onlyRole(SETTLEMENT_ROLE)
        whenNotPaused
        nonReentrant
        returns (uint256 shares)
    {
        if (w.amount == 0) revert ZeroAmount();
        if (CxptTypes.expired(w.deadline)) revert SignatureExpired(w.deadline, block.timestamp * 1e6);
        VaultStorage storage $ = _s();
        if ($.withdrawalPaid[w.withdrawalId]) revert WithdrawalAlreadyPaid(w.withdrawalId);
        address signer = ECDSA.recoverCalldata(_hashTypedDataV4(CxptTypes.hash(w)), signature);
        if (signer != w.trader) revert SignerMismatch(signer, w.trader);
        $.withdrawalPaid[w.withdrawalId] = true;
        shares = _debit(w.trader, w.amount);
        // A balance can exceed what backs the claims while CLEARING or INSURANCE is negative (owed
        // by positions not yet settled). Pay only out of that backing, Σ balances + exchange
        // accounts: never out of a donated surplus, which belongs to no one, and never so far that
        // the Vault would owe less than nothing.
        int256 backing = _owed() + SafeCast.toInt256(w.amount);
        if (backing < SafeCast.toInt256(w.amount)) {
            revert InsufficientLiquidity(backing > 0 ? uint256(backing) : 0, w.amount);
        }
        if (w.asCxpt) {
            address treasury = $.treasury;
            if (treasury == address(0)) revert TreasuryUnset();
            $.usdc.safeTransfer(treasury, w.amount);
            emit CxptBacked(w.withdrawalId, treasury, w.amount);
            ICxptMinter($.cxpt).mint(w.trader, w.amount);
        } else {
            $.usdc.safeTransfer(w.trader, w.amount);
        }
        emit Withdrawn(w.trader, w.withdrawalId, w.amount, shares, w.asCxpt);
    }

    /// @inheritdoc IVault
    /// @dev Entries apply in order; a trader listed twice must stay >= 0 after each entry.
    function settle(
        bytes32 batchId,
        address[] calldata traders,
        int256[] calldata deltas,
        int256 feesDelta,
        int256 clearingDelta,
        int256 insuranceDelta
    ) external onlyRole(SETTLEMENT_ROLE) whenNotPaused nonReentrant {
        if (traders.length != deltas.length) revert LengthMismatch(traders.length, deltas.length);
        VaultStorage storage $ = _s();
        if ($.batchSettled[batchId]) revert BatchAlreadySettled(batchId);
        $.batchSettled[batchId] = true;
        int256 sum = feesDelta + clearingDelta + insuranceDelta;
        for (uint256 i = 0; i < traders.length; ++i) {
            address trader = traders[i];
            int256 delta = deltas[i];
            if (trader == address(0)) revert ZeroAddress();
            sum += delta;
            if (delta > 0) {
                _credit(trader, uint256(delta));
            } else if (delta < 0) {
                _debit(trader, uint256(-delta)); // -type(int256).min overflows: checked, reverts
            }
            emit TraderSettled(batchId, trader, delta);
        }
        if (sum != 0) revert BatchNotBalanced(sum);
        int256 fees = $.fees + feesDelta;
        if (fees < 0) revert NegativeFees(fees);
        $.fees = fees;
        $.clearing += clearingDelta;
        $.insurance += insuranceDelta;
        emit BatchSettled(batchId, traders.length, feesDelta, clearingDelta, insuranceDelta);
    }

    /// Pay USDC the Vault holds beyond what it owes (sent without `deposit`) to `to`. Admin only.
    /// @notice Where the USDC of withdrawals paid as CXPT goes (it backs the CXPT supply).
    function setTreasury(address treasury_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (treasury_ == address(0)) revert ZeroAddress();
        _s().treasury = treasury_;
        emit TreasuryChanged(treasury_);
    }

    function treasury() external view returns (address) {
        return _s().treasury;
    }

    function sweepSurplus(address to) external onlyRole(DEFAULT_ADMIN_ROLE) whenNotPaused nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        uint256 amount = surplus();
        if (amount == 0) revert NoSurplus();
        _s().usdc.safeTransfer(to, amount);
        emit SurplusSwept(to, amount);
    }

    // -- signatures --------------------------------------------------------------------------------

    /// Prove on-chain that `c.trader` signed this cancel (anyone may submit it). Emits
    /// `CancelProven` once per signed message; the chain watcher turns it into a CancelOrder
    /// command. Refused after the signature's deadline, like at the gateway. Allowed while paused.
    function cancelBySignature(CxptTypes.Cancel calldata c, bytes calldata signature) external {
        if (CxptTypes.expired(c.deadline)) revert SignatureExpired(c.deadline, block.timestamp * 1e6);
        bytes32 structHash = CxptTypes.hash(c);
        address signer = ECDSA.recoverCalldata(_hashTypedDataV4(structHash), signature);
        if (signer != c.trader) revert SignerMismatch(signer, c.trader);
        VaultStorage storage $ = _s();
        if ($.cancelProven[structHash]) revert CancelAlreadyProven(structHash);
        $.cancelProven[structHash] = true;
        emit CancelProven(c.trader, structHash, c.market, c.orderId, c.clientOrderId, c.nonce, c.deadline);
    }

    /// keccak256(0x19 0x01 ‖ domainSeparator ‖ structHash): the digest a trader signs.
    function hashTypedData(bytes32 structHash) public view returns (bytes32) {
        return _hashTypedDataV4(structHash);
    }

    /// The signer of `signature` over `structHash` in this Vault's domain. Reverts like OpenZeppelin's
    /// ECDSA (ECDSAInvalidSignature, ECDSAInvalidSignatureLength, ECDSAInvalidSignatureS for high s).
    function recoverSigner(bytes32 structHash, bytes calldata signature) external view returns (address) {
        return ECDSA.recoverCalldata(_hashTypedDataV4(structHash), signature);
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function hashOrder(CxptTypes.Order calldata o) external pure returns (bytes32) {
        return CxptTypes.hash(o);
    }

    function hashCancel(CxptTypes.Cancel calldata c) external pure returns (bytes32) {
        return CxptTypes.hash(c);
    }

    function hashCancelAll(CxptTypes.CancelAll calldata c) external pure returns (bytes32) {
        return CxptTypes.hash(c);
    }

    function hashAmend(CxptTypes.Amend calldata a) external pure returns (bytes32) {
        return CxptTypes.hash(a);
    }

    function hashWithdrawal(Withdrawal calldata w) external pure returns (bytes32) {
        return CxptTypes.hash(w);
    }

    function hashSession(CxptTypes.Session calldata s) external pure returns (bytes32) {
        return CxptTypes.hash(s);
    }

    function cancelProven(bytes32 cancelHash) external view returns (bool) {
        return _s().cancelProven[cancelHash];
    }

    // -- synths ------------------------------------------------------------------------------------

    /// Deploy the synth for `symbol` (1 to 32 bytes) at `synthAddress(symbol)`. Admin only; once.
    function deploySynth(string calldata symbol) external onlyRole(DEFAULT_ADMIN_ROLE) returns (address synth) {
        if (bytes(symbol).length == 0 || bytes(symbol).length > 32) revert InvalidSymbol(symbol);
        bytes32 salt = keccak256(bytes(symbol));
        VaultStorage storage $ = _s();
        if ($.synths[salt] != address(0)) revert SynthAlreadyDeployed(symbol, $.synths[salt]);
        synth = address(new SynthERC20{salt: salt}(symbol));
        $.synths[salt] = synth;
        emit SynthDeployed(symbol, synth);
    }

    /// Where `symbol`'s synth is (or will be) deployed: CREATE2 by this proxy, salt keccak256(symbol).
    function synthAddress(string calldata symbol) public view returns (address) {
        bytes32 initCodeHash = keccak256(abi.encodePacked(type(SynthERC20).creationCode, abi.encode(symbol)));
        return Create2.computeAddress(keccak256(bytes(symbol)), initCodeHash);
    }

    /// The deployed synth of `symbol`, or address(0) before `deploySynth`.
    function synthOf(string calldata symbol) public view returns (address) {
        return _s().synths[keccak256(bytes(symbol))];
    }

    /// Mint `amount` of `symbol`'s synth to `to` (a synth withdrawal the off-chain ledger booked).
    function mintSynth(string calldata symbol, address to, uint256 amount)
        external
        onlyRole(SETTLEMENT_ROLE)
        whenNotPaused
    {
        if (amount == 0) revert ZeroAmount();
        address synth = _synth(symbol);
        SynthERC20(synth).mint(to, amount);
        emit SynthMinted(synth, to, amount);
    }

    /// Deposit synths: burn `amount` of the caller's `symbol` synth and credit them to `trader`
    /// off-chain (the watcher reads `SynthDeposited`).
    function depositSynth(string calldata symbol, address trader, uint256 amount) external whenNotPaused {
        if (trader == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        address synth = _synth(symbol);
        SynthERC20(synth).burn(msg.sender, amount);
        emit SynthDeposited(synth, trader, msg.sender, amount);
    }

    // -- pause -------------------------------------------------------------------------------------

    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    // -- views -------------------------------------------------------------------------------------

    /// @inheritdoc IVault
    function balanceOf(address trader) external view returns (uint256) {
        return _toAssets(_s().shares[trader], Math.Rounding.Floor);
    }

    /// @inheritdoc IVault
    function sharesOf(address trader) external view returns (uint256) {
        return _s().shares[trader];
    }

    /// @inheritdoc IVault
    function exchangeAccounts() external view returns (int256 fees, int256 clearing, int256 insurance) {
        VaultStorage storage $ = _s();
        return ($.fees, $.clearing, $.insurance);
    }

    /// @inheritdoc IVault
    function batchSettled(bytes32 batchId) external view returns (bool) {
        return _s().batchSettled[batchId];
    }

    /// @inheritdoc IVault
    function withdrawalPaid(bytes16 withdrawalId) external view returns (bool) {
        return _s().withdrawalPaid[withdrawalId];
    }

    /// @inheritdoc IVault
    function usdc() external view returns (address) {
        return address(_s().usdc);
    }

    /// @inheritdoc IVault
    function cxpt() external view returns (address) {
        return _s().cxpt;
    }

    function totalShares() external view returns (uint256) {
        return _s().totalShares;
    }

    /// Σ trader balances (micro-USDC): the assets behind the shares.
    function pooledAssets() external view returns (uint256) {
        return _s().pooledAssets;
    }

    /// What the Vault owes: Σ trader balances + FEES + CLEARING + INSURANCE (never negative).
    function owed() public view returns (uint256) {
        return SafeCast.toUint256(_owed());
    }

    /// USDC held beyond what the Vault owes: sent without `deposit`; belongs to no one.
    function surplus() public view returns (uint256) {
        return _s().usdc.balanceOf(address(this)) - owed();
    }

    /// Shares a deposit (or credit) of `assets` mints: rounded down.
    function previewDeposit(uint256 assets) external view returns (uint256) {
        return _toShares(assets, Math.Rounding.Floor);
    }

    /// Shares a withdrawal (or debit) of `assets` burns: rounded up.
    function previewWithdraw(uint256 assets) external view returns (uint256) {
        return _toShares(assets, Math.Rounding.Ceil);
    }

    // -- internals ---------------------------------------------------------------------------------

    function _credit(address trader, uint256 assets) private returns (uint256 shares) {
        VaultStorage storage $ = _s();
        shares = _toShares(assets, Math.Rounding.Floor);
        $.shares[trader] += shares;
        $.totalShares += shares;
        $.pooledAssets += assets;
    }

    /// Σ trader balances + FEES + CLEARING + INSURANCE, signed (withdrawals keep it >= 0).
    function _owed() private view returns (int256) {
        VaultStorage storage $ = _s();
        return SafeCast.toInt256($.pooledAssets) + $.fees + $.clearing + $.insurance;
    }

    function _debit(address trader, uint256 assets) private returns (uint256 shares) {
        VaultStorage storage $ = _s();
        shares = _toShares(assets, Math.Rounding.Ceil);
        uint256 held = $.shares[trader];
        if (shares > held) revert InsufficientBalance(trader, _toAssets(held, Math.Rounding.Floor), assets);
        unchecked {
            $.shares[trader] = held - shares;
        }
        $.totalShares -= shares;
        $.pooledAssets -= assets;
    }

    function _toShares(uint256 assets, Math.Rounding rounding) private view returns (uint256) {
        VaultStorage storage $ = _s();
        return assets.mulDiv($.totalShares + VIRTUAL_SHARES, $.pooledAssets + VIRTUAL_ASSETS, rounding);
    }

    function _toAssets(uint256 shares, Math.Rounding rounding) private view returns (uint256) {
        VaultStorage storage $ = _s();
        return shares.mulDiv($.pooledAssets + VIRTUAL_ASSETS, $.totalShares + VIRTUAL_SHARES, rounding);
    }

    function _synth(string calldata symbol) private view returns (address synth) {
        synth = _s().synths[keccak256(bytes(symbol))];
        if (synth == address(0)) revert UnknownSynth(symbol);
    }

    function _authorizeUpgrade(address) internal override onlyRole(UPGRADER_ROLE) {}

    function _s() private pure returns (VaultStorage storage $) {
        assembly {
            $.slot := VAULT_STORAGE
        }
    }
}
