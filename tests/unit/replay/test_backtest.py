"""The backtest harness on a synthetic recorded session: real matcher, real risk, deterministic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.common.money import BasisPoints, Lots, MicroUsdc, Ticks, fee_charged, notional
from services.common.records import OrderFilled, Side, TradeLogEntry
from services.matcher.core.engine import MatchingEngine, log_entry
from services.replay.backtest import Backtest, BaseStrategy, Context, Depth, Fill, Mark
from services.replay.flows import realistic_flow
from services.replay.market_data import entries_as_commands
from services.replay.report import write_report
from tests.kit import ALICE, BOB, CAROL, Commands, order_id

MID = 650_000
QPTL = 100  # BTC-PERP: micro-USDC per tick-lot
DEPOSIT = 10_000_000_000  # 10,000 USDC


def recorded_log() -> list[TradeLogEntry]:
    """Listing; Alice offers 5 at MID+10, Bob bids 3 at MID-10; a mark at MID; Carol then buys 5
    from Alice; a mark at MID+20."""
    b = Commands("BTC-PERP")
    engine = MatchingEngine()
    commands = [
        b.create(),
        b.limit(ALICE, Side.SELL, 5, MID + 10),  # order 2
        b.limit(BOB, Side.BUY, 3, MID - 10),  # order 3
        b.set_mark(MID),
        b.limit(CAROL, Side.BUY, 5, MID + 10, time_in_force="IOC"),  # order 5: IOC, takes what is left
        b.set_mark(MID + 20),
    ]
    return [log_entry(c, engine.apply(c), f"matcher.commands:0:{i}") for i, c in enumerate(commands)]


class BuyTwoOnce(BaseStrategy):
    """Takes 2 lots at the best ask the first time both sides are quoted; records its callbacks."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.order: str | None = None

    def on_book(self, ctx: Context, depth: Depth) -> None:
        self.seen.append(("book", (depth.best_bid, depth.best_ask)))
        if self.order is None and depth.best_bid is not None and depth.best_ask is not None:
            self.order = ctx.place_limit("BTC-PERP", "BUY", 2, depth.best_ask, time_in_force="IOC")

    def on_fill(self, ctx: Context, fill: Fill) -> None:
        self.seen.append(("fill", (fill.price, fill.size, ctx.position("BTC-PERP").size)))

    def on_mark(self, ctx: Context, mark: Mark) -> None:
        self.seen.append(("mark", mark.mark_price))


def test_the_strategy_trades_through_risk_and_the_matcher_and_moves_the_recorded_market() -> None:
    # State: a recorded session and a strategy that buys 2 lots as soon as both sides are quoted.
    strategy = BuyTwoOnce()
    backtest = Backtest(strategy, deposit_micro=DEPOSIT)

    # Action: replay it.
    outcome = backtest.run(entries_as_commands(recorded_log()))

    # Expectation: one taker fill of 2 lots at MID+10, fee 0.5 % of the notional (rounded up),
    # booked by risk: a long position of 2, its collateral locked, the fee paid from free.
    (fill,) = outcome.fills
    value = notional(Ticks(MID + 10), Lots(2), MicroUsdc(QPTL))
    fee = fee_charged(value, BasisPoints(50))
    assert (fill.side, fill.price, fill.size, fill.fee, fill.liquidity.value) == (
        Side.BUY,
        MID + 10,
        2,
        fee,
        "TAKER",
    )
    assert strategy.seen[:4] == [
        ("book", (None, MID + 10)),
        ("book", (MID - 10, MID + 10)),
        ("fill", (MID + 10, 2, 2)),
        ("mark", MID),
    ]
    ledger = backtest.risk.ledger
    assert ledger.positions[(backtest.trader, "BTC-PERP")].size == 2
    assert ledger.accounts[backtest.trader].locked == value
    assert ledger.accounts[backtest.trader].free == DEPOSIT - value - fee

    # Expectation: the market impact — Carol's recorded IOC for 5 now finds only Alice's 3 left.
    carol = [e for e in _events(backtest) if isinstance(e, OrderFilled) and e.trader == CAROL]
    assert [f.last_qty for f in carol] == [3]

    # Expectation: valued at the last mark (MID+20), equity = deposit − fee + 2 lots × 10 ticks.
    last = outcome.samples[-1]
    assert last.unrealized_pnl == 2 * 10 * QPTL
    assert last.equity == DEPOSIT - fee + 2 * 10 * QPTL
    assert last.positions == {"BTC-PERP": 2} and last.exposure == {"BTC-PERP": (MID + 20) * 2 * QPTL}


