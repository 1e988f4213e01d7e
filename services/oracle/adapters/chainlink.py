"""Chainlink on-chain feeds as a `PriceSource`: `latestRoundData()` through web3, converted exactly.

One `ChainlinkSource` reads a set of AggregatorV3 feeds (mainnet/L2 feeds or their proxies, or
the local `MockV3Aggregator`s that `python -m services.chain.mocks` deploys) over one Web3
connection. Per feed and round it calls `decimals()` (once; a feed's decimals never change) and
`latestRoundData()`, then `quote_from_round` turns the round into a quote or a failure.

It reports faithfully and judges only what makes a round unusable as a number: no RPC answer, a
non-positive answer, a round that never completed (`updatedAt == 0`), an answer carried over from
an earlier round (`answeredInRound < roundId`). Whether a quote is too old or too far from the
other sources is the oracle core's verdict, from `published_at_us` (= `updatedAt` in µs).
Chainlink's docs ask consumers for exactly these checks (docs/oracle-sources.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.contract import Contract

from services.oracle.ports import SourceFailure, SourceQuote, to_e9

SOURCE = "chainlink"
_MAX_DETAIL = 300
"""Longest exception text kept in a failure reason (HTTP errors can quote whole responses)."""

_ROUND_OUTPUTS = [
    {"internalType": "uint80", "name": "roundId", "type": "uint80"},
    {"internalType": "int256", "name": "answer", "type": "int256"},
    {"internalType": "uint256", "name": "startedAt", "type": "uint256"},
    {"internalType": "uint256", "name": "updatedAt", "type": "uint256"},
    {"internalType": "uint80", "name": "answeredInRound", "type": "uint80"},
]

AGGREGATOR_V3_ABI: list[dict[str, Any]] = [
    {
        "inputs": [],
        "name": "decimals",
        "outputs": [{"internalType": "uint8", "name": "", "type": "uint8"}],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [],
        "name": "latestRoundData",
        "outputs": _ROUND_OUTPUTS,
        "stateMutability": "view",
        "type": "function",
    },
]
"""The two AggregatorV3Interface functions read here. Kept in the code, not loaded from
contracts/out, so the oracle needs no compiler in production; an integration test holds it equal
to the compiled interface."""


@dataclass(frozen=True, slots=True)
class RoundData:
    """What `latestRoundData()` returns, field for field (times in seconds since the epoch)."""

    round_id: int
    answer: int
    started_at: int
    updated_at: int
    answered_in_round: int


def quote_from_round(
    index_symbol: str, feed: str, decimals: int, round_: RoundData
) -> SourceQuote | SourceFailure:
    """The quote a round stands for, or why it stands for none. Pure.

    The answer is `answer × 10^-decimals`, converted to 1e-9 units exactly (truncated toward zero
    below 1e-9, as `to_e9` documents); a Chainlink feed gives no confidence interval.
    """

    def failure(reason: str) -> SourceFailure:
        return SourceFailure(source=SOURCE, feed=feed, index_symbol=index_symbol, reason=reason)

    if round_.updated_at == 0:
        return failure(f"incomplete_round: round {round_.round_id} has updatedAt = 0")
    if round_.answered_in_round < round_.round_id:
        return failure(
            f"carried_over_answer: answeredInRound {round_.answered_in_round} < roundId {round_.round_id}"
        )
    if round_.answer <= 0:
        return failure(f"non_positive_answer: {round_.answer} in round {round_.round_id}")
    return SourceQuote(
        source=SOURCE,
        feed=feed,
        index_symbol=index_symbol,
        price_e9=to_e9(round_.answer, -decimals),
        confidence_e9=None,
        published_at_us=round_.updated_at * 1_000_000,
    )


class ChainlinkSource:
    """AggregatorV3 feeds read over one Web3 connection; implements `PriceSource`.

    `feeds` maps index symbols to feed addresses; a malformed address raises here, at
    configuration, while `fetch` never raises.
    """

    name = SOURCE

    def __init__(self, w3: Web3, feeds: Mapping[str, str]) -> None:
        self._feeds: dict[str, Contract] = {
            symbol: w3.eth.contract(address=Web3.to_checksum_address(address), abi=AGGREGATOR_V3_ABI)
            for symbol, address in feeds.items()
        }
        self._decimals: dict[str, int] = {}

    @property
    def feeds(self) -> dict[str, str]:
        """index symbol → checksummed feed address."""
        return {symbol: contract.address for symbol, contract in self._feeds.items()}

    def fetch(self) -> list[SourceQuote | SourceFailure]:
        """One quote or failure per configured index, in configuration order."""
        return [self._fetch_one(symbol, contract) for symbol, contract in self._feeds.items()]

    def _fetch_one(self, symbol: str, contract: Contract) -> SourceQuote | SourceFailure:
        feed = contract.address
        try:
            decimals = self._decimals.get(symbol)
            if decimals is None:
                decimals = self._decimals[symbol] = int(contract.functions.decimals().call())
            round_ = RoundData(*(int(value) for value in contract.functions.latestRoundData().call()))
        # Anything the call can raise — HTTP errors, timeouts, a revert, an undecodable answer
        # from an address without code — means "no price from this feed this round"; the
        # PriceSource contract is that fetch reports failures as values and never raises.
        except Exception as exc:  # noqa: BLE001
            detail = f"{type(exc).__name__}: {exc}"[:_MAX_DETAIL]
            return SourceFailure(source=SOURCE, feed=feed, index_symbol=symbol, reason=f"rpc_error: {detail}")
        return quote_from_round(symbol, feed, decimals, round_)
