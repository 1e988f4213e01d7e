"""Property tests: the matching engine, run on random command flows, agrees with a naive reference.

Hypothesis generates flows of commands on BTC-PERP (always listed first) and ETH-PERP (listed only
if the flow says so): three traders and sometimes none, prices mostly within a tick of 100 so
orders cross often, sizes of a few lots, every command type and order kind (GTC, GTT, IOC, FOK,
MARKET, post-only, every STP mode), short pauses, and invalid commands too: zero or negative sizes
and prices, unknown or mismatched markets, reused order and client ids, cancels and amends of
closed, unknown or foreign orders, GTT expiries at or around the current time, clocks that jump
forward or back, illegal status changes, bad market definitions, commands that name no trader.

Each test feeds a flow, command by command, to fresh engines and checks after every command:
the engine gives exactly the naive reference's result and book; the book and order invariants
hold; and a replay, or an engine restored from the exported state, gives identical results.

Profiles: `matcher-ci` (the default, used by CI: 200 flows of up to 60 commands, no deadline) and
`matcher-deep` (5,000 flows) for a longer hunt: `MATCHER_HYPOTHESIS_PROFILE=matcher-deep pytest …`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from msgspec import structs

from services.common.lifecycle import TERMINAL, OrderStatus, Transition, next_status
from services.common.records import (
    AmendOrder,
    CancelOrder,
    LiquiditySide,
    MarketDefinition,
    MarketKind,
    MarketStatus,
    MatcherCommand,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderRested,
    OrderType,
    PlaceOrder,
    SelfTradePrevention,
    Side,
    TimeInForce,
    TradeExecuted,
)
from services.matcher.core.engine import CommandResult, Event, MatchingEngine, export_state, import_state
from tests.kit import ALICE, BOB, CAROL, Commands, btc_perp, order_id
from tests.unit.matcher.reference import ReferenceMatcher, ReferenceResult, queue

settings.register_profile(
    "matcher-ci",
    max_examples=200,
    deadline=None,  # a flow is dozens of commands; timing one is noise, not a property
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("matcher-deep", settings.get_profile("matcher-ci"), max_examples=5_000)
FLOW_SETTINGS = settings.get_profile(os.environ.get("MATCHER_HYPOTHESIS_PROFILE", "matcher-ci"))

BTC, ETH = "BTC-PERP", "ETH-PERP"
TRADERS = (ALICE, BOB, CAROL)
NO_TRADER = len(TRADERS)  # a trader index that names nobody: the command carries no trader
UNKNOWN_ORDER_ID = order_id(0xDEAD_BEEF)
MAX_FLOW = 60
EXPIRY_GRID = 5_000  # µs


# == the flow language: steps that name their intent; FlowBuilder turns them into commands ========


class Reuse(Enum):
    """Which ids a new order takes: fresh ones, or an earlier order's."""

    FRESH = "fresh"
    OPEN_ORDER_ID = "the venue id of an open order (a duplicate)"
    CLOSED_ORDER_ID = "the venue id of an order no longer open (allowed: only open ids must differ)"
    CLIENT_ID = "the client id of one of the trader's earlier orders"


class Target(Enum):
    """Which order a cancel or an amend names."""

    OWN = "an open order, by venue id, sent by its owner"
    OWN_BY_CLIENT_ID = "an open order, by client id, sent by its owner"
    OWN_CLOSED = "one of the trader's orders that is no longer open"
    FOREIGN = "another trader's open order, by venue id"
    FOREIGN_CLIENT_ID = "another trader's open order's client id"
    UNKNOWN = "an id nobody used"
    NOTHING = "no id at all"


class Route(Enum):
    """Which market the command's body names, against the partition it is sent on."""

    SAME = "same market"
    OTHER = "the other market"
    UNSET = "no market (cancel-all only)"


@dataclass(frozen=True)
class Place:
    """Place an order; `trader` indexes TRADERS (NO_TRADER: the command names nobody)."""

    market: str
    trader: int
    side: Side
    size: int
    price: int
    order_type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_MAKER
    expires_in: int | None = None  # µs after the command's own time
    reuse: Reuse = Reuse.FRESH
    pick: int = 0  # which earlier order: 0 is the latest that fits, 1 the one before, ...
    route: Route = Route.SAME
    dt: int = 1_000  # µs since the previous command; negative moves the command clock back


