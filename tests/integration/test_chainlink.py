"""The Chainlink source against real contracts on the real anvil: the mock feed, the adapter, the
mock-feed command, and the compiled toolchain they share.

Each test signs with its own freshly funded account (anvil_setBalance), so tests running side by
side, or other people's sessions on the same anvil, never race for a nonce.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError

from services.chain import artifacts, client, deployments, mocks
from services.common.bus import Bus
from services.common.records import QuoteStatus
from services.common.settings import Settings
from services.oracle.adapters.chainlink import AGGREGATOR_V3_ABI, ChainlinkSource
from services.oracle.adapters.clock import system_clock
from services.oracle.core import median
from services.oracle.ports import SourceFailure, SourceQuote
from services.oracle.service import OracleService
from services.oracle.wiring import policy_from, sources_from
from tests.integration.chain import funded_key

ONE_ETH = 10**18


@pytest.fixture
def w3(settings: Settings) -> Web3:
    return client.connect(settings.eth_rpc_url)


@pytest.fixture
def operator_key(w3: Web3) -> str:
    """A new account with 100 ETH, set directly in anvil's state (no transaction, no nonce)."""
    return funded_key(w3)


def deploy_feed(w3: Web3, key: str, *, decimals: int = 8, answer: int = 6_500_000_000_000) -> Contract:
    artifact = artifacts.load(mocks.MOCK_CONTRACT)
    address = client.deploy(w3, artifact, decimals, "BTC / USD", answer, key=key)
    return client.bind(w3, artifact, address)


def last_block_time(w3: Web3) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


def only(results: list[SourceQuote | SourceFailure]) -> SourceQuote | SourceFailure:
    assert len(results) == 1
    return results[0]


