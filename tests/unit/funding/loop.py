"""A closed loop for scheduler tests: the scheduler's commands go through the real matching engine,
and the engine's trade-log entries come back to the scheduler, as on the topics."""

from __future__ import annotations

from dataclasses import dataclass, field

from msgspec import structs

from services.common.presets import preset
from services.common.records import (
    CreateMarket,
    MarketDefinition,
    MarketKind,
    MatcherCommand,
    OptionType,
    Side,
    TradeLogEntry,
)
from services.funding.core.scheduler import (
    ImpliedVolObserved,
    IndexObserved,
    Scheduler,
    SchedulerConfig,
)
from services.matcher.core.engine import MatchingEngine, log_entry
from tests.kit import limit_order

T0 = 1_795_392_000_000_000  # 2026-11-23T00:00:00Z: on every interval boundary used here
S = 1_000_000  # µs per second
USD_65000_E9 = 65_000 * 10**9  # 650,000 ticks of 0.1 USD

BTC_PERP = preset("BTC-PERP")


def btc_future(expiry: int) -> MarketDefinition:
    """BTC-20261123: a dated future on BTC-USD, the perpetual's grid."""
    return structs.replace(BTC_PERP, market="BTC-20261123", kind=MarketKind.FUTURE, expiry=expiry)


def btc_option(expiry: int, strike: int, option_type: OptionType) -> MarketDefinition:
    """A European BTC-USD option on the perpetual's tick grid (strike in ticks)."""
    suffix = "C" if option_type is OptionType.CALL else "P"
    return structs.replace(
        BTC_PERP, market=f"BTC-20261123-{strike}-{suffix}", kind=MarketKind.OPTION, expiry=expiry,
        strike=strike, option_type=option_type,
    )  # fmt: skip


@dataclass
class Loop:
    """The scheduler, the engine and the log between them (kept, to rebuild a new scheduler)."""

    config: SchedulerConfig = field(default_factory=lambda: SchedulerConfig(interval_s=2))
    scheduler: Scheduler = field(init=False)
    engine: MatchingEngine = field(default_factory=MatchingEngine)
    log: list[IndexObserved | TradeLogEntry] = field(default_factory=list)
    sent: list[MatcherCommand] = field(default_factory=list)
    vols: list[ImpliedVolObserved] = field(default_factory=list)
    offset: int = 0
    orders: int = 0

    def __post_init__(self) -> None:
        self.scheduler = Scheduler(self.config)

    def list_market(self, definition: MarketDefinition, at: int = T0) -> None:
        self.submit(
            MatcherCommand(
                command_id=f"list-{definition.market}", market=definition.market, trader=None, ts_init=at,
                body=CreateMarket(definition=definition),
            )
        )  # fmt: skip

    def order(self, market: str, trader: str, side: Side, size: int, price: int, *, at: int) -> None:
        self.orders += 1
        body = limit_order(self.orders, side, size, price, market=market)
        self.submit(
            MatcherCommand(command_id=f"o{self.orders}", market=market, trader=trader, ts_init=at, body=body)
        )

    def index(self, at: int, price_e9: int | None = USD_65000_E9, symbol: str = "BTC-USD") -> None:
        round_ = IndexObserved(symbol, at, price_e9)
        self.log.append(round_)
        self.scheduler.apply(round_)

    def tick(self, now: int) -> list[MatcherCommand]:
        """The scheduler's commands at `now`, each sent through the engine; returns them."""
        commands = self.scheduler.on_tick(now)
        for command in commands:
            self.sent.append(command)
            self.submit(command)
        return commands

    def submit(self, command: MatcherCommand) -> TradeLogEntry:
        entry = log_entry(command, self.engine.apply(command), f"matcher.commands:0:{self.offset}")
        self.offset += 1
        self.log.append(entry)
        self.vols += self.scheduler.apply(entry).implied_vols
        return entry

    def run(self, start: int, end: int, *, price_e9: int = USD_65000_E9) -> None:
        """An oracle round and a tick every second in [start, end)."""
        for at in range(start, end, S):
            self.index(at, price_e9)
            self.tick(at)

    def restart(self) -> None:
        """A new scheduler rebuilt from the log alone (what the service does after a crash)."""
        self.scheduler = Scheduler(self.config)
        for item in self.log:
            self.scheduler.apply(item)

    def entries(self, kind: type) -> list[tuple[TradeLogEntry, object]]:
        return [
            (item, event)
            for item in self.log
            if isinstance(item, TradeLogEntry)
            for event in item.events
            if isinstance(event, kind)
        ]
