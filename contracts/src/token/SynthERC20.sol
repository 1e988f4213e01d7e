// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title One spot synth (e.g. sBTC for BTC), backed 1:1 by the exchange's synth inventory.
/// @notice Deployed only by the Vault, with CREATE2 and salt keccak256(symbol), so its address is
/// a function of (Vault proxy address, symbol) known before deployment (`Vault.synthAddress`,
/// `services.chain.deploy.synth_address`). The constructor takes only the symbol, so the init code,
/// and therefore the address, depends on nothing else. Only the Vault mints and burns.
/// 18 decimals, like the ERC-20 default; one unit is 1e-18 of the underlying asset.
contract SynthERC20 is ERC20 {
    address public immutable vault;

    error NotVault(address caller);

    constructor(string memory symbol_) ERC20(string.concat("CXPT Synth ", symbol_), symbol_) {
        vault = msg.sender;
    }

    modifier onlyVault() {
        if (msg.sender != vault) revert NotVault(msg.sender);
        _;
    }

    function mint(address to, uint256 amount) external onlyVault {
        _mint(to, amount);
    }

    function burn(address from, uint256 amount) external onlyVault {
        _burn(from, amount);
    }
}
