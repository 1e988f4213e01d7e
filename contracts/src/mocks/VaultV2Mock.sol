// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Vault} from "../Vault.sol";

/// @title Tests only: the Vault plus one function, to show that a UUPS upgrade keeps storage.
contract VaultV2Mock is Vault {
    function v2() external pure returns (string memory) {
        return "VaultV2Mock";
    }
}
