"""The funding/expiry state machine: log inputs and clock ticks in, matcher commands out.

State is built only from inputs: `IndexObserved` (oracle.prices), `TradeLogEntry` (trade.log) and
`Tick(now_us)`, the adapter's clock — the only place time enters. Outputs are `MatcherCommand`s
for matcher.commands (keyed by market, no trader, `ts_init` = the tick) with DETERMINISTIC ids, so
a command resent after a crash is the same command; and, per option trade, an implied volatility
for metrics. The table of states and transitions is in docs/derivatives.md.

Funding is a function of the trade log alone: the mark and index TWAPs of an interval come from
the `MarkPriceSet` events of that market (mark and index, ticks, at the entry's time), and the
index the payments use is the last `MarkPriceSet.index_price` before the interval's end. An
interval is *ready* once the log holds a `MarkPriceSet` at or after its end: this service sends its
marks in time order on the market's partition, so every mark of the interval is then in the log.
Replayed from offset 0, the same log therefore gives the same `ApplyFunding` bodies.

Exactly once: an interval is sent only if the log does not show it applied (`FundingApplied`
moves `next_start` past it) and the matcher refuses an interval starting before the last one it
applied (`FUNDING_ALREADY_APPLIED`). A command not seen in the log within `resend_after_s` is
sent again with the same id; after a restart the state is rebuilt from the log before the first
tick, so only intervals the log does not show applied can go out again — and the matcher refuses
any of those it already has.

Marks are *new facts*, like oracle rounds: the basis window is sampled on each oracle round from
the depth fold as read so far, so after a restart it may differ slightly from the killed
process's (the interleaving of two topics is not in any log). Funding never depends on it —
funding reads the marks the log recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec

from services.common.records import (
    ApplyFunding,
    CommandRejected,
    FundingApplied,
    MarketCreated,
    MarketDefinition,
    MarketKind,
    MarketSettled,
    MarketStatus,
    MarketStatusChanged,
    MarkPriceSet,
    MatcherCommand,
    OptionType,
    SetMarkPrice,
    SettleMarket,
    TradeExecuted,
    TradeLogEntry,
)
from services.common.twap import twap
from services.funding.core import black76, expiry, funding, marks
from services.funding.core.prices import index_to_ticks
from services.marketdata.core.depth import DepthBook, MarketDepth

US_PER_S = 1_000_000
COMMAND_NAMESPACE = uuid.UUID("5c0d3e4a-8f7b-5e21-9a57-cf1d2e3f4a5b")
"""uuid5 namespace of the service's command ids (fixed forever: ids must survive restarts)."""
MAX_INTERVALS_PER_TICK = 100
"""Catch-up bound: at most this many funding intervals per market per tick."""

CLOSED = (MarketStatus.SETTLED, MarketStatus.DELETED)


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Parameters (from settings in the adapter; defaults documented in docs/derivatives.md)."""

    interval_s: int = 3_600
    cap_e9: int = 1_000_000
    mark_rounds: int = marks.DEFAULT_MARK_ROUNDS
    mark_clamp_bps: int = marks.DEFAULT_MARK_CLAMP_BPS
    mark_max_age_s: int = 60
    settlement_window_s: int = expiry.DEFAULT_SETTLEMENT_WINDOW_S
    option_vols: Mapping[str, float] = field(default_factory=dict)
    option_vol_default: float = 0.6
    option_max_spread_bps: int = marks.DEFAULT_OPTION_MAX_SPREAD_BPS
    resend_after_s: int = 30

    def vol_for(self, index_symbol: str) -> float:
        """The configured volatility of an underlying."""
        return self.option_vols.get(index_symbol, self.option_vol_default)


# -- inputs and outputs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexObserved:
    """One oracle round (from an `IndexPrice`): `price_e9` is None when no source was accepted."""

    index_symbol: str
    ts_event: int
    price_e9: int | None


@dataclass(frozen=True, slots=True)
class Tick:
    """The adapter's clock, µs since the epoch."""

    now_us: int


