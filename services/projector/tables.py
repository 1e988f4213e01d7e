"""The read model's Cassandra shape: statements for the writes of `views`, rows back from results.

Tables: `services/common/stores/migrations/cassandra/0003_read_model.cql`. The core speaks
microseconds; Cassandra timestamps hold milliseconds (like `account_events_by_trader`), so times
are truncated to the millisecond on the way in. Absent values are left unset, never written as
null: no column goes back to null, and a null would be a tombstone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.query import UNSET_VALUE, PreparedStatement

from services.common.lifecycle import OrderStatus
from services.common.records import MarketKind, MarketStatus, OptionType, OrderType, Side, TimeInForce
from services.common.stores import cassandra
from services.projector.views import (
    BalanceRow,
    BalanceUpsert,
    MarketFundingUpdate,
    MarketMarkUpdate,
    MarketProgress,
    MarketRow,
    MarketSettlementUpdate,
    MarketStatusUpdate,
    MarketUpsert,
    OpenOrderDelete,
    OpenOrderUpsert,
    OrderRow,
    OrderUpsert,
    PositionRow,
    PositionUpsert,
    Write,
)

ORDER_COLUMNS = (
    "order_id", "trader", "market", "client_order_id", "side", "order_type", "price", "size",
    "time_in_force", "post_only", "reduce_only", "expire_at", "status", "rested", "cum_qty",
    "leaves_qty", "avg_px_num", "last_px", "fees_paid", "reason_code", "reason", "created_at",
    "updated_at", "last_seq",
)  # fmt: skip
MARKET_COLUMNS = (
    "market", "kind", "base_asset", "quote_asset", "quote_per_tick_lot", "tick_size_e9", "lot_size_e9",
    "min_size", "maker_fee_bps", "taker_fee_bps", "expiry", "strike", "option_type", "index_symbol",
    "status", "status_reason", "status_changed_at", "created_at", "last_seq", "updated_at",
    "mark_price", "index_price", "marked_at", "funding_rate_e9", "funded_until", "settlement_price",
)  # fmt: skip
BALANCE_COLUMNS = ("trader", "asset", "free", "reserved", "withdrawing", "locked", "updated_at", "version")
POSITION_COLUMNS = (
    "trader", "market", "size", "basis", "collateral", "realized_pnl", "last_px", "last_trade_id",
    "updated_at", "version",
)  # fmt: skip
Bound = tuple[PreparedStatement, tuple[Any, ...]]
"""A prepared statement and the values to bind."""
_TIMES = frozenset(
    {"expire_at", "created_at", "updated_at", "expiry", "status_changed_at", "marked_at", "funded_until"}
)


def ms(ts_us: int | None) -> Any:
    """A microsecond time as the driver's timestamp value (milliseconds), unset when absent."""
    return UNSET_VALUE if ts_us is None else ts_us // 1000


def select(columns: Sequence[str]) -> str:
    """A select list returning timestamps as integer milliseconds (no float on the way out)."""
    return ", ".join(f"toUnixTimestamp({c}) AS {c}" if c in _TIMES else c for c in columns)


def _us(value: int | None) -> int | None:
    return None if value is None else value * 1000


def _text(value: object) -> Any:
    return UNSET_VALUE if value is None else str(value)


def _int(value: int | None) -> Any:
    return UNSET_VALUE if value is None else value


def order_values(row: OrderRow) -> tuple[Any, ...]:
    """The bound values of `ORDER_COLUMNS` for an order row."""
    return (
        row.order_id, row.trader, _text(row.market), _text(row.client_order_id), _text(row.side),
        _text(row.order_type), _int(row.price), _int(row.size), _text(row.time_in_force), row.post_only,
        row.reduce_only, ms(row.expire_at), str(row.status), row.rested, row.cum_qty, row.leaves_qty,
        row.avg_px_num, _int(row.last_px), row.fees_paid, _int(row.reason_code), _text(row.reason),
        ms(row.created_at), ms(row.updated_at), row.last_seq,
    )  # fmt: skip


