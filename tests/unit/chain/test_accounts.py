"""Signing keys: anvil's public dev keys only as the fallback on the local chain."""

from __future__ import annotations

import pytest

from services.chain.accounts import (
    ANVIL_ACCOUNT_0_KEY,
    ANVIL_ACCOUNT_9_KEY,
    DEPLOYER_KEY_ENV,
    FEED_OPERATOR_KEY_ENV,
    MissingKeyError,
    signing_key,
)
from services.chain.client import address_of

OWN_KEY = "0x" + "11" * 32


def test_the_fallbacks_are_anvils_documented_accounts() -> None:
    # Expectation: account #0 and #9 of the mnemonic "test … junk", as anvil prints them.
    assert address_of(ANVIL_ACCOUNT_0_KEY) == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert address_of(ANVIL_ACCOUNT_9_KEY) == "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"


def test_on_the_local_chain_an_unset_variable_falls_back_to_anvils_key() -> None:
    assert signing_key(DEPLOYER_KEY_ENV, 31337, env={}) == ANVIL_ACCOUNT_0_KEY
    assert signing_key(FEED_OPERATOR_KEY_ENV, 31337, env={}) == ANVIL_ACCOUNT_9_KEY


def test_a_key_from_the_environment_wins_everywhere() -> None:
    assert signing_key(DEPLOYER_KEY_ENV, 31337, env={DEPLOYER_KEY_ENV: OWN_KEY}) == OWN_KEY
    assert signing_key(DEPLOYER_KEY_ENV, 8453, env={DEPLOYER_KEY_ENV: f" {OWN_KEY}\n"}) == OWN_KEY


def test_any_other_chain_without_a_key_is_refused() -> None:
    # State: Base mainnet (8453), nothing in the environment.
    with pytest.raises(MissingKeyError, match=DEPLOYER_KEY_ENV):
        signing_key(DEPLOYER_KEY_ENV, 8453, env={})
