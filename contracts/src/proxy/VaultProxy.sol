// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";

/// @title The Vault's ERC-1967 proxy: OpenZeppelin's, named here so that it gets an artifact.
/// @notice Its address is the Vault's address for good (the EIP-712 verifying contract, the CXPT
/// minter, the CREATE2 deployer of synths); upgrades (UUPS) change only the implementation slot.
contract VaultProxy is ERC1967Proxy {
    constructor(address implementation, bytes memory initData) payable ERC1967Proxy(implementation, initData) {}
}