def _events(backtest: Backtest) -> list[Any]:
    """Every event a replay of the same session gives (the harness keeps no log; rebuild it)."""
    strategy = BuyTwoOnce()
    again = Backtest(strategy, deposit_micro=DEPOSIT)
    found: list[Any] = []
    original = again.risk.apply_entry

    def spy(entry: TradeLogEntry, owns: Any = None) -> Any:
        found.extend(entry.events)
        return original(entry, owns)

    again.risk.apply_entry = spy  # type: ignore[method-assign]
    again.run(entries_as_commands(recorded_log()))
    assert again.matcher.state_hash() == backtest.matcher.state_hash()
    return found


def test_without_a_strategy_the_recorded_log_replays_to_the_same_events() -> None:
    # State: a realistic recorded flow (places, cancels, takers, market orders).
    engine = MatchingEngine()
    flow = realistic_flow(3000, seed=5)
    recorded = [log_entry(c, engine.apply(c), f"matcher.commands:0:{i}") for i, c in enumerate(flow)]

    # Action: re-enter it from its trade log alone, with a strategy that does nothing.
    backtest = Backtest(BaseStrategy(), deposit_micro=0)
    replayed = MatchingEngine()
    events = []
    for _, command in entries_as_commands(recorded):
        events.extend(replayed.apply(command).events)
    backtest.run(entries_as_commands(recorded))

    # Expectation: the same events (refused commands aside, which did nothing) and the same books.
    def effective(entries_events: list[Any]) -> list[Any]:
        return [e for e in entries_events if type(e).__name__ not in ("OrderRejected", "CommandRejected")]

    assert effective(events) == effective([e for entry in recorded for e in entry.events])
    assert backtest.matcher.state_hash() == replayed.state_hash()
    assert {s: m.book.state_hash() for s, m in replayed.markets.items()} == {
        s: m.book.state_hash() for s, m in engine.markets.items()
    }


def test_two_runs_write_identical_reports(tmp_path: Path) -> None:
    # State: the same data and strategy, twice.
    summaries, fills = [], []
    for run in ("a", "b"):
        outcome = Backtest(BuyTwoOnce(), deposit_micro=DEPOSIT, latency_us=500).run(
            entries_as_commands(recorded_log())
        )
        folder = tmp_path / run
        write_report(outcome, folder)
        summaries.append(json.loads((folder / "summary.json").read_text()))
        fills.append((folder / "fills.csv").read_text())

    # Expectation: the same numbers, fills and state hashes; every file written.
    assert summaries[0] == summaries[1] and fills[0] == fills[1]
    assert summaries[0]["fills"] == 1 and summaries[0]["risk_state_hash"]
    assert {p.name for p in (tmp_path / "a").iterdir()} == {
        "fills.csv",
        "equity.csv",
        "summary.json",
        "plot.png",
    }


def test_a_refused_order_comes_back_through_on_reject() -> None:
    # State: a strategy with 1 USDC that tries to buy 2 lots (~130 USDC of collateral).
    rejections: list[int] = []

    class Broke(BuyTwoOnce):
        def on_reject(self, ctx: Context, rejection: Any) -> None:
            rejections.append(rejection.reason_code)

    outcome = Backtest(Broke(), deposit_micro=1_000_000).run(entries_as_commands(recorded_log()))

    # Expectation: risk refused it for collateral (2001); nothing filled.
    assert rejections == [2001] and not outcome.fills and len(outcome.rejections) == 1


def test_order_ids_are_deterministic() -> None:
    assert order_id(1)  # the kit's ids differ from the strategy's uuid5 ids
    first = Backtest(BuyTwoOnce(), deposit_micro=DEPOSIT)
    second = Backtest(BuyTwoOnce(), deposit_micro=DEPOSIT)
    assert (
        first.run(entries_as_commands(recorded_log())).fills
        == second.run(entries_as_commands(recorded_log())).fills
    )
