"""Keys: created, kept encrypted at mode 0600, or given raw; never printed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount

from services.client import keys
from tests.unit.gateway.kit import ALICE, ALICE_KEY


def save(account: LocalAccount, path: Path, password: str, *, overwrite: bool = False) -> Path:
    """`keys.save_keystore` with a cheap KDF: the default scrypt takes a second (right for people)."""
    return keys.save_keystore(account, path, password, overwrite=overwrite, kdf="pbkdf2", iterations=2)


def test_a_keystore_round_trips_with_its_password(tmp_path: Path) -> None:
    account = keys.new_account()
    path = save(account, tmp_path / "nested" / "key.json", "correct horse")

    assert keys.load_keystore(path, "correct horse").key == account.key
    assert keys.keystore_address(path) == account.address.lower()
    assert account.key.hex() not in path.read_text()


def test_the_keystore_is_private(tmp_path: Path) -> None:
    path = save(keys.new_account(), tmp_path / "cxpt" / "key.json", "pw")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["key.json"]  # no temporary file left


def test_an_existing_key_is_never_replaced_unless_asked(tmp_path: Path) -> None:
    first, second = keys.new_account(), keys.new_account()
    path = save(first, tmp_path / "key.json", "pw")

    with pytest.raises(keys.KeyProblem, match="exists"):
        save(second, path, "pw")
    assert keys.keystore_address(path) == first.address.lower()

    save(second, path, "pw", overwrite=True)
    assert keys.keystore_address(path) == second.address.lower()


def test_a_wrong_password_or_an_empty_one_is_refused(tmp_path: Path) -> None:
    path = save(keys.new_account(), tmp_path / "key.json", "pw")

    with pytest.raises(keys.KeyProblem, match="wrong password"):
        keys.load_keystore(path, "not it")
    with pytest.raises(keys.KeyProblem, match="non-empty"):
        keys.save_keystore(keys.new_account(), tmp_path / "other.json", "")


def test_the_raw_key_in_the_environment_wins(tmp_path: Path) -> None:
    env = {keys.ENV_PRIVATE_KEY: ALICE_KEY}

    assert keys.load_account(tmp_path / "absent.json", env=env).address.lower() == ALICE


def test_the_keystore_password_comes_from_the_environment_or_a_prompt(tmp_path: Path) -> None:
    account = keys.new_account()
    path = save(account, tmp_path / "key.json", "pw")
    asked: list[str] = []

    def prompt(question: str) -> str:
        asked.append(question)
        return "pw"

    from_env = keys.load_account(path, env={keys.ENV_PASSWORD: "pw"}, prompt=prompt)
    from_prompt = keys.load_account(path, env={}, prompt=prompt)

    assert from_env.address == from_prompt.address == account.address
    assert len(asked) == 1 and str(path) in asked[0]


def test_no_key_at_all_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(keys.KeyProblem, match="cxpt key new"):
        keys.load_account(tmp_path / "absent.json", env={})


def test_a_malformed_raw_key_is_refused_without_echoing_it() -> None:
    almost = ALICE_KEY[:-2]

    with pytest.raises(keys.KeyProblem) as refused:
        keys.account_from_hex(almost)

    assert almost[2:12] not in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_confirmation_must_match() -> None:
    answers = iter(["one", "two"])

    with pytest.raises(keys.KeyProblem, match="differ"):
        keys.password("new: ", confirm=True, env={}, prompt=lambda _: next(answers))
