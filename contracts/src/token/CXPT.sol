// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {ERC20Votes} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Votes.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title CXPT, the exchange's governance and fee-rebate token.
/// @notice Minted only by the Vault, 1:1 against micro-USDC, when a trader withdraws as CXPT;
/// 6 decimals like USDC. ERC-2612 permit and ERC-5805 votes (delegation, checkpoints by block
/// number). Holders may burn their own tokens; nobody else can burn or mint.
/// The minter is wired once, by the deployer, after the Vault's proxy exists (the Vault needs
/// CXPT's address at initialisation and CXPT the Vault's): `setMinter` then locks for good.
/// The Vault is a UUPS proxy, so an upgrade of the Vault keeps the minter.
contract CXPT is ERC20, ERC20Permit, ERC20Votes {
    address public immutable deployer;
    address public minter;

    event MinterSet(address indexed minter);

    error NotMinter(address caller);
    error NotDeployer(address caller);
    error MinterAlreadySet(address minter);
    error ZeroMinter();

    constructor() ERC20("CXPT", "CXPT") ERC20Permit("CXPT") {
        deployer = msg.sender;
    }

    /// Wire the Vault (its proxy address) as the only minter. Once, by the deployer.
    function setMinter(address vault) external {
        if (msg.sender != deployer) revert NotDeployer(msg.sender);
        if (minter != address(0)) revert MinterAlreadySet(minter);
        if (vault == address(0)) revert ZeroMinter();
        minter = vault;
        emit MinterSet(vault);
    }

    function mint(address to, uint256 amount) external {
        if (msg.sender != minter) revert NotMinter(msg.sender);
        _mint(to, amount);
    }

    function burn(uint256 amount) external {
        _burn(msg.sender, amount);
    }

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function _update(address from, address to, uint256 value) internal override(ERC20, ERC20Votes) {
        super._update(from, to, value);
    }

    function nonces(address owner) public view override(ERC20Permit, Nonces) returns (uint256) {
        return super.nonces(owner);
    }
}