class CountingProvider(HTTPProvider):
    """An HTTP provider that remembers the RPC methods it sent."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.methods: list[str] = []

    def make_request(self, method: Any, params: Any) -> Any:
        self.methods.append(str(method))
        return super().make_request(method, params)


# -- the adapter --------------------------------------------------------------------------------


def test_the_latest_round_is_read_as_a_quote_in_1e9_units(w3: Web3, operator_key: str) -> None:
    # State: a BTC/USD feed (8 decimals) whose round 1 answered 65000.12345678.
    feed = deploy_feed(w3, operator_key, answer=6_500_012_345_678)
    published = last_block_time(w3)
    # Action: fetch through the adapter.
    quote = only(ChainlinkSource(w3, {"BTC-USD": feed.address}).fetch())
    # Expectation: exact 1e-9 units, published at the round's updatedAt (the deploy block's time).
    assert quote == SourceQuote(
        source="chainlink",
        feed=feed.address,
        index_symbol="BTC-USD",
        price_e9=65_000_123_456_780,
        confidence_e9=None,
        published_at_us=published * 1_000_000,
    )


@pytest.mark.parametrize(
    ("decimals", "answer", "price_e9"),
    [
        (18, 3_500_123_456_789_999_999_999, 3_500_123_456_789),  # truncated below 1e-9
        (6, 3_500_123_456, 3_500_123_456_000),
        (0, 42, 42_000_000_000),
    ],
)
def test_decimals_are_read_from_the_feed_and_converted_exactly(
    w3: Web3, operator_key: str, decimals: int, answer: int, price_e9: int
) -> None:
    # State: a feed with `decimals` decimals.
    feed = deploy_feed(w3, operator_key, decimals=decimals, answer=answer)
    # Action: fetch.
    quote = only(ChainlinkSource(w3, {"ETH-USD": feed.address}).fetch())
    # Expectation: the integer the feed's decimals imply, in 1e-9 units.
    assert isinstance(quote, SourceQuote)
    assert quote.price_e9 == price_e9


def test_a_new_round_is_seen_and_decimals_are_asked_only_once(
    w3: Web3, operator_key: str, settings: Settings
) -> None:
    # State: a feed, read once by a source whose provider counts calls.
    feed = deploy_feed(w3, operator_key)
    provider = CountingProvider(settings.eth_rpc_url)
    source = ChainlinkSource(Web3(provider), {"BTC-USD": feed.address})
    source.fetch()
    first = provider.methods.count("eth_call")
    # Action: the feed publishes round 2; fetch again.
    client.transact(w3, feed.functions.updateAnswer(6_600_000_000_000), key=operator_key)
    quote = only(source.fetch())
    # Expectation: the new answer; decimals() + latestRoundData() the first time, then only the round.
    assert isinstance(quote, SourceQuote)
    assert quote.price_e9 == 66_000_000_000_000
    assert (first, provider.methods.count("eth_call") - first) == (2, 1)


def test_an_answer_carried_over_from_an_earlier_round_is_a_failure(w3: Web3, operator_key: str) -> None:
    # State: round 5 holds an answer computed in round 4 (answeredInRound < roundId).
    feed = deploy_feed(w3, operator_key)
    now = last_block_time(w3)
    client.transact(w3, feed.functions.setRound(5, 6_500_000_000_000, now, now, 4), key=operator_key)
    # Action: fetch.
    failure = only(ChainlinkSource(w3, {"BTC-USD": feed.address}).fetch())
    # Expectation: refused, saying which rounds.
    assert isinstance(failure, SourceFailure)
    assert failure.reason == "carried_over_answer: answeredInRound 4 < roundId 5"


@pytest.mark.parametrize("answer", [0, -1])
def test_a_zero_or_negative_answer_is_a_failure(w3: Web3, operator_key: str, answer: int) -> None:
    # State: the feed's latest round answered `answer`.
    feed = deploy_feed(w3, operator_key)
    client.transact(w3, feed.functions.updateAnswer(answer), key=operator_key)
    # Action: fetch.
    failure = only(ChainlinkSource(w3, {"BTC-USD": feed.address}).fetch())
    # Expectation: refused.
    assert isinstance(failure, SourceFailure)
    assert failure.reason == f"non_positive_answer: {answer} in round 2"


def test_a_round_that_never_completed_is_a_failure(w3: Web3, operator_key: str) -> None:
    # State: round 2 written with updatedAt = 0.
    feed = deploy_feed(w3, operator_key)
    client.transact(w3, feed.functions.updateRoundData(2, 6_500_000_000_000, 0, 0), key=operator_key)
    # Action: fetch. Expectation: refused.
    failure = only(ChainlinkSource(w3, {"BTC-USD": feed.address}).fetch())
    assert isinstance(failure, SourceFailure)
    assert failure.reason.startswith("incomplete_round:")


def test_an_old_round_is_reported_with_its_own_time(w3: Web3, operator_key: str) -> None:
    # State: the latest round was published an hour ago (by the chain's clock).
    feed = deploy_feed(w3, operator_key)
    an_hour_ago = last_block_time(w3) - 3_600
    client.transact(
        w3, feed.functions.updateRoundData(2, 6_400_000_000_000, an_hour_ago, an_hour_ago), key=operator_key
    )
    # Action: fetch.
    quote = only(ChainlinkSource(w3, {"BTC-USD": feed.address}).fetch())
    # Expectation: a quote — judging its age is the oracle core's job — with the old time.
    assert isinstance(quote, SourceQuote)
    assert quote.published_at_us == an_hour_ago * 1_000_000


def test_an_unreachable_rpc_fails_every_feed_without_raising(w3: Web3, operator_key: str) -> None:
    # State: two feeds, and an RPC URL on a port nobody listens on.
    btc, eth = deploy_feed(w3, operator_key), deploy_feed(w3, operator_key)
    dead = client.connect(f"http://127.0.0.1:{closed_port()}", timeout_s=2, retries=False)
    # Action: fetch.
    results = ChainlinkSource(dead, {"BTC-USD": btc.address, "ETH-USD": eth.address}).fetch()
    # Expectation: one failure per feed, in configuration order, naming the RPC error.
    assert [(r.index_symbol, type(r)) for r in results] == [
        ("BTC-USD", SourceFailure),
        ("ETH-USD", SourceFailure),
    ]
    assert all(isinstance(r, SourceFailure) and r.reason.startswith("rpc_error:") for r in results)


def test_an_address_without_a_feed_fails_alone(w3: Web3, operator_key: str) -> None:
    # State: a real feed, and an "ETH-USD feed" that is an account without code.
    btc = deploy_feed(w3, operator_key)
    no_code = Account.create().address
    # Action: fetch both.
    btc_result, eth_result = ChainlinkSource(w3, {"BTC-USD": btc.address, "ETH-USD": no_code}).fetch()
    # Expectation: BTC still quoted; ETH a failure, not an exception.
    assert isinstance(btc_result, SourceQuote)
    assert isinstance(eth_result, SourceFailure)
    assert eth_result.reason.startswith("rpc_error:")


def test_the_adapters_abi_is_the_compiled_interfaces() -> None:
    # Expectation: the ABI kept in the adapter matches contracts/src/interfaces/AggregatorV3Interface.sol.
    compiled = {entry["name"]: entry for entry in artifacts.load("AggregatorV3Interface").abi}
    for entry in AGGREGATOR_V3_ABI:
        assert compiled[entry["name"]] == entry


# -- the mock feed itself -----------------------------------------------------------------------


def test_the_mock_answers_the_read_calls_and_refuses_unknown_rounds(w3: Web3, operator_key: str) -> None:
    # State: a fresh mock.
    feed = deploy_feed(w3, operator_key, answer=6_500_000_000_000)
    # Expectation: Chainlink's read calls answer; round 1 exists, round 2 does not yet.
    assert feed.functions.decimals().call() == 8
    assert feed.functions.description().call() == "BTC / USD"
    assert feed.functions.version().call() == 4
    assert feed.functions.getRoundData(1).call()[:2] == [1, 6_500_000_000_000]
    with pytest.raises(ContractCustomError):
        feed.functions.getRoundData(2).call()


def test_only_the_owner_moves_a_mock(w3: Web3, operator_key: str) -> None:
    # State: a mock deployed by the operator; another funded account.
    feed = deploy_feed(w3, operator_key)
    stranger = Account.create()
    w3.provider.make_request("anvil_setBalance", [stranger.address, hex(ONE_ETH)])  # type: ignore[arg-type]
    # Action: the stranger publishes an answer. Expectation: reverted (OwnableUnauthorizedAccount).
    with pytest.raises(ContractCustomError):
        client.transact(w3, feed.functions.updateAnswer(1), key="0x" + bytes(stranger.key).hex())


# -- the mock-feed command ----------------------------------------------------------------------


def test_deploy_ensure_and_set_price_through_the_command(
    w3: Web3, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operator_key: str
) -> None:
    # State: an empty run dir; the command signs with this test's own account.
    monkeypatch.setenv("CHAIN_FEED_OPERATOR_KEY", operator_key)
    path = deployments.deployment_path(tmp_path)
    base = ["--rpc-url", settings.eth_rpc_url, "--deployment", str(path)]
    # Action: deploy two feeds.
    assert mocks.main([*base, "deploy", "--feeds", "BTC-USD=65000,ETH-USD=3500.5"]) == 0
    # Expectation: both recorded for chain 31337, and readable through the adapter.
    recorded = deployments.read(path)
    assert recorded is not None and recorded.chain_id == 31337
    assert sorted(recorded.chainlink_feeds) == ["BTC-USD", "ETH-USD"]
    prices = {
        q.index_symbol: q.price_e9
        for q in ChainlinkSource(w3, recorded.chainlink_feeds).fetch()
        if isinstance(q, SourceQuote)
    }
    assert prices == {"BTC-USD": 65_000_000_000_000, "ETH-USD": 3_500_500_000_000}

    # Action: ensure, after ETH-USD's address lost its code (as after a chain reset).
    gone = Account.create().address
    deployments.write(path, deployments.Deployment(31337, {**recorded.chainlink_feeds, "ETH-USD": gone}))
    assert mocks.main([*base, "ensure", "--feeds", "BTC-USD=1,ETH-USD=3400"]) == 0
    # Expectation: BTC-USD kept as it was; ETH-USD deployed anew at the given price.
    again = deployments.read(path)
    assert again is not None
    assert again.chainlink_feeds["BTC-USD"] == recorded.chainlink_feeds["BTC-USD"]
    assert again.chainlink_feeds["ETH-USD"] not in (gone, recorded.chainlink_feeds["ETH-USD"])

    # Action: move BTC-USD to 66000.5, published two minutes ago.
    assert mocks.main([*base, "set-price", "BTC-USD", "66000.5", "--age", "120"]) == 0
    # Expectation: the adapter sees the new answer at the back-dated time.
    quote = ChainlinkSource(w3, {"BTC-USD": again.chainlink_feeds["BTC-USD"]}).fetch()[0]
    assert isinstance(quote, SourceQuote)
    assert quote.price_e9 == 66_000_500_000_000
    # (`--age` counts back from the chain's latest block before the update was mined.)
    age_s = last_block_time(w3) - quote.published_at_us // 1_000_000
    assert 120 <= age_s <= 125
    assert json.loads(path.read_text())["chain_id"] == 31337


def test_set_price_for_an_unknown_feed_is_an_error(settings: Settings, tmp_path: Path) -> None:
    # State: no deployment file. Action: set a price. Expectation: exit 1, nothing raised.
    path = deployments.deployment_path(tmp_path)
    argv = ["--rpc-url", settings.eth_rpc_url, "--deployment", str(path), "set-price", "BTC-USD", "1"]
    assert mocks.main(argv) == 1


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the oracle service on it ---------------------------------------------------------------------


def test_the_oracle_service_prices_an_index_from_a_chainlink_feed_and_the_simulated_feed(
    settings: Settings, bus: Bus, w3: Web3, operator_key: str
) -> None:
    # State: a BTC/USD aggregator on the local chain answering 65,000.00000000 (8 decimals) in a
    # fresh block, and the simulated feed for the same index, both configured the way an operator
    # does (ORACLE_CHAINLINK_FEEDS, ORACLE_SIMULATED).
    feed = deploy_feed(w3, operator_key, answer=6_500_000_000_000)
    configured = settings.model_copy(
        update={
            "oracle_simulated": "BTC-USD=65000",
            "oracle_chainlink_feeds": f"BTC-USD={feed.address}",
            "oracle_max_deviation_bps": 1_000,
        }
    )
    oracle = OracleService(Bus(configured), sources_from(configured, system_clock), policy_from(configured))
    try:
        # Action: one round.
        (price,) = oracle.run_once()
    finally:
        oracle.close()
    # Expectation: the Chainlink quote went through web3 and the verdicts like any other: accepted at
    # exactly 65,000 × 1e9, and the index is the median of the two sources.
    by_source = {q.source: q for q in price.quotes}
    assert set(by_source) == {"chainlink", "simulated"}
    chainlink = by_source["chainlink"]
    assert (chainlink.status, chainlink.price_e9, chainlink.feed) == (
        QuoteStatus.ACCEPTED,
        65_000 * 10**9,
        feed.address,
    )
    assert by_source["simulated"].status is QuoteStatus.ACCEPTED
    assert price.price_e9 == median([q.price_e9 for q in price.quotes])
