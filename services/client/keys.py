"""The trader's key: created with eth-account, kept in an encrypted keystore file, or given raw.

Where a key comes from, first match wins:

1. `CXPT_PRIVATE_KEY` — a raw hex private key in the environment (for bots in a secret store);
2. a keystore JSON file (Web3 Secret Storage v3, what geth and MetaMask export), by default
   `~/.cxpt/key.json`, written with mode 0600; its password from `CXPT_KEY_PASSWORD`, else asked
   at the terminal.

Nothing here prints, logs or puts a private key into an exception message.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal

from eth_account import Account
from eth_account.signers.local import LocalAccount

ENV_PRIVATE_KEY: Final = "CXPT_PRIVATE_KEY"
ENV_PASSWORD: Final = "CXPT_KEY_PASSWORD"
DEFAULT_KEY_PATH: Final = Path("~/.cxpt/key.json")

Prompt = Callable[[str], str]


class KeyProblem(Exception):
    """No usable key: none configured, a wrong password, an unreadable file, a malformed raw key."""


def new_account() -> LocalAccount:
    """A fresh random key (eth-account's `Account.create`, from the OS's randomness)."""
    account: LocalAccount = Account.create()
    return account


def save_keystore(
    account: LocalAccount,
    path: Path | str = DEFAULT_KEY_PATH,
    password: str = "",
    *,
    overwrite: bool = False,
    kdf: Literal["scrypt", "pbkdf2"] = "scrypt",
    iterations: int | None = None,
) -> Path:
    """Encrypt `account`'s key under `password` into `path` (mode 0600, parent 0700); the path.

    Refuses to replace an existing file unless `overwrite`: a lost key is lost money.
    """
    if not password:
        raise KeyProblem("a keystore needs a non-empty password")
    target = Path(path).expanduser()
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise KeyProblem(f"{target} exists already; not replacing a key (remove it yourself if you mean to)")
    keystore = Account.encrypt(account.key, password, kdf=kdf, iterations=iterations)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            json.dump(keystore, file)
        os.chmod(temporary, 0o600)
        if overwrite:
            os.replace(temporary, target)
        else:
            os.link(temporary, target)  # fails if the file appeared meanwhile: never clobbers
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return target


def load_keystore(path: Path | str, password: str) -> LocalAccount:
    """The account in keystore `path`, decrypted with `password`."""
    keystore = _read_keystore(Path(path).expanduser())
    try:
        key = Account.decrypt(keystore, password)
    except ValueError:
        raise KeyProblem(f"cannot decrypt {path}: wrong password?") from None
    account: LocalAccount = Account.from_key(key)
    return account


def keystore_address(path: Path | str) -> str:
    """The address a keystore file holds (stored in clear beside the key): no password needed."""
    keystore = _read_keystore(Path(path).expanduser())
    address = str(keystore.get("address", ""))
    if not address:
        raise KeyProblem(f"{path} names no address")
    return "0x" + address.lower().removeprefix("0x")


def account_from_hex(private_key: str) -> LocalAccount:
    """The account of a raw hex private key (with or without 0x)."""
    try:
        account: LocalAccount = Account.from_key(private_key.strip())
    except (ValueError, TypeError):
        # Deliberately without the cause: it could echo the (malformed) key.
        raise KeyProblem("the raw private key is not 32 bytes of hex") from None
    return account


def load_account(
    path: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    prompt: Prompt = getpass.getpass,
) -> LocalAccount:
    """The trader's account: `CXPT_PRIVATE_KEY` if set, else the keystore at `path` (default
    `~/.cxpt/key.json`) with the password from `CXPT_KEY_PASSWORD` or `prompt`."""
    environ = os.environ if env is None else env
    raw = environ.get(ENV_PRIVATE_KEY)
    if raw:
        return account_from_hex(raw)
    target = Path(path or DEFAULT_KEY_PATH).expanduser()
    if not target.exists():
        raise KeyProblem(
            f"no key: {target} does not exist and {ENV_PRIVATE_KEY} is unset (create one: cxpt key new)"
        )
    return load_keystore(target, password(f"password for {target}: ", env=environ, prompt=prompt))


def password(
    question: str,
    *,
    confirm: bool = False,
    env: Mapping[str, str] | None = None,
    prompt: Prompt = getpass.getpass,
) -> str:
    """The keystore password: `CXPT_KEY_PASSWORD` if set, else asked (twice when `confirm`)."""
    environ = os.environ if env is None else env
    given = environ.get(ENV_PASSWORD)
    if given is not None:
        return given
    first = prompt(question)
    if confirm and prompt("again: ") != first:
        raise KeyProblem("the two passwords differ")
    return first


def _read_keystore(path: Path) -> dict[str, Any]:
    try:
        keystore = json.loads(path.read_text())
    except FileNotFoundError:
        raise KeyProblem(f"no keystore at {path}") from None
    except (OSError, ValueError) as error:
        raise KeyProblem(f"cannot read keystore {path}: {error}") from None
    if not isinstance(keystore, dict):
        raise KeyProblem(f"{path} is not a keystore")
    return keystore