@dataclass(frozen=True, slots=True)
class ImpliedVolObserved:
    """Implied volatility of one option trade (for metrics; (market, trade_id) identifies it)."""

    market: str
    trade_id: int
    ts_event: int
    trade_price: int
    index_price: int
    strike: int
    option_type: OptionType
    t_years: float
    implied_vol: float | None
    failure: black76.IvFailure | None


@dataclass(frozen=True, slots=True)
class SchedulerOutput:
    """What one input caused."""

    commands: list[MatcherCommand] = field(default_factory=list)
    implied_vols: list[ImpliedVolObserved] = field(default_factory=list)


Input = IndexObserved | TradeLogEntry | Tick


def command_id(kind: str, market: str, at: int = 0) -> str:
    """Deterministic id: uuid5 of '<kind>:<market>:<at>' ('funding', 'settle', 'mark')."""
    return str(uuid.uuid5(COMMAND_NAMESPACE, f"{kind}:{market}:{at}"))


# -- state ------------------------------------------------------------------------------------------


INDEX_RETENTION_US = 24 * 3600 * US_PER_S
"""Oracle rounds kept whatever the markets need (a day: 2,880 rounds at the oracle's 30 s)."""


@dataclass(slots=True)
class _Index:
    samples: list[tuple[int, int]] = field(default_factory=list)  # (ts, price_e9), ascending

    @property
    def latest(self) -> tuple[int, int] | None:
        return self.samples[-1] if self.samples else None


@dataclass(slots=True)
class _Market:
    definition: MarketDefinition
    status_history: list[tuple[int, MarketStatus]]
    next_start: int = 0  # perpetuals: start of the first interval the log does not show resolved
    mark_log: list[tuple[int, int, int]] = field(default_factory=list)  # (ts, mark, index) ticks
    basis: marks.BasisWindow = field(default_factory=marks.BasisWindow)
    marked_round: int = -1  # ts of the oracle round the last SetMarkPrice was sent for
    funding_sent_until: int = 0  # end of the last interval sent, and when
    funding_sent_at: int = 0
    settle_sent_at: int | None = None

    @property
    def symbol(self) -> str:
        return self.definition.market

    @property
    def status(self) -> MarketStatus:
        return self.status_history[-1][1]

    def status_before(self, ts: int) -> MarketStatus:
        """The status in force just before `ts`."""
        current = self.status_history[0][1]
        for at, status in self.status_history:
            if at >= ts:
                break
            current = status
        return current


@dataclass(slots=True)
class SchedulerState:
    """Everything a scheduler has learnt from the logs: what a snapshot holds."""

    markets: dict[str, _Market]
    indexes: dict[str, _Index]
    depth: dict[str, MarketDepth]


def encode_state(scheduler: Scheduler) -> bytes:
    """The scheduler's state as MessagePack (`decode_state` reads it back)."""
    state = SchedulerState(scheduler.markets, scheduler.indexes, scheduler.depth.markets)
    return msgspec.msgpack.encode(state)


def decode_state(config: SchedulerConfig, data: bytes) -> Scheduler:
    """A scheduler with `config` and the state `encode_state` wrote; raises msgspec.DecodeError or
    msgspec.ValidationError if `data` is not such a state (e.g. written by another version)."""
    state = msgspec.msgpack.decode(data, type=SchedulerState)
    scheduler = Scheduler(config)
    scheduler.markets, scheduler.indexes = state.markets, state.indexes
    scheduler.depth.markets = state.depth
    return scheduler