@dataclass(frozen=True)
class Cancel:
    """Cancel the order `target` and `pick` choose."""

    market: str
    trader: int
    target: Target
    pick: int = 0
    route: Route = Route.SAME
    dt: int = 1_000


@dataclass(frozen=True)
class CancelAll:
    """Cancel all of a trader's orders, or one side of them."""

    market: str
    trader: int
    side: Side | None = None
    route: Route = Route.SAME
    dt: int = 1_000


@dataclass(frozen=True)
class Amend:
    """Amend the order `target` and `pick` choose to a new price and/or size (None: unchanged)."""

    market: str
    trader: int
    target: Target
    new_price: int | None = None
    new_size: int | None = None
    pick: int = 0
    route: Route = Route.SAME
    dt: int = 1_000


@dataclass(frozen=True)
class SetStatus:
    """Change a market's status (an admin command)."""

    market: str
    status: MarketStatus
    resume_after: int | None = None  # this many commands later, the builder sets the market ACTIVE
    dt: int = 1_000


@dataclass(frozen=True)
class Create:
    """List a market (an admin command)."""

    market: str
    definition: str = "plain"  # a variant `_definition` knows
    dt: int = 1_000


Step = Place | Cancel | CancelAll | Amend | SetStatus | Create


def _definition(symbol: str, variant: str) -> MarketDefinition:
    """A market definition for `symbol`; names starting with 'invalid' must be refused."""
    plain = structs.replace(btc_perp(), market=symbol, base_asset=symbol.partition("-")[0])
    changes: dict[str, dict[str, Any]] = {
        "plain": {},
        "min size 2": {"min_size": 2},
        "odd fees": {"quote_per_tick_lot": 3, "maker_fee_bps": 7, "taker_fee_bps": 13},
        "zero fees": {"maker_fee_bps": 0, "taker_fee_bps": 0},
        "starts paused": {"status": MarketStatus.PAUSED},
        "invalid: fee above 100%": {"taker_fee_bps": 10_001},
        "invalid: starts settled": {"status": MarketStatus.SETTLED},
        "invalid: future without expiry": {"kind": MarketKind.FUTURE},
        "invalid: option without strike": {"kind": MarketKind.OPTION, "expiry": 1},
        "invalid: names another market": {"market": "SOL-PERP"},
        "invalid: zero lot value and size": {"quote_per_tick_lot": 0, "min_size": 0},
    }
    return structs.replace(plain, **changes[variant])


VALID_DEFINITIONS = ("plain", "min size 2", "odd fees", "zero fees", "starts paused")
INVALID_DEFINITIONS = (
    "invalid: fee above 100%",
    "invalid: starts settled",
    "invalid: future without expiry",
    "invalid: option without strike",
    "invalid: names another market",
    "invalid: zero lot value and size",
)


@dataclass(frozen=True)
class Known:
    """An order the builder knows of: one it placed (whatever became of it), or one open now."""

    market: str
    trader: str | None
    order_id: str
    client_order_id: str