def order_row(r: Any) -> OrderRow:
    """An order row from a result row selected with `select(ORDER_COLUMNS)`."""
    return OrderRow(
        order_id=r.order_id,
        trader=r.trader,
        market=r.market,
        client_order_id=r.client_order_id,
        side=None if r.side is None else Side(r.side),
        order_type=None if r.order_type is None else OrderType(r.order_type),
        price=r.price,
        size=r.size,
        time_in_force=None if r.time_in_force is None else TimeInForce(r.time_in_force),
        post_only=bool(r.post_only),
        reduce_only=bool(r.reduce_only),
        expire_at=_us(r.expire_at),
        status=OrderStatus(r.status),
        rested=bool(r.rested),
        cum_qty=r.cum_qty,
        leaves_qty=r.leaves_qty,
        avg_px_num=r.avg_px_num,
        last_px=r.last_px,
        fees_paid=r.fees_paid,
        reason_code=r.reason_code,
        reason=r.reason,
        created_at=r.created_at * 1000,
        updated_at=r.updated_at * 1000,
        last_seq=r.last_seq,
    )


def market_row(r: Any) -> MarketRow:
    """A market row from a result row selected with `select(MARKET_COLUMNS)`."""
    return MarketRow(
        market=r.market,
        kind=MarketKind(r.kind),
        base_asset=r.base_asset,
        quote_asset=r.quote_asset,
        quote_per_tick_lot=r.quote_per_tick_lot,
        tick_size_e9=r.tick_size_e9,
        lot_size_e9=r.lot_size_e9,
        min_size=r.min_size,
        maker_fee_bps=r.maker_fee_bps,
        taker_fee_bps=r.taker_fee_bps,
        expiry=_us(r.expiry),
        strike=r.strike,
        option_type=None if r.option_type is None else OptionType(r.option_type),
        index_symbol=r.index_symbol,
        status=MarketStatus(r.status),
        status_reason=r.status_reason,
        status_changed_at=r.status_changed_at * 1000,
        created_at=r.created_at * 1000,
        mark_price=r.mark_price,
        index_price=r.index_price,
        marked_at=_us(r.marked_at),
        funding_rate_e9=r.funding_rate_e9,
        funded_until=_us(r.funded_until),
        settlement_price=r.settlement_price,
        last_seq=r.last_seq or 0,
        updated_at=(r.updated_at or r.created_at) * 1000,
    )


def balance_row(r: Any) -> BalanceRow:
    return BalanceRow(
        r.trader, r.asset, r.free, r.reserved, r.withdrawing, r.locked, r.updated_at * 1000, r.version
    )


def position_row(r: Any) -> PositionRow:
    return PositionRow(
        trader=r.trader,
        market=r.market,
        size=r.size,
        basis=r.basis,
        collateral=r.collateral,
        realized_pnl=r.realized_pnl,
        last_px=r.last_px,
        last_trade_id=r.last_trade_id,
        updated_at=r.updated_at * 1000,
        version=r.version,
    )


