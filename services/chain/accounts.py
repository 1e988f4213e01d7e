"""Which key signs the project's own chain transactions (deployments, mock feed updates).

The only key in this repository is anvil's: anvil derives its ten funded development accounts from
the public mnemonic "test test test test test test test test test test test junk", printed in
every anvil log and in Foundry's documentation. It is not a secret and must never hold value.
It is used only as the fallback on the local chain (id 31337); anywhere else the key must come
from the environment, and asking for a fallback there is an error.

=========================== ================================ ================================
variable                    signs                            fallback on chain 31337
=========================== ================================ ================================
``CHAIN_DEPLOYER_KEY``      the exchange's contracts         anvil account #0
``CHAIN_FEED_OPERATOR_KEY`` mock Chainlink feeds (local)     anvil account #9
``CHAIN_SETTLEMENT_KEY``    Vault settlement (SETTLEMENT_ROLE) anvil account #1
=========================== ================================ ================================

Mock feeds get their own account so that they do not use up account #0's nonces: the exchange's
first contract (the Vault, in a later issue) then lands at account #0's first-deployment address
on a fresh anvil, as the gateway tests expect. It also mirrors production, where someone other
than the exchange operates the feeds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

LOCAL_CHAIN_ID = 31337
"""anvil's default chain id: the only chain on which the public dev keys below are used."""

ANVIL_ACCOUNT_0_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
"""anvil dev account #0 (0xf39F…2266). Public knowledge; local chain only."""
ANVIL_ACCOUNT_1_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
"""anvil dev account #1 (0x7099…79C8). Public knowledge; local chain only."""
ANVIL_ACCOUNT_9_KEY = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6"
"""anvil dev account #9 (0xa0Ee…9720). Public knowledge; local chain only."""

DEPLOYER_KEY_ENV = "CHAIN_DEPLOYER_KEY"
FEED_OPERATOR_KEY_ENV = "CHAIN_FEED_OPERATOR_KEY"
SETTLEMENT_KEY_ENV = "CHAIN_SETTLEMENT_KEY"

_FALLBACKS = {
    DEPLOYER_KEY_ENV: ANVIL_ACCOUNT_0_KEY,
    FEED_OPERATOR_KEY_ENV: ANVIL_ACCOUNT_9_KEY,
    SETTLEMENT_KEY_ENV: ANVIL_ACCOUNT_1_KEY,
}


class MissingKeyError(RuntimeError):
    """No key in the environment for a chain where the public dev keys must not be used."""


def signing_key(variable: str, chain_id: int, env: Mapping[str, str] | None = None) -> str:
    """The private key named by environment `variable`, else anvil's public one on chain 31337.

    Raises `MissingKeyError` when the variable is unset on any other chain: a public key there
    would sign transactions anyone can front-run or drain.
    """
    environ = os.environ if env is None else env
    key = environ.get(variable, "").strip()
    if key:
        return key
    if chain_id != LOCAL_CHAIN_ID:
        raise MissingKeyError(f"set {variable}: chain {chain_id} is not the local anvil ({LOCAL_CHAIN_ID})")
    return _FALLBACKS[variable]
