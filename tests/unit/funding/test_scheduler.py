"""The funding/expiry state machine in a closed loop with the real matching engine."""

from __future__ import annotations

from services.common.records import (
    ApplyFunding,
    CommandRejected,
    FundingApplied,
    MarketSettled,
    MarketStatus,
    MarkPriceSet,
    OptionType,
    SetMarketStatus,
    SetMarkPrice,
    SettleMarket,
    Side,
    TradeLogEntry,
)
from services.funding.core.scheduler import IndexObserved, Scheduler, SchedulerConfig, command_id
from tests.kit import ALICE, BOB
from tests.unit.funding.loop import BTC_PERP, T0, USD_65000_E9, Loop, S, btc_future, btc_option


def funding_events(loop: Loop) -> list[FundingApplied]:
    return [event for _, event in loop.entries(FundingApplied)]  # type: ignore[misc]


def test_each_oracle_round_gives_one_mark_and_each_interval_one_funding() -> None:
    # State: BTC-PERP listed at T0 with an empty book; index 65,000 USD every second.
    loop = Loop()
    loop.list_market(BTC_PERP)
    # Action: 10 seconds of rounds and ticks (2 s intervals).
    loop.run(T0, T0 + 10 * S)
    # Expectation: a mark per round, at the index (no book: basis 0) ...
    marks = [c.body for c in loop.sent if isinstance(c.body, SetMarkPrice)]
    assert marks == [SetMarkPrice(mark_price=650_000, index_price=650_000)] * 10
    # ... and the intervals [T0, T0+2 s), … [T0+6 s, T0+8 s) funded once each, in order, at rate 0
    # (each at the first tick after the log holds a mark at or after its end; [T0+8 s, T0+10 s)
    # waits for the mark of T0+10 s).
    funded = funding_events(loop)
    assert [(f.interval_start - T0) // S for f in funded] == [0, 2, 4, 6]
    assert {(f.rate_e9, f.index_price, f.mark_twap, f.index_twap) for f in funded} == {
        (0, 650_000, 650_000, 650_000)
    }
    assert not loop.entries(CommandRejected)


def test_a_bid_above_the_index_raises_the_mark_and_longs_pay() -> None:
    # State: BTC-PERP with a two-sided book 20 ticks above the index (mid 650,020).
    loop = Loop(config=SchedulerConfig(interval_s=2, mark_rounds=2, cap_e9=10**9))
    loop.list_market(BTC_PERP)
    loop.order(BTC_PERP.market, ALICE, Side.BUY, 1, 650_010, at=T0)
    loop.order(BTC_PERP.market, BOB, Side.SELL, 1, 650_030, at=T0)
    # Action: 5 s of rounds and ticks.
    loop.run(T0, T0 + 5 * S)
    # Expectation: marks index + 20 (within 50 bps), positive funding: (20 / 650,000) × 1e9 truncated.
    marks = {c.body.mark_price for c in loop.sent if isinstance(c.body, SetMarkPrice)}
    assert marks == {650_020}
    assert {f.rate_e9 for f in funding_events(loop)} == {30_769}


def test_a_restarted_scheduler_never_resends_an_interval_the_log_shows_applied() -> None:
    # State: 9 s funded through the engine; then the scheduler restarts from the log alone.
    loop = Loop()
    loop.list_market(BTC_PERP)
    loop.run(T0, T0 + 9 * S)
    sent_before = len([c for c in loop.sent if isinstance(c.body, ApplyFunding)])
    loop.restart()
    # Action: ticks resume, first at the same instant as the last one, then later.
    loop.tick(T0 + 8 * S)
    loop.run(T0 + 9 * S, T0 + 11 * S)
    # Expectation: [T0, T0+6 s) were applied before the restart; only [T0+6 s, T0+8 s), which the
    # log does not show applied, goes out (then [T0+8 s, T0+10 s) waits for its closing mark).
    fundings = [c.body for c in loop.sent if isinstance(c.body, ApplyFunding)]
    assert [(f.interval_start - T0) // S for f in fundings[:sent_before]] == [0, 2, 4]
    assert [(f.interval_start - T0) // S for f in fundings[sent_before:]] == [6]
    starts = [f.interval_start for f in funding_events(loop)]
    assert starts == sorted(set(starts))
    assert not loop.entries(CommandRejected)


def test_an_unacknowledged_funding_is_resent_with_the_same_id_and_the_matcher_refuses_the_duplicate() -> None:
    # State: BTC-PERP funded for [T0, T0+2 s); the scheduler then loses the log's answer (a
    # restart from a log that ends before the FundingApplied: what a crash between send and read gives).
    loop = Loop(config=SchedulerConfig(interval_s=2, resend_after_s=1))
    loop.list_market(BTC_PERP)
    loop.run(T0, T0 + 4 * S)
    (first,) = [c for c in loop.sent if isinstance(c.body, ApplyFunding)]
    assert first.command_id == command_id("funding", BTC_PERP.market, T0)
    applied_at = next(i for i, item in enumerate(loop.log) if item is loop.entries(FundingApplied)[0][0])
    loop.log = loop.log[:applied_at]
    loop.restart()
    # Action: the next tick.
    resent = [c for c in loop.tick(T0 + 4 * S) if isinstance(c.body, ApplyFunding)]
    # Expectation: the same command (same id, same body) goes again and the matcher refuses it.
    assert [(c.command_id, c.body) for c in resent] == [(first.command_id, first.body)]
    (refusal,) = [event for _, event in loop.entries(CommandRejected)]
    assert refusal.reason == "FUNDING_ALREADY_APPLIED"  # type: ignore[attr-defined]


def test_an_interval_that_ends_while_the_market_is_paused_is_not_funded() -> None:
    # State: BTC-PERP paused at T0 + 1 s, resumed at T0 + 3 s.
    loop = Loop()
    loop.list_market(BTC_PERP)
    loop.run(T0, T0 + S)
    _status(loop, MarketStatus.PAUSED, T0 + S + 1)
    loop.run(T0 + S, T0 + 3 * S)
    _status(loop, MarketStatus.ACTIVE, T0 + 3 * S + 1)
    # Action: run on to T0 + 8 s.
    loop.run(T0 + 3 * S, T0 + 8 * S)
    # Expectation: [T0, T0+2 s) skipped (PAUSED at its end), the later intervals funded.
    assert [(f.interval_start - T0) // S for f in funding_events(loop)] == [2, 4]


def test_a_future_settles_at_the_index_twap_once_a_round_after_expiry_is_seen() -> None:
    # State: a future expiring at T0 + 1,805 s (settlement window 1,800 s); index 65,000 USD until
    # T0 + 905 s, then 65,100 USD.
    expiry = T0 + 1_805 * S
    loop = Loop(config=SchedulerConfig(interval_s=2, settlement_window_s=1_800, mark_max_age_s=5))
    definition = btc_future(expiry)
    loop.list_market(definition)
    loop.order(definition.market, ALICE, Side.BUY, 1, 640_000, at=T0)
    loop.index(T0)
    loop.index(T0 + 905 * S, 65_100 * 10**9)
    # Action: ticks at expiry (no round at or after expiry yet), then a round at expiry, then later.
    assert not [c for c in loop.tick(expiry) if isinstance(c.body, SettleMarket)]
    loop.index(expiry, 70_000 * 10**9)
    settles = [c for c in loop.tick(expiry + S) if isinstance(c.body, SettleMarket)]
    loop.tick(expiry + 100 * S)
    # Expectation: one SettleMarket at the TWAP (650,000 × 900 s + 651,000 × 900 s) / 1,800 s;
    # the market is SETTLED with its resting bid cancelled, and nothing more is sent for it.
    assert [c.body for c in settles] == [
        SettleMarket(settlement_price=650_500, method="TWAP of BTC-USD over 1800 s before expiry")
    ]
    assert [e.settlement_price for _, e in loop.entries(MarketSettled)] == [650_500]  # type: ignore[attr-defined]
    assert loop.engine.markets[definition.market].status is MarketStatus.SETTLED
    assert not loop.engine.markets[definition.market].book.orders
    assert loop.tick(expiry + 200 * S) == []


def test_option_marks_come_from_the_model_and_trades_give_implied_vols() -> None:
    # State: a 30-day ATM PUT on BTC-USD (strike 650,000 ticks), vol 60 %.
    expiry = T0 + 30 * 86_400 * S
    definition = btc_option(expiry, 650_000, OptionType.PUT)
    loop = Loop(config=SchedulerConfig(interval_s=2, option_vols={"BTC-USD": 0.6}))
    loop.list_market(definition)
    # Action: one round and tick (empty book: the model), then a trade at 44,900 ticks.
    loop.index(T0 + S)
    (mark,) = loop.tick(T0 + S)
    loop.order(definition.market, ALICE, Side.SELL, 1, 44_900, at=T0 + 2 * S)
    loop.order(definition.market, BOB, Side.BUY, 1, 44_900, at=T0 + 2 * S)
    # Expectation: a model mark near 0.4 × F × σ√T; the trade's implied vol is near 60 %.
    assert isinstance(mark.body, SetMarkPrice)
    assert 44_000 < mark.body.mark_price < 45_500
    (vol,) = loop.vols
    assert vol.implied_vol is not None
    assert abs(vol.implied_vol - 0.6) < 0.01
    assert (vol.market, vol.trade_id, vol.index_price, vol.strike) == (definition.market, 1, 650_000, 650_000)


def test_stale_rounds_replayed_after_downtime_give_no_mark() -> None:
    # State: a round at T0, read back an hour later (a restart after downtime).
    loop = Loop()
    loop.list_market(BTC_PERP)
    loop.index(T0)
    # Action / Expectation: no mark from a round older than mark_max_age_s.
    assert [c for c in loop.tick(T0 + 3_600 * S) if isinstance(c.body, SetMarkPrice)] == []
    assert not loop.entries(MarkPriceSet)
    _ = USD_65000_E9


def _status(loop: Loop, status: MarketStatus, at: int) -> None:
    from services.common.records import MatcherCommand

    loop.submit(
        MatcherCommand(
            command_id=f"status-{at}", market=BTC_PERP.market, trader=None, ts_init=at,
            body=SetMarketStatus(status=status, reason="test"),
        )
    )  # fmt: skip


def test_a_restart_that_reads_the_oracle_rounds_before_the_listing_still_settles() -> None:
    # State: a future expiring at T0 + 10 s (window 2 s) with a round every second; the scheduler
    # was down through expiry, and on restart it reads every oracle round before the trade log
    # (the service reads the two topics side by side, not in time order).
    expiry = T0 + 10 * S
    loop = Loop(config=SchedulerConfig(interval_s=3_600, settlement_window_s=2, mark_max_age_s=5))
    definition = btc_future(expiry)
    loop.list_market(definition)
    for at in range(T0, expiry + 3 * S, S):
        loop.index(at)
    rounds: list[IndexObserved | TradeLogEntry] = [i for i in loop.log if isinstance(i, IndexObserved)]
    entries = [i for i in loop.log if isinstance(i, TradeLogEntry)]
    loop.scheduler = Scheduler(loop.config)
    for item in rounds + entries:
        loop.scheduler.apply(item)
    # Action: the first tick after the restart.
    settles = [c for c in loop.tick(expiry + 3 * S) if isinstance(c.body, SettleMarket)]
    # Expectation: the rounds of the settlement window were kept: the future settles at 650,000.
    assert [c.body.settlement_price for c in settles] == [650_000]  # type: ignore[union-attr]