class Writer:
    """Prepared, timestamped statements for every kind of `Write`, executed asynchronously."""

    def __init__(self, session: Session, keyspace: str) -> None:
        self._session = session

        def prepare(cql: str) -> PreparedStatement:
            statement = session.prepare(cql)
            statement.consistency_level = ConsistencyLevel.LOCAL_QUORUM
            return statement

        def insert(table: str, columns: Sequence[str]) -> PreparedStatement:
            marks = ", ".join("?" for _ in columns)
            return prepare(
                f"INSERT INTO {keyspace}.{table} ({', '.join(columns)}) VALUES ({marks}) USING TIMESTAMP ?"
            )

        self._order_by_id = insert("orders_by_id", ORDER_COLUMNS)
        self._order_by_trader = insert("orders_by_trader", ORDER_COLUMNS)
        self._open_order = insert("open_orders_by_market", ORDER_COLUMNS)
        self._drop_open_order = prepare(
            f"DELETE FROM {keyspace}.open_orders_by_market USING TIMESTAMP ? "
            "WHERE market = ? AND order_id = ?"
        )
        # A listing writes its parameters and status; the rest of the row comes from later events.
        listing = (
            *MARKET_COLUMNS[: MARKET_COLUMNS.index("status_reason")],
            "status_changed_at",
            "created_at",
        )
        self._market = insert("markets", listing)
        self._market_status = prepare(
            f"UPDATE {keyspace}.markets USING TIMESTAMP ? "
            "SET status = ?, status_reason = ?, status_changed_at = ? WHERE market = ?"
        )
        self._market_mark = prepare(
            f"UPDATE {keyspace}.markets USING TIMESTAMP ? "
            "SET mark_price = ?, index_price = ?, marked_at = ? WHERE market = ?"
        )
        self._market_funding = prepare(
            f"UPDATE {keyspace}.markets USING TIMESTAMP ? "
            "SET funding_rate_e9 = ?, funded_until = ? WHERE market = ?"
        )
        self._market_settlement = prepare(
            f"UPDATE {keyspace}.markets USING TIMESTAMP ? SET settlement_price = ? WHERE market = ?"
        )
        self._market_progress = prepare(
            f"UPDATE {keyspace}.markets USING TIMESTAMP ? SET last_seq = ?, updated_at = ? WHERE market = ?"
        )
        self._balance = insert("balances_by_trader", BALANCE_COLUMNS)
        self._position = insert("positions_by_trader", POSITION_COLUMNS)
        self._load = prepare(
            f"SELECT {select(ORDER_COLUMNS)} FROM {keyspace}.orders_by_id WHERE order_id = ?"
        )
        self._dispatch: dict[type[Any], Callable[[Any], list[Bound]]] = {
            OrderUpsert: self._order,
            OpenOrderUpsert: self._open_order_upsert,
            OpenOrderDelete: self._open_order_delete,
            MarketUpsert: self._market_upsert,
            MarketStatusUpdate: self._market_status_update,
            MarketMarkUpdate: lambda w: [
                (self._market_mark, (w.version, w.mark_price, w.index_price, ms(w.marked_at), w.market))
            ],
            MarketFundingUpdate: lambda w: [
                (self._market_funding, (w.version, w.rate_e9, ms(w.funded_until), w.market))
            ],
            MarketSettlementUpdate: lambda w: [
                (self._market_settlement, (w.version, w.settlement_price, w.market))
            ],
            MarketProgress: self._market_progress_update,
            BalanceUpsert: self._balance_upsert,
            PositionUpsert: self._position_upsert,
        }

    def statements(self, write: Write) -> list[Bound]:
        """The statements (with their bound values) that carry out one write."""
        return self._dispatch[type(write)](write)

    def _order(self, write: OrderUpsert) -> list[Bound]:
        values = (*order_values(write.row), write.version)
        return [(self._order_by_id, values), (self._order_by_trader, values)]

    def _open_order_upsert(self, write: OpenOrderUpsert) -> list[Bound]:
        return [(self._open_order, (*order_values(write.row), write.version))]

    def _open_order_delete(self, write: OpenOrderDelete) -> list[Bound]:
        return [(self._drop_open_order, (write.version, write.market, write.order_id))]

    def _market_upsert(self, write: MarketUpsert) -> list[Bound]:
        d = write.definition
        values = (
            d.market, str(d.kind), d.base_asset, d.quote_asset, d.quote_per_tick_lot, d.tick_size_e9,
            d.lot_size_e9, d.min_size, d.maker_fee_bps, d.taker_fee_bps, ms(d.expiry), _int(d.strike),
            _text(d.option_type), _text(d.index_symbol), str(d.status), ms(write.created_at),
            ms(write.created_at), write.version,
        )  # fmt: skip
        return [(self._market, values)]

    def _market_status_update(self, write: MarketStatusUpdate) -> list[Bound]:
        values = (write.version, str(write.status), write.reason, ms(write.changed_at), write.market)
        return [(self._market_status, values)]

    def _market_progress_update(self, write: MarketProgress) -> list[Bound]:
        values = (write.version, write.last_seq, ms(write.updated_at), write.market)
        return [(self._market_progress, values)]

    def _balance_upsert(self, write: BalanceUpsert) -> list[Bound]:
        b = write.row
        values = (b.trader, b.asset, b.free, b.reserved, b.withdrawing, b.locked, ms(b.updated_at))
        return [(self._balance, (*values, b.version, b.version))]

    def _position_upsert(self, write: PositionUpsert) -> list[Bound]:
        p = write.row
        values = (
            p.trader, p.market, p.size, p.basis, p.collateral, p.realized_pnl, p.last_px, p.last_trade_id,
            ms(p.updated_at), p.version, p.version,
        )  # fmt: skip
        return [(self._position, values)]

    def execute(self, writes: Iterable[Write]) -> int:
        """Send every write's statements at once, one unlogged batch per partition, then wait for all;
        returns how many statements were sent. Raises the first failure (after every request has
        finished, so none is left in flight)."""
        statements = [bound for write in writes for bound in self.statements(write)]
        cassandra.execute_grouped(self._session, statements)
        return len(statements)

    def load_orders(self, order_ids: Iterable[str]) -> list[OrderRow]:
        """The stored state of these orders (those the store has)."""
        futures = [self._session.execute_async(self._load, (order_id,)) for order_id in order_ids]
        return [order_row(r) for future in futures for r in future.result()]
