"""Mock Chainlink feeds on the local chain, for the oracle's Chainlink source to read.

    python -m services.chain.mocks deploy --feeds BTC-USD=65000,ETH-USD=3500   # new feeds, always
    python -m services.chain.mocks ensure                 # deploy only feeds missing or gone (idempotent)
    python -m services.chain.mocks set-price BTC-USD 66000.5
    python -m services.chain.mocks set-price BTC-USD 66000 --age 120   # a round published 2 min ago
    python -m services.chain.mocks show
    export "$(python -m services.chain.mocks env)"     # ORACLE_CHAINLINK_FEEDS=BTC-USD=0x…,ETH-USD=0x…

Each feed is a `MockV3Aggregator` (contracts/src/mocks) answering the AggregatorV3 calls like a
real feed. Addresses go to the deployment file (`services.chain.deployments`,
``<run dir>/deployments/local.json``), which the oracle service reads. ``ensure`` redeploys a feed
whose address holds no code: after ``deploy/dev.sh clean`` the chain starts empty again.
Prices are decimal strings converted exactly to the feed's integer answer (no floats).
Transactions are signed by the feed operator key (`services.chain.accounts`).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from web3 import Web3

from services.chain import client, deployments
from services.chain.accounts import FEED_OPERATOR_KEY_ENV, MissingKeyError, signing_key
from services.chain.artifacts import ArtifactError, load
from services.chain.client import TransactionFailedError
from services.chain.deployments import DeploymentError
from services.common.settings import get_settings

MOCK_CONTRACT = "MockV3Aggregator"
DEFAULT_FEEDS = "BTC-USD=65000,ETH-USD=3500"
USD_FEED_DECIMALS = 8
"""What Chainlink's USD-quoted feeds use."""

_SYMBOL = re.compile(r"^[A-Z0-9]+-[A-Z0-9]+$")
_PRICE = re.compile(r"^(-?)(\d+)(?:\.(\d+))?$")


def parse_feeds(text: str) -> dict[str, str]:
    """``"BTC-USD=65000,ETH-USD=3500.5"`` → ``{"BTC-USD": "65000", "ETH-USD": "3500.5"}``.

    Raises ValueError on a malformed entry or a symbol given twice.
    """
    feeds: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        symbol, sep, price = item.partition("=")
        symbol, price = symbol.strip(), price.strip()
        if not sep or not _SYMBOL.match(symbol) or not _PRICE.match(price):
            raise ValueError(f"{item!r} is not SYMBOL=PRICE, e.g. BTC-USD=65000.5")
        if symbol in feeds:
            raise ValueError(f"{symbol} is given twice")
        feeds[symbol] = price
    if not feeds:
        raise ValueError("no feeds given")
    return feeds


def price_to_answer(price: str, decimals: int) -> int:
    """The feed's integer answer for decimal `price`: ``("65000.5", 8)`` → ``6_500_050_000_000``.

    Exact; raises ValueError when `price` has more fractional digits than the feed keeps.
    Zero and negative prices are allowed (to test how consumers refuse them).
    """
    match = _PRICE.match(price.strip())
    if match is None:
        raise ValueError(f"{price!r} is not a decimal number")
    sign, whole, fraction = match[1], match[2], (match[3] or "").rstrip("0")
    if len(fraction) > decimals:
        raise ValueError(f"{price} has more than {decimals} decimals")
    scale: int = pow(10, decimals)  # `10**n` is typed Any (n could be negative)
    magnitude = int(whole) * scale + int(fraction.ljust(decimals, "0") or "0")
    return -magnitude if sign else magnitude


def describe(symbol: str) -> str:
    """Chainlink's description for an index symbol: ``BTC-USD`` → ``BTC / USD``."""
    base, _, quote = symbol.partition("-")
    return f"{base} / {quote}"


def deploy_feeds(
    w3: Web3, path: Path, feeds: dict[str, str], *, decimals: int, only_missing: bool
) -> dict[str, tuple[str, bool]]:
    """Deploy a mock per feed and record it in the deployment file at `path`.

    With `only_missing`, a feed already recorded whose address still holds code is kept as is.
    Returns symbol → (address, newly deployed).
    """
    chain_id = w3.eth.chain_id
    key = signing_key(FEED_OPERATOR_KEY_ENV, chain_id)
    current = deployments.read(path) or deployments.Deployment(chain_id=chain_id)
    if current.chain_id != chain_id:
        raise deployments.DeploymentError(
            f"{path} describes chain {current.chain_id}, but the RPC serves chain {chain_id}"
        )
    artifact = load(MOCK_CONTRACT)
    recorded = dict(current.chainlink_feeds)
    result: dict[str, tuple[str, bool]] = {}
    for symbol, price in feeds.items():
        known = recorded.get(symbol)
        if only_missing and known is not None and client.has_code(w3, known):
            result[symbol] = (known, False)
            continue
        answer = price_to_answer(price, decimals)
        address = client.deploy(w3, artifact, decimals, describe(symbol), answer, key=key)
        recorded[symbol] = address
        result[symbol] = (address, True)
        # Written after each feed: a failure half-way keeps what was already deployed.
        deployments.write(path, deployments.Deployment(chain_id, dict(recorded), current.extra))
    return result