@dataclass
class FlowBuilder:
    """Turns steps into MatcherCommands with the test kit, resolving 'an earlier order' references.

    To aim cancels and amends at orders that are open, it feeds what it builds to a shadow
    reference matcher and looks at its books; only the choice of target depends on that.
    """

    kit: Commands = field(default_factory=Commands)
    shadow: ReferenceMatcher = field(default_factory=ReferenceMatcher)
    placed: list[Known] = field(default_factory=list)
    fresh: int = 0
    resumes: dict[str, int] = field(default_factory=dict)  # market → commands until it resumes

    def build(self, step: Step) -> list[MatcherCommand]:
        """The step's command, then any resume that falls due after it."""
        commands = [self._build(step)]
        if isinstance(step, SetStatus) and step.resume_after is not None:
            self.resumes[step.market] = step.resume_after
        for market, left in list(self.resumes.items()):
            self.resumes[market] = left - 1
            if left <= 0:
                del self.resumes[market]
                commands.append(self._build(SetStatus(market, MarketStatus.ACTIVE)))
        for command in commands:
            self.shadow.apply(command)
        return commands

    def _build(self, step: Step) -> MatcherCommand:
        ts = self.kit.now + step.dt
        self.kit.market = step.market
        command = self._command(step, ts)
        if isinstance(step, Place | Cancel | CancelAll | Amend) and step.route is Route.OTHER:
            command = _with_body(command, market=ETH if step.market == BTC else BTC)
        self.kit.now = ts  # the kit stepped 1 ms; the step says by how much time really moves
        return structs.replace(command, ts_init=ts)

    def _command(self, step: Step, ts: int) -> MatcherCommand:
        # The kit wants a trader for order commands; `_sent_by` then puts the real one (or None).
        match step:
            case Place():
                return _sent_by(_trader(step.trader), self._place(step, ts))
            case Cancel():
                venue_id, client_id, sender = self._target(step)
                return _sent_by(sender, self.kit.cancel(ALICE, venue_id, client_order_id=client_id))
            case CancelAll():
                command = self.kit.cancel_all(ALICE, step.side)
                if step.route is Route.UNSET:
                    command = _with_body(command, market=None)
                return _sent_by(_trader(step.trader), command)
            case Amend():
                venue_id, _, sender = self._target(step)
                command = self.kit.amend(ALICE, venue_id or UNKNOWN_ORDER_ID)
                return _sent_by(sender, _with_body(command, new_price=step.new_price, new_size=step.new_size))
            case SetStatus():
                return self.kit.set_status(step.status)
            case Create():
                return self.kit.create(_definition(step.market, step.definition))

    def _place(self, step: Place, ts: int) -> MatcherCommand:
        trader = _trader(step.trader)
        self.fresh += 1
        new_id, client_id = order_id(self.fresh), f"c{self.fresh}"
        open_now, closed = self._open_and_closed(step.market)
        reusable = {Reuse.OPEN_ORDER_ID: open_now, Reuse.CLOSED_ORDER_ID: closed}.get(step.reuse)
        if reusable:
            new_id = _pick(reusable, step.pick).order_id
        mine = [known for known in self.placed if known.trader == trader]
        if step.reuse is Reuse.CLIENT_ID and mine:
            client_id = _pick(mine, step.pick).client_order_id
        self.placed.append(Known(step.market, trader, new_id, client_id))
        return self.kit.limit(
            ALICE,
            step.side,
            step.size,
            step.price,
            order_type=step.order_type,
            time_in_force=step.tif,
            post_only=step.post_only,
            stp=step.stp,
            expire_at=None if step.expires_in is None else _expiry(ts, step.expires_in),
            order_id=new_id,
            client_order_id=client_id,
        )

    def _target(self, step: Cancel | Amend) -> tuple[str | None, str | None, str | None]:
        """(venue id, client id, sender) for the order `step.target` describes.

        OWN targets are an open order sent by its owner (by nobody, when the step names no
        trader): the step's trader only matters when no order is open. A target that fits no
        order gets an id nobody used.
        """
        me = _trader(step.trader)
        if step.target is Target.NOTHING:
            return None, None, me
        open_now, closed = self._open_and_closed(step.market)
        candidates = {
            Target.UNKNOWN: [],
            Target.OWN: open_now,
            Target.OWN_BY_CLIENT_ID: open_now,
            Target.OWN_CLOSED: [known for known in closed if known.trader == me],
            Target.FOREIGN: [known for known in open_now if known.trader != me],
            Target.FOREIGN_CLIENT_ID: [known for known in open_now if known.trader != me],
        }[step.target]
        if not candidates:
            return UNKNOWN_ORDER_ID, None, me
        order = _pick(candidates, step.pick)
        sender = order.trader if step.target in (Target.OWN, Target.OWN_BY_CLIENT_ID) and me else me
        if step.target in (Target.OWN_BY_CLIENT_ID, Target.FOREIGN_CLIENT_ID):
            return None, order.client_order_id, sender
        return order.order_id, None, sender

    def _open_and_closed(self, market: str) -> tuple[list[Known], list[Known]]:
        """The market's open orders (as the shadow sees them), and the placed ones that are not."""
        book = self.shadow.markets.get(market)
        resting = book.resting if book else []
        open_now = [Known(market, o.trader, o.order_id, o.client_order_id) for o in resting]
        open_ids = {known.order_id for known in open_now}
        closed = [k for k in self.placed if k.market == market and k.order_id not in open_ids]
        return open_now, closed


