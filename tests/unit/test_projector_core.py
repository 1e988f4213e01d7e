"""Projection rows derive only from the record, so re-projecting rewrites identical rows."""

from services.projector.core import account_event_row
from tests.kit import deposit_event, trader_address


def test_deposit_becomes_one_row_keyed_by_its_log_position() -> None:
    event = deposit_event(trader=trader_address(7), amount=2_500_000, n=9)
    row = account_event_row(event)
    assert (row.trader, row.kind, row.amount, row.event_id) == (
        trader_address(7),
        "DepositConfirmed",
        2_500_000,
        "dev:0:9",
    )
    assert row == account_event_row(event)


def test_balance_change_projects_its_change_of_free_usdc() -> None:
    event = {
        "event_id": "orders.commands:0:7:1",
        "trader": trader_address(7),
        "ts_event": 1,
        "body": (
            "exchange.cxpt.BalanceChanged",
            {"trader": trader_address(7), "free": 10, "reserved": 5, "withdrawing": 0, "locked": 0,
             "delta_free": -5, "reason": "ORDER_RESERVED", "ref": "o-1"},
        ),
    }  # fmt: skip
    row = account_event_row(event)
    assert (row.kind, row.amount) == ("BalanceChanged", -5)
    assert "ORDER_RESERVED" in row.detail