def set_price(w3: Web3, path: Path, symbol: str, price: str, *, age_s: int = 0) -> tuple[int, int]:
    """Publish `price` as a new round of `symbol`'s mock, `age_s` seconds in the past.

    Returns (round id, answer).
    """
    deployment = deployments.read(path)
    if deployment is None or symbol not in deployment.chainlink_feeds:
        raise deployments.DeploymentError(f"no feed for {symbol} in {path}; deploy it first")
    feed = client.bind(w3, load(MOCK_CONTRACT), deployment.chainlink_feeds[symbol])
    key = signing_key(FEED_OPERATOR_KEY_ENV, w3.eth.chain_id)
    answer = price_to_answer(price, feed.functions.decimals().call())
    if age_s == 0:
        client.transact(w3, feed.functions.updateAnswer(answer), key=key)
    else:
        # Timestamps from the chain, not this machine's clock: they are what consumers compare.
        at = w3.eth.get_block("latest")["timestamp"] - age_s
        round_id = feed.functions.latestRound().call() + 1
        client.transact(w3, feed.functions.updateRoundData(round_id, answer, at, at), key=key)
    round_id, latest, *_ = feed.functions.latestRoundData().call()
    return round_id, latest


def oracle_env(path: Path) -> str:
    """The oracle service's setting for the recorded feeds: ``ORACLE_CHAINLINK_FEEDS=BTC-USD=0x…,…``."""
    deployment = deployments.read(path)
    if deployment is None:
        raise DeploymentError(f"no deployment file at {path}; run: python -m services.chain.mocks ensure")
    feeds = ",".join(f"{symbol}={address}" for symbol, address in deployment.chainlink_feeds.items())
    return f"ORACLE_CHAINLINK_FEEDS={feeds}"


def main(argv: list[str] | None = None) -> int:
    """The command line in the module docstring."""
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="python -m services.chain.mocks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rpc-url", default=settings.eth_rpc_url, help="default: ETH_RPC_URL")
    parser.add_argument(
        "--deployment",
        type=Path,
        default=deployments.deployment_path(settings.cxpt_run_dir),
        help="deployment file (default: <CXPT_RUN_DIR>/deployments/local.json)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("deploy", "ensure"):
        sub = commands.add_parser(name)
        sub.add_argument("--feeds", default=DEFAULT_FEEDS, help=f"SYMBOL=PRICE,… (default {DEFAULT_FEEDS})")
        sub.add_argument("--decimals", type=int, default=USD_FEED_DECIMALS, help="answer decimals")
    price = commands.add_parser("set-price")
    price.add_argument("symbol")
    price.add_argument("price", help="decimal price, e.g. 66000.5")
    price.add_argument("--age", type=int, default=0, help="publish the round this many seconds ago")
    commands.add_parser("show")
    commands.add_parser("env", help="print ORACLE_CHAINLINK_FEEDS=… for the oracle service")
    args = parser.parse_args(argv)

    w3 = client.connect(args.rpc_url)
    try:
        if args.command in ("deploy", "ensure"):
            if not 0 <= args.decimals <= 77:
                parser.error("--decimals must be 0..77 (an int256 answer holds 77 digits)")
            try:
                feeds = parse_feeds(args.feeds)
            except ValueError as exc:
                parser.error(str(exc))
            done = deploy_feeds(
                w3, args.deployment, feeds, decimals=args.decimals, only_missing=args.command == "ensure"
            )
            for symbol, (address, new) in done.items():
                print(f"{symbol:<10} {address}  {'deployed' if new else 'kept'}")
            print(f"recorded in {args.deployment}")
        elif args.command == "set-price":
            round_id, answer = set_price(w3, args.deployment, args.symbol, args.price, age_s=args.age)
            print(f"{args.symbol} round {round_id}: answer {answer}")
        elif args.command == "env":
            print(oracle_env(args.deployment))
        else:
            _show(w3, args.deployment)
    except (ArtifactError, DeploymentError, MissingKeyError, TransactionFailedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:  # requests' connection errors are OSErrors; bad prices ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _show(w3: Web3, path: Path) -> None:
    deployment = deployments.read(path)
    if deployment is None:
        print(f"no deployment file at {path}")
        return
    artifact = load(MOCK_CONTRACT)
    now = int(time.time())
    for symbol, address in deployment.chainlink_feeds.items():
        if not client.has_code(w3, address):
            print(f"{symbol:<10} {address}  no code (chain reset? run: ensure)")
            continue
        feed = client.bind(w3, artifact, address)
        decimals = feed.functions.decimals().call()
        round_id, answer, _, updated_at, _ = feed.functions.latestRoundData().call()
        print(f"{symbol:<10} {address}  round {round_id} answer {answer} ({decimals} decimals), "
              f"updated {now - updated_at}s ago")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