def _expiry(ts: int, expires_in: int) -> int:
    """`ts + expires_in`, rounded up to a 5 ms grid when in the future.

    On the grid, orders placed at different times often expire at the same instant, and the engine
    must break those ties by time priority.
    """
    at = ts + expires_in
    return -(-at // EXPIRY_GRID) * EXPIRY_GRID if expires_in > 0 else at


def _pick(orders: list[Known], pick: int) -> Known:
    """The pick-th order from the end: recent orders first, as they are likelier still open."""
    return orders[-1 - pick % len(orders)]


def _trader(index: int) -> str | None:
    return TRADERS[index] if index < len(TRADERS) else None


def _sent_by(trader: str | None, command: MatcherCommand) -> MatcherCommand:
    return structs.replace(command, trader=trader)


def _with_body(command: MatcherCommand, **changes: Any) -> MatcherCommand:
    return structs.replace(command, body=structs.replace(command.body, **changes))


@dataclass(frozen=True)
class Flow:
    """A market listing followed by steps; `commands()` is the same list every time it is called."""

    listing: Create
    steps: list[Step]

    def commands(self) -> list[MatcherCommand]:
        builder = FlowBuilder()
        return [command for step in [self.listing, *self.steps] for command in builder.build(step)]


# == strategies =====================================================================================


def often(common: Sequence[Any], rare: Sequence[Any], one_in: int) -> st.SearchStrategy[Any]:
    """A value of `common`, or about one draw in `one_in` a value of `rare`; shrinks to common[0].

    One `sampled_from` over a list with repeats: a single cheap draw, which keeps generation fast.
    """
    copies = max(1, round(len(rare) * (one_in - 1) / len(common)))
    return st.sampled_from([*common] * copies + [*rare])


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, drawn with the given weights; shrinks towards the first."""
    return st.sampled_from([strategy for weight, strategy in choices for _ in range(weight)]).flatmap(
        lambda strategy: strategy
    )


markets = often([BTC], [ETH], one_in=20)
traders = often(range(len(TRADERS)), [NO_TRADER], one_in=40)
sides = st.sampled_from(Side)
sizes = often(range(1, 6), [0, -1], one_in=25)
# Three ticks around 100 most of the time, so that orders cross often.
prices = often([100, 99, 101, 100, 99, 101, 98, 102], [95, 105, 0, -1], one_in=25)
routes = often([Route.SAME], [Route.OTHER], one_in=40)
picks = st.integers(0, 7)
# Mostly 1 ms apart; sometimes simultaneous, a little later, much later (expiring every GTT), or back.
time_steps = often([1_000], [0, 1, 2_000, 5_000, 60_000, -3_000], one_in=5)
# GTT expiries near the command's time: the next command or a few later, rarely now or already past.
expiries = often([1_000, 2_000, 5_000, 10_000, 30_000, 1, 500], [0, -1_000], one_in=8)


L, M = OrderType.LIMIT, OrderType.MARKET
GTC, IOC, FOK, GTT = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTT
# (order type, time in force, post-only): resting limit orders most often, so books fill up.
order_kinds = often(
    [(L, GTC, False)] * 8
    + [(L, GTT, False)] * 2
    + [(L, IOC, False), (L, FOK, False), (M, IOC, False), (M, FOK, False), (L, GTC, True), (L, GTT, True)],
    # Flags the engine must refuse: resting or post-only MARKET orders, post-only IOC/FOK.
    [(M, GTC, False), (M, GTT, False), (M, IOC, True), (L, IOC, True), (L, FOK, True)],
    one_in=25,
)


@st.composite
def places(draw: st.DrawFn) -> Place:
    """Mostly well-formed orders of every kind; a few with a size, price, flags or expiry to refuse."""
    order_type, tif, post_only = draw(order_kinds)
    # GTT needs an expiry and the others must not have one; one order in 30 gets that wrong.
    expires_in = draw(expiries) if tif is GTT else None
    if draw(often([False], [True], one_in=30)):
        expires_in = None if expires_in is not None else draw(expiries)
    return Place(
        market=draw(markets),
        trader=draw(traders),
        side=draw(sides),
        size=draw(sizes),
        price=draw(prices),
        order_type=order_type,
        tif=tif,
        post_only=post_only,
        stp=draw(st.sampled_from(SelfTradePrevention)),
        expires_in=expires_in,
        reuse=draw(often([Reuse.FRESH], [Reuse.OPEN_ORDER_ID, Reuse.CLOSED_ORDER_ID, Reuse.CLIENT_ID], 10)),
        pick=draw(picks),
        route=draw(routes),
        dt=draw(time_steps),
    )


cancels = st.builds(
    Cancel,
    market=markets,
    trader=traders,
    target=often([Target.OWN, Target.OWN_BY_CLIENT_ID], list(Target), one_in=4),
    pick=picks,
    route=routes,
    dt=time_steps,
)
cancel_alls = st.builds(
    CancelAll,
    market=markets,
    trader=traders,
    side=st.sampled_from([None, Side.BUY, Side.SELL]),
    route=often([Route.SAME], [Route.UNSET, Route.OTHER], one_in=3),
    dt=time_steps,
)
amends = st.builds(
    Amend,
    market=markets,
    trader=traders,
    target=often([Target.OWN], [Target.OWN_CLOSED, Target.FOREIGN, Target.UNKNOWN], one_in=6),
    new_price=often([None, *range(98, 103)], [95, 105, 0, -1], one_in=10),
    new_size=often([None, *range(1, 8)], [0, -1], one_in=10),
    pick=picks,
    route=routes,
    dt=time_steps,
)
pauses = st.builds(
    # Pauses are short (the builder resumes the market), so markets trade most of the time.
    SetStatus,
    market=markets,
    status=st.just(MarketStatus.PAUSED),
    resume_after=st.integers(0, 5),
)
status_changes = st.builds(SetStatus, market=markets, status=st.sampled_from(MarketStatus), dt=time_steps)
listings = st.builds(
    Create,
    market=st.sampled_from([ETH, BTC]),
    definition=often(VALID_DEFINITIONS, INVALID_DEFINITIONS, one_in=3),
    dt=time_steps,
)
steps = weighted(
    (24, places()),
    (3, cancels),
    (1, cancel_alls),
    (6, amends),
    (1, pauses),
    (1, listings),
)
rare_steps = status_changes  # settling or deleting ends a market's trading: one flow in three


@st.composite
def command_flows(draw: st.DrawFn) -> Flow:
    """BTC-PERP listed and trading (mostly plain, sometimes min size 2 or other fees), then steps."""
    listing = Create(BTC, draw(often(["plain"], ["min size 2", "odd fees", "zero fees"], one_in=3)))
    # st.lists alone averages a handful of elements; fix the length first so flows get long.
    length = draw(st.integers(0, MAX_FLOW))
    flow = draw(st.lists(steps, min_size=length, max_size=length))
    if flow and draw(often([False], [True], one_in=3)):
        # Counted from the end (shrinking moves it there), so that it meets a full book.
        flow.insert(len(flow) - draw(st.integers(0, len(flow) - 1)), draw(rare_steps))
    return Flow(listing, flow)


# == running a flow =================================================================================


@dataclass(frozen=True)
class Queued:
    """A resting order as the reference saw it: where it stood in its side's queue."""

    order_id: str
    price: int
    stamp: int
    open_qty: int


Queues = dict[tuple[str, Side], list[Queued]]


@dataclass
class Played:
    """One command as the engine handled it, with the reference's queues from just before it."""

    command: MatcherCommand
    result: CommandResult
    queues_before: Queues


def played(flow: Flow, engine: MatchingEngine) -> Iterator[Played]:
    """Apply the flow's commands to `engine` (and a reference, for its queues), one at a time."""
    reference = ReferenceMatcher()
    commands = flow.commands()
    note("commands:\n" + "\n".join(map(repr, commands)))
    for command in commands:
        before = reference_queues(reference)
        reference.apply(command)
        yield Played(command, engine.apply(command), before)


def reference_queues(reference: ReferenceMatcher) -> Queues:
    return {
        (symbol, side): [Queued(o.order_id, o.price, o.stamp, o.open_qty) for o in queue(market, side)]
        for symbol, market in reference.markets.items()
        for side in Side
    }


def engine_state(engine: MatchingEngine) -> dict[str, Any]:
    """Per market: status, clock and every resting order in priority order."""
    return {
        symbol: (
            market.status,
            market.clock,
            [
                (o.order_id, o.trader, o.side, o.price, o.size, o.cum_qty, o.leaves_qty, o.expire_at)
                for side in Side
                for o in market.book.in_priority(side)
            ],
        )
        for symbol, market in engine.markets.items()
    }


def reference_state(reference: ReferenceMatcher) -> dict[str, Any]:
    """The same view of the reference."""
    return {
        symbol: (
            market.status,
            market.clock,
            [
                (o.order_id, o.trader, o.side, o.price, o.size, o.filled, o.open_qty, o.expire_at)
                for side in Side
                for o in queue(market, side)
            ],
        )
        for symbol, market in reference.markets.items()
    }


def describe(result: CommandResult | ReferenceResult) -> str:
    return f"market {result.market}, first seq {result.first_seq}:\n" + "\n".join(
        f"  {event!r}" for event in result.events
    )


# == the properties ==================================================================================


@FLOW_SETTINGS
@given(flow=command_flows())
def test_engine_gives_the_reference_result_for_every_command(flow: Flow) -> None:
    # State: a fresh engine and a fresh reference matcher.
    engine, reference = MatchingEngine(), ReferenceMatcher()
    for command in flow.commands():
        # Action: both handle the same command.
        result, expected = engine.apply(command), reference.apply(command)
        # Expectation: the same numbered events (details included) and the same books afterwards.
        assert (result.market, result.first_seq, result.events) == (
            expected.market,
            expected.first_seq,
            expected.events,
        ), f"{command!r}\nengine {describe(result)}\nreference {describe(expected)}"
        assert engine_state(engine) == reference_state(reference), f"books differ after {command!r}"


@FLOW_SETTINGS
@given(flow=command_flows())
def test_every_command_keeps_the_book_and_order_invariants(flow: Flow) -> None:
    # State: a fresh engine; each order's quantities and lifecycle status as its events tell them.
    engine = MatchingEngine()
    quantities, lifecycle, trade_ids = QuantityLedger(), Lifecycle(), TradeNumbers()
    for step in played(flow, engine):
        # Action: one command (`played` applied it).
        # Expectation: each invariant holds after it (each helper says which it checks).
        engine.validate()
        assert_no_book_crossed(engine)
        assert_each_trade_has_one_maker_and_one_taker_fill(step.result.events)
        assert_no_trader_trades_with_itself(step.result.events)
        trade_ids.check(step.result)
        assert_fills_respect_price_time_priority(step)
        quantities.record(step.result)
        quantities.check(engine)
        lifecycle.follow(step.command, step.result)


@FLOW_SETTINGS
@given(flow=command_flows())
def test_replaying_or_restoring_a_flow_gives_identical_events_and_state_hash(flow: Flow) -> None:
    # State: an engine that runs the flow and a fresh one that replays it.
    original, replayed = MatchingEngine(), MatchingEngine()
    for command in flow.commands():
        # ... and, before every command, an engine restored from the original's exported state
        # (the service recovers from such snapshots at any point).
        restored = import_state(export_state(original))
        assert restored.state_hash() == original.state_hash()
        # Action: all three apply the command.
        result = original.apply(command)
        # Expectation: identical results and identical state digests.
        assert replayed.apply(command) == result, f"replay diverged at {command!r}"
        assert restored.apply(command) == result, f"restored engine diverged at {command!r}"
        assert replayed.state_hash() == restored.state_hash() == original.state_hash()


# == what the properties look at ======================================================================


def assert_no_book_crossed(engine: MatchingEngine) -> None:
    """The best bid is below the best ask in every market."""
    for symbol, market in engine.markets.items():
        bid, ask = market.book.best_price(Side.BUY), market.book.best_price(Side.SELL)
        assert bid is None or ask is None or bid < ask, f"{symbol} crossed: bid {bid}, ask {ask}"


def assert_each_trade_has_one_maker_and_one_taker_fill(events: list[Event]) -> None:
    """Every TradeExecuted is followed by its maker's, then its taker's OrderFilled.

    The fills agree with the trade (ids, traders, sides, price, size, fees); no other OrderFilled.
    """
    trades = [i for i, event in enumerate(events) if isinstance(event, TradeExecuted)]
    assert sum(isinstance(event, OrderFilled) for event in events) == 2 * len(trades)
    for i in trades:
        trade = events[i]
        assert isinstance(trade, TradeExecuted)
        assert_fill_of(trade, events[i + 1 : i + 2], LiquiditySide.MAKER)
        assert_fill_of(trade, events[i + 2 : i + 3], LiquiditySide.TAKER)


def assert_no_trader_trades_with_itself(events: list[Event]) -> None:
    """Self-trade prevention, whatever its mode, never lets a maker and a taker share a trader."""
    for event in events:
        if isinstance(event, TradeExecuted):
            assert event.maker_trader != event.taker_trader, f"self-trade {event!r}"


def assert_fill_of(trade: TradeExecuted, following: list[Event], liquidity: LiquiditySide) -> None:
    """`following` is the one OrderFilled of the trade's maker or taker, agreeing with the trade."""
    assert following, f"trade {trade.trade_id} is not followed by its {liquidity} fill"
    fill = following[0]
    assert isinstance(fill, OrderFilled), f"trade {trade.trade_id}: {fill!r} is not its {liquidity} fill"
    maker = liquidity is LiquiditySide.MAKER
    expected = (
        trade.maker_order_id if maker else trade.taker_order_id,
        trade.maker_trader if maker else trade.taker_trader,
        _other(trade.aggressor_side) if maker else trade.aggressor_side,
        trade.maker_fee if maker else trade.taker_fee,
    )
    assert (fill.order_id, fill.trader, fill.side, fill.fee) == expected
    assert (fill.liquidity_side, fill.trade_id, fill.last_px, fill.last_qty) == (
        liquidity,
        trade.trade_id,
        trade.price,
        trade.size,
    )


@dataclass
class TradeNumbers:
    """Trade ids count up from 1 in each market, without gaps."""

    last: dict[str, int] = field(default_factory=dict)

    def check(self, result: CommandResult) -> None:
        for event in result.events:
            if isinstance(event, TradeExecuted):
                assert event.trade_id == self.last.get(result.market, 0) + 1
                self.last[result.market] = event.trade_id


def assert_fills_respect_price_time_priority(step: Played) -> None:
    """No maker is filled while an order at a better price, or an older one at its price, rests.

    The queues are the reference's from before the command (so this leans on the reference and the
    engine agreeing, which the first property checks); orders leave them as the command's events
    say: expiry and self-trade cancellations, and fills.
    """
    market = step.result.market
    queues = {side: list(step.queues_before.get((market, side), [])) for side in Side}
    for event in step.result.events:
        if isinstance(event, OrderCancelled):
            for side in Side:
                queues[side] = [q for q in queues[side] if q.order_id != event.order_id]
        if isinstance(event, OrderFilled) and event.liquidity_side is LiquiditySide.MAKER:
            assert_first_in_priority(event, queues[event.side])
            queues[event.side] = fill_in_queue(event, queues[event.side])


def _other(side: Side) -> Side:
    return Side.SELL if side is Side.BUY else Side.BUY


def _better(side: Side, price: int, than: int) -> bool:
    return price > than if side is Side.BUY else price < than


def assert_first_in_priority(fill: OrderFilled, side_queue: list[Queued]) -> None:
    """No other resting order on the maker's side has a better price or is older at its price."""
    maker = next((q for q in side_queue if q.order_id == fill.order_id), None)
    assert maker is not None, f"{fill.order_id} was filled as a maker but was not resting"
    for other in side_queue:
        ahead = _better(fill.side, other.price, maker.price) or (
            other.price == maker.price and other.stamp < maker.stamp
        )
        assert not ahead, f"{fill.order_id} filled while {other.order_id} was ahead of it"


def fill_in_queue(fill: OrderFilled, side_queue: list[Queued]) -> list[Queued]:
    """The queue after `fill`: the maker's open quantity shrinks and it leaves when none is left."""
    return [
        dataclasses.replace(q, open_qty=fill.leaves_qty) if q.order_id == fill.order_id else q
        for q in side_queue
        if q.order_id != fill.order_id or fill.leaves_qty > 0
    ]


@dataclass
class Life:
    """One order's quantities as its events tell them."""

    size: int
    filled: int = 0
    cancelled: int = 0


@dataclass
class QuantityLedger:
    """Per (market, order id): size, filled and cancelled quantities as the events tell them.

    `check` demands size = filled + open (on the engine's book) + cancelled for every order ever
    accepted; sizes come from OrderAccepted and OrderAmended.
    """

    lives: dict[tuple[str, str], Life] = field(default_factory=dict)

    def record(self, result: CommandResult) -> None:
        for event in result.events:
            if isinstance(event, OrderAccepted):  # a closed id may be used again: a new life
                self.lives[(result.market, event.order_id)] = Life(event.size)
            elif isinstance(event, OrderAmended):
                self.lives[(result.market, event.order_id)].size = event.size
            elif isinstance(event, OrderFilled):
                self.lives[(result.market, event.order_id)].filled += event.last_qty
            elif isinstance(event, OrderCancelled):
                self.lives[(result.market, event.order_id)].cancelled += event.cancelled_qty

    def check(self, engine: MatchingEngine) -> None:
        for (symbol, oid), life in self.lives.items():
            resting = engine.markets[symbol].book.orders.get(oid)
            open_qty = resting.leaves_qty if resting is not None else 0
            assert life.size == life.filled + open_qty + life.cancelled, f"{oid}: {life}, open {open_qty}"


OrderEvent = OrderAccepted | OrderRested | OrderFilled | OrderAmended | OrderCancelled


def transition_of(event: OrderEvent) -> Transition:
    """The lifecycle move an event makes its order take."""
    if isinstance(event, OrderAccepted):
        return Transition.ACCEPT
    if isinstance(event, OrderRested):
        return Transition.REST
    if isinstance(event, OrderFilled):
        return Transition.FULL_FILL if event.leaves_qty == 0 else Transition.PARTIAL_FILL
    if isinstance(event, OrderAmended):
        return Transition.AMEND
    return Transition.CANCEL


@dataclass
class Lifecycle:
    """Each order's status, folded through `next_status` event by event.

    `next_status` raises IllegalTransition on any move the lifecycle table does not allow.
    """

    status: dict[tuple[str, str], OrderStatus] = field(default_factory=dict)

    def follow(self, command: MatcherCommand, result: CommandResult) -> None:
        for event in result.events:
            if isinstance(event, OrderRejected):
                # A refused PlaceOrder is a submission that never lived (None → REJECTED), even when
                # its id is an open order's; a refused cancel or amend changes no order at all.
                if isinstance(command.body, PlaceOrder):
                    assert next_status(None, Transition.REJECT) is OrderStatus.REJECTED
                continue
            if not isinstance(event, OrderEvent):
                continue
            transition = transition_of(event)
            key = (result.market, event.order_id)
            current = self.status.get(key)
            if transition is Transition.ACCEPT:
                assert current is None or current in TERMINAL, f"{key} accepted again while {current}"
                current = None  # an id reused after its order closed starts a new life
            self.status[key] = next_status(current, transition)


# == the flow builder itself ==========================================================================


@pytest.mark.parametrize("body", [CancelOrder, AmendOrder])
def test_flow_builder_names_the_orders_steps_ask_for(body: type[Any]) -> None:
    # State: ALICE and BOB each placed an order on BTC-PERP.
    builder = FlowBuilder()
    builder.build(Create(BTC))
    [alices_order] = builder.build(Place(BTC, 0, Side.BUY, 1, 99))
    [bobs_order] = builder.build(Place(BTC, 1, Side.SELL, 1, 101))
    alices, bobs = alices_order.body, bobs_order.body
    assert isinstance(alices, PlaceOrder) and isinstance(bobs, PlaceOrder)
    # Action: a step for the open order before the latest (ALICE's), then one for an order foreign
    # to ALICE.
    step = Cancel if body is CancelOrder else Amend
    [own] = builder.build(step(BTC, 2, Target.OWN, pick=1))
    [foreign] = builder.build(step(BTC, 0, Target.FOREIGN))
    # Expectation: both name their orders and come from ALICE: the owner sends OWN steps.
    assert isinstance(own.body, body) and isinstance(foreign.body, body)
    assert (own.trader, own.body.order_id) == (ALICE, alices.order_id)
    assert (foreign.trader, foreign.body.order_id) == (ALICE, bobs.order_id)
