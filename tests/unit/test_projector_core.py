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
