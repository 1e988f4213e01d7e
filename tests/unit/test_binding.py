"""Generated bindings: in step with the schemas, and exact both ways through the wire format."""

from services.common import codegen
from services.common.binding import from_avro, to_avro
from services.common.records import (
    CancelAllOrders,
    CreateMarket,
    MatcherCommand,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
)
from services.common.serde import AvroSerde, ManifestRegistry
from tests.kit import btc_perp


def test_records_py_is_generated_from_the_current_schemas() -> None:
    assert codegen.main(["--check"]) == 0


def test_commands_survive_the_wire_unchanged() -> None:
    serde = AvroSerde(ManifestRegistry(), "MatcherCommand")
    btc = btc_perp()
    commands = [
        MatcherCommand(
            command_id="00000000-0000-7000-8000-000000000001",
            market="BTC-PERP",
            trader=None,
            ts_init=1,
            body=CreateMarket(definition=btc),
        ),
        MatcherCommand(
            command_id="00000000-0000-7000-8000-000000000002",
            market="BTC-PERP",
            trader="0xab",
            ts_init=2,
            body=PlaceOrder(
                market="BTC-PERP",
                order_id="00000000-0000-7000-8000-00000000000a",
                client_order_id="c1",
                side=Side.SELL,
                order_type=OrderType.LIMIT,
                price=650_000,
                size=3,
                time_in_force=TimeInForce.GTC,
                nonce=5,
                signature=b"\x01" * 65,
            ),
        ),
        MatcherCommand(
            command_id="00000000-0000-7000-8000-000000000003",
            market="BTC-PERP",
            trader="0xab",
            ts_init=3,
            body=CancelAllOrders(market=None, side=Side.BUY, nonce=6, signature=b""),
        ),
    ]
    for command in commands:
        assert from_avro(MatcherCommand, serde.decode(serde.encode(to_avro(command)))) == command
