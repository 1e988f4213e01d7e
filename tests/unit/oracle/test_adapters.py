"""Source adapters without a network: the simulated path, Hermes answers through httpx's mock
transport, the wiring of settings, the price rows."""

from __future__ import annotations

import itertools
import json

import httpx
import pytest

from services.common.records import IndexPrice, IndexTwap, OracleQuote, QuoteStatus
from services.common.settings import Settings
from services.oracle.adapters.pyth import PythSource
from services.oracle.adapters.simulated import SimulatedFeed, SimulatedSource, simulated_price
from services.oracle.ports import SourceFailure, SourceQuote
from services.oracle.wiring import ConfigurationError, decimal_e9, pairs, policy_from, sources_from
from services.projector.prices import TTL_S, price_row, ttl_for
from tests.unit.oracle.kit import T0, S

BTC_ID = "e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43"


def test_the_simulated_price_is_a_pure_function_of_seed_index_and_second() -> None:
    start = 65_000 * 10**9
    path = [simulated_price(1, "BTC-USD", start, T0 // S + i) for i in range(600)]
    assert path == [simulated_price(1, "BTC-USD", start, T0 // S + i) for i in range(600)]
    assert path != [simulated_price(2, "BTC-USD", start, T0 // S + i) for i in range(600)]
    assert all(start * 91 // 100 < p < start * 109 // 100 for p in path)
    assert max(abs(a - b) for a, b in itertools.pairwise(path)) < start * 10 // 10_000  # < 10 bp/s


def test_a_simulated_feed_can_lag_and_disagree_on_purpose() -> None:
    # State: the same path three ways at T0 + 0.5 s: plain, 5 % biased, 10 minutes late.
    clock = lambda: T0 + S // 2  # noqa: E731
    start = 100 * 10**9
    feeds = [SimulatedFeed("BTC-USD", start), SimulatedFeed("BTC-USD", start, feed="hi", bias_bps=500),
             SimulatedFeed("BTC-USD", start, feed="late", lag_s=600)]  # fmt: skip
    plain, biased, late = SimulatedSource(feeds, seed=3, clock=clock).fetch()
    assert (
        isinstance(plain, SourceQuote) and isinstance(biased, SourceQuote) and isinstance(late, SourceQuote)
    )
    assert (plain.feed, plain.published_at_us) == ("sim-BTC-USD", T0)
    assert biased.price_e9 == plain.price_e9 * 10_500 // 10_000
    assert late.published_at_us == T0 - 600 * S


def hermes(handler: httpx.MockTransport) -> PythSource:
    feeds = {f"0x{BTC_ID}": "BTC-USD", "0x" + "ab" * 32: "ETH-USD"}
    return PythSource("http://hermes.test/", feeds, client=httpx.Client(transport=handler))


def test_pyth_reads_hermes_parsed_prices_exactly() -> None:
    # State: Hermes knows the BTC id only (the documented answer shape, expo −8).
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        entry = {"id": BTC_ID, "price": {"price": "6512345678901", "conf": "1234567", "expo": -8,
                 "publish_time": 1_700_000_000}, "ema_price": {}}  # fmt: skip
        return httpx.Response(200, json={"binary": {"encoding": "hex", "data": []}, "parsed": [entry]})

    btc, eth = hermes(httpx.MockTransport(answer)).fetch()
    # Expectation: one request with every id; the quote converted exactly; the missing id a failure.
    assert seen[0].url.path == "/v2/updates/price/latest"
    assert seen[0].url.params.get_list("ids[]") == [f"0x{BTC_ID}", "0x" + "ab" * 32]
    assert btc == SourceQuote(
        "pyth", f"0x{BTC_ID}", "BTC-USD", 65_123_456_789_010, 12_345_670, 1_700_000_000 * S
    )
    assert eth == SourceFailure("pyth", "0x" + "ab" * 32, "ETH-USD", "no price for this id in the answer")


@pytest.mark.parametrize(
    ("response", "reason_part"),
    [
        (httpx.Response(503, text="busy"), "503"),
        (httpx.Response(200, text="not json"), "JSONDecodeError"),
        (httpx.Response(200, json={"nothing": []}), "'parsed'"),
    ],
)
def test_pyth_turns_every_error_into_failures(response: httpx.Response, reason_part: str) -> None:
    items = hermes(httpx.MockTransport(lambda request: response)).fetch()
    assert all(isinstance(i, SourceFailure) and reason_part in i.reason for i in items)
    assert len(items) == 2


def test_pyth_survives_a_transport_error_and_a_malformed_entry() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert all(isinstance(i, SourceFailure) for i in hermes(httpx.MockTransport(refuse)).fetch())
    bad = {"parsed": [{"id": BTC_ID, "price": {"price": 1.5, "conf": "1", "expo": -8, "publish_time": 1}}]}
    btc, _ = hermes(httpx.MockTransport(lambda r: httpx.Response(200, content=json.dumps(bad)))).fetch()
    assert isinstance(btc, SourceFailure)
    assert "'price' is not an integer" in btc.reason


def test_settings_make_the_sources_and_the_policy() -> None:
    settings = Settings(
        oracle_simulated="BTC-USD=65000.5, ETH-USD=3500", oracle_pyth_url="http://h",
        oracle_pyth_ids=f"BTC-USD=0x{BTC_ID}", oracle_twap_windows_s="60,900", oracle_min_sources=2,
    )  # fmt: skip
    simulated, pyth = sources_from(settings, lambda: T0)
    assert isinstance(simulated, SimulatedSource) and isinstance(pyth, PythSource)
    assert [(f.index_symbol, f.start_e9) for f in simulated.feeds] == [
        ("BTC-USD", 65_000_500_000_000), ("ETH-USD", 3_500_000_000_000),
    ]  # fmt: skip
    assert pyth.feeds == {BTC_ID: "BTC-USD"}
    policy = policy_from(settings)
    assert (policy.twap_windows_s, policy.min_sources) == ((60, 900), 2)


@pytest.mark.parametrize(
    "settings",
    [
        Settings(oracle_simulated=""),
        Settings(oracle_simulated="BTC-USD"),
        Settings(oracle_simulated="BTC-USD=abc"),
        Settings(oracle_simulated="BTC-USD=0.0000000001"),
        Settings(oracle_pyth_ids="BTC-USD=0x1"),
    ],
)
def test_settings_that_cannot_work_are_refused(settings: Settings) -> None:
    with pytest.raises(ConfigurationError):
        sources_from(settings, lambda: T0)


def test_pairs_and_decimals() -> None:
    assert pairs(" A=1 ,, B = x ", "X") == [("A", "1"), ("B", "x")]
    assert decimal_e9("0.000000001", "X") == 1
    with pytest.raises(ConfigurationError):
        policy_from(Settings(oracle_twap_windows_s="0"))


def test_a_price_row_lives_seven_days_from_its_round() -> None:
    assert ttl_for(T0, T0) == TTL_S
    assert ttl_for(T0, T0 + 3_600 * S + 1) == TTL_S - 3_600
    assert ttl_for(T0 + 10 * S, T0) == TTL_S  # a round stamped ahead of the projector's clock
    assert ttl_for(T0, T0 + TTL_S * S) == 0  # expired: not written
    record = IndexPrice(
        index_symbol="BTC-USD", ts_event=T0 + 1_234, price_e9=7,
        quotes=[OracleQuote(source="s", feed="f", price_e9=7, published_at=T0, status=QuoteStatus.ACCEPTED),
                OracleQuote(source="p", feed="g", price_e9=0, published_at=0, status=QuoteStatus.UNAVAILABLE,
                            reason="down")],
        twaps=[IndexTwap(window_s=60, price_e9=7, samples=1),
               IndexTwap(window_s=600, price_e9=None, samples=0)],
    )  # fmt: skip
    row = price_row(record)
    assert (row.ts_event, row.twaps, row.accepted, row.sources) == (T0 + 1_000, {60: 7}, 1, 2)
    assert json.loads(row.quotes)[1] == {
        "source": "p", "feed": "g", "price_e9": 0, "confidence_e9": None, "published_at": 0,
        "status": "UNAVAILABLE", "reason": "down",
    }  # fmt: skip