class Scheduler:
    """Marks, funding and settlement for every market the trade log lists (see the module doc)."""

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        self.markets: dict[str, _Market] = {}
        self.indexes: dict[str, _Index] = {}
        self.depth = DepthBook()

    def apply(self, item: Input) -> SchedulerOutput:
        """One input; returns the commands to send and the implied volatilities observed."""
        match item:
            case Tick():
                return SchedulerOutput(commands=self.on_tick(item.now_us))
            case IndexObserved():
                self.on_index(item)
                return SchedulerOutput()
            case TradeLogEntry():
                return SchedulerOutput(implied_vols=self.on_entry(item))

    # -- oracle rounds ----------------------------------------------------------------------------

    def on_index(self, round_: IndexObserved) -> None:
        """Record a round (rounds out of time order or without a price are ignored) and sample the
        basis of every market on that index."""
        if round_.price_e9 is None or round_.price_e9 <= 0:
            return
        index = self.indexes.setdefault(round_.index_symbol, _Index())
        if index.latest is not None and round_.ts_event <= index.latest[0]:
            return
        index.samples.append((round_.ts_event, round_.price_e9))
        for market in self._on_index(round_.index_symbol):
            if market.definition.kind in (MarketKind.PERPETUAL, MarketKind.FUTURE):
                ticks = index_to_ticks(round_.price_e9, market.definition.tick_size_e9)
                depth = self.depth.market(market.symbol)
                mid = depth.mid() if depth is not None else None
                market.basis = market.basis.observe(marks.basis_sample(mid, ticks))
        self._prune_index(round_.index_symbol, index)

    def _prune_index(self, symbol: str, index: _Index) -> None:
        """Keep what an unsettled expiry's TWAP window can still need, and at least the last
        `INDEX_RETENTION_US` plus one settlement window: on a restart the service reads oracle.prices
        and trade.log side by side, not in time order, so it may learn of a future only after reading
        the rounds of its settlement window — they must still be there."""
        window_us = self.config.settlement_window_s * US_PER_S
        needed = [
            m.definition.expiry - window_us
            for m in self._on_index(symbol)
            if m.definition.expiry is not None and m.status not in CLOSED
        ]
        horizon = min([*needed, index.samples[-1][0] - INDEX_RETENTION_US - window_us])
        keep_from = 0
        for i, (ts, _) in enumerate(index.samples):
            if ts <= horizon:
                keep_from = i  # the last round at or before the horizon still holds at it
        if keep_from:
            del index.samples[:keep_from]

    # -- the trade log ----------------------------------------------------------------------------

    def on_entry(self, entry: TradeLogEntry) -> list[ImpliedVolObserved]:
        """Fold one trade-log entry in; returns implied vols of the option trades it holds."""
        self.depth.apply(entry)
        vols: list[ImpliedVolObserved] = []
        for event in entry.events:
            if isinstance(event, MarketCreated):
                self._listed(event.definition, entry.ts_event)
                continue
            market = self.markets.get(entry.market)
            if market is None:
                continue
            match event:
                case MarketStatusChanged():
                    market.status_history.append((entry.ts_event, event.status))
                case MarketSettled():
                    if market.status is not MarketStatus.SETTLED:
                        market.status_history.append((entry.ts_event, MarketStatus.SETTLED))
                case MarkPriceSet():
                    self._marked(market, entry.ts_event, event)
                case FundingApplied():
                    market.next_start = max(market.next_start, event.interval_end)
                    self._prune_marks(market)
                case CommandRejected():
                    self._rejected(market, entry.command_id)
                case TradeExecuted():
                    vol = self._implied_vol(market, event, entry.ts_event)
                    if vol is not None:
                        vols.append(vol)
                case _:
                    pass
        return vols

    def _listed(self, definition: MarketDefinition, ts: int) -> None:
        if definition.kind is MarketKind.SPOT or not definition.index_symbol:
            return
        market = _Market(
            definition,
            [(ts, definition.status)],
            basis=marks.BasisWindow(self.config.mark_rounds),
        )
        if definition.kind is MarketKind.PERPETUAL:
            market.next_start = funding.first_interval_after(ts, self.config.interval_s)[0]
            market.funding_sent_until = market.next_start
        self.markets[definition.market] = market

    def _rejected(self, market: _Market, refused_id: str) -> None:
        """The matcher refused one of our commands: resolve what it was for (no endless resends)."""
        if refused_id == command_id("funding", market.symbol, market.next_start):
            market.next_start += self.config.interval_s * US_PER_S
            self._prune_marks(market)

    @staticmethod
    def _marked(market: _Market, ts: int, event: MarkPriceSet) -> None:
        """Perpetuals keep their marks until funded (the TWAPs); others only the latest (the index
        for option implied vols, and the readiness of nothing else)."""
        if market.definition.kind is MarketKind.PERPETUAL:
            market.mark_log.append((ts, event.mark_price, event.index_price))
        else:
            market.mark_log = [(ts, event.mark_price, event.index_price)]

    @staticmethod
    def _prune_marks(market: _Market) -> None:
        """Drop a perpetual's marks before the last one at or before `next_start` (it still holds
        there): no interval that starts before it will be funded."""
        horizon = market.next_start
        keep_from = 0
        for i, (ts, _, _) in enumerate(market.mark_log):
            if ts <= horizon:
                keep_from = i
        if keep_from:
            del market.mark_log[:keep_from]

    def _implied_vol(self, market: _Market, trade: TradeExecuted, ts: int) -> ImpliedVolObserved | None:
        definition = market.definition
        if definition.kind is not MarketKind.OPTION:
            return None
        assert definition.strike is not None and definition.option_type is not None
        assert definition.expiry is not None
        index = self._underlying_ticks(market)
        if index is None:
            return None
        t_years = black76.year_fraction(ts, definition.expiry)
        result = black76.implied_vol(
            definition.option_type, float(trade.price), float(index), float(definition.strike), t_years
        )
        return ImpliedVolObserved(
            market=market.symbol,
            trade_id=trade.trade_id,
            ts_event=ts,
            trade_price=trade.price,
            index_price=index,
            strike=definition.strike,
            option_type=definition.option_type,
            t_years=t_years,
            implied_vol=result.vol,
            failure=result.failure,
        )

    def _underlying_ticks(self, market: _Market) -> int | None:
        """The underlying as the log last recorded it for this market, else the latest oracle round
        read (an option traded before its first mark)."""
        if market.mark_log:
            return market.mark_log[-1][2]
        index = self.indexes.get(market.definition.index_symbol or "")
        latest = index.latest if index is not None else None
        return None if latest is None else index_to_ticks(latest[1], market.definition.tick_size_e9)

    # -- the clock ---------------------------------------------------------------------------------

    def on_tick(self, now_us: int) -> list[MatcherCommand]:
        """Everything due at `now_us`, market by market in symbol order: mark, funding, settlement."""
        commands: list[MatcherCommand] = []
        for symbol in sorted(self.markets):
            market = self.markets[symbol]
            if market.status in CLOSED:
                continue
            commands += self._mark(market, now_us)
            if market.definition.kind is MarketKind.PERPETUAL:
                commands += self._funding(market, now_us)
            else:
                commands += self._settlement(market, now_us)
        return commands

    def _mark(self, market: _Market, now_us: int) -> list[MatcherCommand]:
        definition = market.definition
        index = self.indexes.get(definition.index_symbol or "")
        latest = index.latest if index is not None else None
        if latest is None or latest[0] <= market.marked_round:
            return []
        if now_us - latest[0] > self.config.mark_max_age_s * US_PER_S:
            return []  # a stale round (e.g. replayed after downtime) is no mark for now
        if definition.expiry is not None and now_us >= definition.expiry:
            return []  # expired: settlement, not marks
        round_ts, price_e9 = latest
        index_ticks = index_to_ticks(price_e9, definition.tick_size_e9)
        if index_ticks <= 0:
            return []
        market.marked_round = round_ts
        mark = self._mark_price(market, index_ticks, now_us)
        body = SetMarkPrice(mark_price=mark, index_price=index_ticks)
        return [self._command("mark", market.symbol, round_ts, now_us, body)]

    def _mark_price(self, market: _Market, index_ticks: int, now_us: int) -> int:
        definition = market.definition
        if definition.kind is not MarketKind.OPTION:
            return marks.perp_mark(index_ticks, market.basis, self.config.mark_clamp_bps)
        assert definition.strike is not None and definition.option_type is not None
        assert definition.expiry is not None
        depth = self.depth.market(market.symbol)
        return marks.option_mark(
            definition.option_type,
            bid=depth.best_bid() if depth is not None else None,
            ask=depth.best_ask() if depth is not None else None,
            index_ticks=index_ticks,
            strike_ticks=definition.strike,
            t_years=black76.year_fraction(now_us, definition.expiry),
            vol=self.config.vol_for(definition.index_symbol or ""),
            max_spread_bps=self.config.option_max_spread_bps,
        ).price

    def _funding(self, market: _Market, now_us: int) -> list[MatcherCommand]:
        """ApplyFunding for every ready interval the log does not show resolved (in order)."""
        length = self.config.interval_s * US_PER_S
        resend = now_us - market.funding_sent_at >= self.config.resend_after_s * US_PER_S
        commands: list[MatcherCommand] = []
        start = market.next_start
        last_mark = market.mark_log[-1][0] if market.mark_log else None
        for _ in range(MAX_INTERVALS_PER_TICK):
            end = start + length
            if end > now_us or last_mark is None or last_mark < end:
                break  # not over, or the log does not yet hold every mark of it
            body = self._funding_body(market, start, end)
            if body is None:
                if start == market.next_start:  # skipped: not ACTIVE at its end, or no prices
                    market.next_start = end
            elif end > market.funding_sent_until or resend:
                commands.append(self._command("funding", market.symbol, start, now_us, body))
            start = end
        if commands:
            market.funding_sent_until = max(market.funding_sent_until, start)
            market.funding_sent_at = now_us
        return commands

    def _funding_body(self, market: _Market, start: int, end: int) -> ApplyFunding | None:
        """The interval's ApplyFunding from the log's marks; None if it is not to be funded."""
        if market.status_before(end) is not MarketStatus.ACTIVE:
            return None
        mark_twap = twap([(ts, mark) for ts, mark, _ in market.mark_log], start, end)
        index_twap = twap([(ts, index) for ts, _, index in market.mark_log], start, end)
        held = [index for ts, _, index in market.mark_log if ts < end]
        if mark_twap is None or index_twap is None or not held or index_twap <= 0:
            return None
        return ApplyFunding(
            interval_start=start,
            interval_end=end,
            rate_e9=funding.funding_rate_e9(mark_twap, index_twap, self.config.cap_e9),
            index_price=held[-1],
            mark_twap=mark_twap,
            index_twap=index_twap,
        )

    def _settlement(self, market: _Market, now_us: int) -> list[MatcherCommand]:
        """SettleMarket once expiry has passed and the oracle has published a round at or after it."""
        definition = market.definition
        if definition.expiry is None or now_us < definition.expiry:
            return []
        resend_us = self.config.resend_after_s * US_PER_S
        if market.settle_sent_at is not None and now_us - market.settle_sent_at < resend_us:
            return []
        symbol = definition.index_symbol or ""
        index = self.indexes.get(symbol)
        latest = index.latest if index is not None else None
        if index is None or latest is None or latest[0] < definition.expiry:
            return []  # a round before expiry may still be on its way
        ticks = [(ts, index_to_ticks(p, definition.tick_size_e9)) for ts, p in index.samples]
        price = expiry.settlement_price(ticks, definition.expiry, self.config.settlement_window_s)
        if price is None or price <= 0:
            return []
        market.settle_sent_at = now_us
        body = SettleMarket(
            settlement_price=price, method=expiry.settlement_method(symbol, self.config.settlement_window_s)
        )
        return [self._command("settle", market.symbol, 0, now_us, body)]

    def _on_index(self, symbol: str) -> list[_Market]:
        return [m for m in self.markets.values() if m.definition.index_symbol == symbol]

    @staticmethod
    def _command(
        kind: str, market: str, at: int, now_us: int, body: SetMarkPrice | ApplyFunding | SettleMarket
    ) -> MatcherCommand:
        return MatcherCommand(
            command_id=command_id(kind, market, at), market=market, trader=None, ts_init=now_us, body=body
        )
