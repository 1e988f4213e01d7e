"""`cxpt`: human units in, signed commands out (through the real gateway app), clear errors."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from services.client import cli, keys
from services.common.codes import RiskReject
from services.common.records import RequestWithdrawal, Side, TimeInForce
from services.gateway.outcomes import PENDING, OrderStatus, Outcome
from tests.unit.client.fakes import GATEWAY_URL, Exchange
from tests.unit.gateway.kit import ALICE, ALICE_KEY


@pytest.fixture(autouse=True)
def alice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Alice's raw key in the environment; HOME elsewhere, so no real keystore is ever touched."""
    monkeypatch.setenv(keys.ENV_PRIVATE_KEY, ALICE_KEY)
    monkeypatch.delenv(keys.ENV_PASSWORD, raising=False)
    monkeypatch.delenv(cli.ENV_GATEWAY, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def run(exchange: Exchange, *argv: str) -> int:
    return cli.main(["--gateway", GATEWAY_URL, *argv], http=exchange.http())


def test_a_limit_order_in_human_units_is_signed_in_ticks_and_lots(
    exchange: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run(exchange, "order", "limit", "BTC-PERP", "buy", "0.003", "65000.5", "--post-only")

    assert status == 0
    (order,) = exchange.sender.placed()
    assert (order.side, order.size, order.price, order.post_only) == (Side.BUY, 3, 650_005, True)
    out = capsys.readouterr().out
    assert "RESTING" in out and order.order_id in out and "0.003" in out


def test_raw_ticks_and_lots_need_no_market_lookup(exchange: Exchange) -> None:
    status = run(
        exchange, "order", "limit", "BTC-PERP", "sell", "7", "650010", "--lots", "--ticks", "--tif", "ioc"
    )

    assert status == 0
    (order,) = exchange.sender.placed()
    assert (order.side, order.size, order.price, order.time_in_force) == (
        Side.SELL,
        7,
        650_010,
        TimeInForce.IOC,
    )
    assert not [r for r in exchange.transport.delivered if r.url.path == "/markets"]


def test_an_off_grid_price_is_refused_before_signing(
    exchange: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run(exchange, "order", "limit", "BTC-PERP", "buy", "0.003", "65000.05")

    assert status == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "65000.05" in err and "0.1" in err and "--ticks" in err
    assert exchange.sender.sent == []


def test_a_market_order_with_its_protective_price(exchange: Exchange) -> None:
    assert run(exchange, "order", "market", "ETH-PERP", "sell", "0.5", "2999.99", "--tif", "FOK") == 0

    (order,) = exchange.sender.placed()
    assert (order.size, order.price, order.time_in_force) == (50, 299_999, TimeInForce.FOK)


def test_a_gtt_order_takes_an_iso_expiry(exchange: Exchange) -> None:
    args = ["order", "limit", "BTC-PERP", "buy", "0.001", "60000", "--tif", "GTT", "--expire-at"]
    assert run(exchange, *args, "2030-01-01T00:00:00") == 0

    assert exchange.sender.placed()[0].expire_at == 1_893_456_000_000_000


def test_cancel_and_cancel_all(exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(exchange, "cancel", "BTC-PERP", "01a205b3-d000-7000-8000-000000000001") == 0
    assert run(exchange, "cancel", "BTC-PERP", "my-quote-7", "--client-id") == 0
    assert run(exchange, "cancel-all", "--market", "ETH-PERP", "--side", "sell") == 0

    cancel, by_client_id, cancel_all = (c.body for c in exchange.sender.sent)
    assert cancel.order_id == "01a205b3-d000-7000-8000-000000000001"  # type: ignore[union-attr]
    assert by_client_id.client_order_id == "my-quote-7"  # type: ignore[union-attr]
    assert (cancel_all.market, cancel_all.side) == ("ETH-PERP", Side.SELL)  # type: ignore[union-attr]
    assert "ACCEPTED" in capsys.readouterr().out


def test_withdraw_takes_usdc(exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(exchange, "withdraw", "12.5", "--cxpt") == 0

    body = exchange.sender.sent[0].body
    assert isinstance(body, RequestWithdrawal)
    assert (body.amount, body.as_cxpt) == (12_500_000, True)
    assert "12.500000 USDC" in capsys.readouterr().out


def test_pending_is_success_with_a_note(exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    exchange.sender.decide = lambda _: PENDING

    assert run(exchange, "order", "limit", "BTC-PERP", "buy", "0.001", "60000") == 0
    assert "not known yet" in capsys.readouterr().out


def test_a_refusal_prints_code_message_and_hint_and_exits_1(
    exchange: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    exchange.sender.decide = lambda _: Outcome(
        OrderStatus.REJECTED, code=int(RiskReject.INSUFFICIENT_COLLATERAL), reason="needs 195 USDC"
    )

    status = run(exchange, "order", "limit", "BTC-PERP", "buy", "0.003", "65000.5")

    captured = capsys.readouterr()
    assert status == cli.EXIT_REFUSED
    assert "INSUFFICIENT_COLLATERAL (2001, HTTP 422): needs 195 USDC" in captured.err
    assert "hint: not enough free collateral" in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_an_unreachable_gateway_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    status = cli.main(["markets"], http=httpx.Client(transport=httpx.MockTransport(down)))

    err = capsys.readouterr().err
    assert status == cli.EXIT_UNREACHABLE
    assert "UNREACHABLE" in err and cli.DEFAULT_GATEWAY in err and "CXPT_GATEWAY_URL" in err


def test_the_gateway_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, exchange: Exchange) -> None:
    monkeypatch.setenv(cli.ENV_GATEWAY, "http://elsewhere.test:9000")

    assert cli.main(["markets"], http=exchange.http()) == 0
    assert exchange.transport.delivered[0].url.host == "elsewhere.test"


def test_markets_table(exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(exchange, "markets") == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["MARKET", "KIND", "STATUS", "TICK"]
    assert lines[1].split()[:5] == ["BTC-PERP", "PERPETUAL", "ACTIVE", "0.1", "0.001"]


def test_json_output_is_machine_readable(exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(exchange, "markets", "--json") == 0

    markets = json.loads(capsys.readouterr().out)
    assert [(m["market"], m["tick_size_e9"]) for m in markets] == [
        ("BTC-PERP", 100_000_000),
        ("ETH-PERP", 10_000_000),
    ]


def test_orders_show_human_units_and_every_page_with_all(
    exchange: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    exchange.reads.order_rows += [
        {"trader": ALICE, "market": "BTC-PERP", "order_id": f"00000000-0000-7000-8000-{n:012x}",
         "side": "BUY", "price": 650_005, "size": 3, "cum_qty": 1, "status": "PARTIALLY_FILLED",
         "client_order_id": f"c{n}"}
        for n in range(120)
    ]  # fmt: skip

    assert run(exchange, "orders", "--limit", "100") == 0
    first_page = capsys.readouterr().out
    assert run(exchange, "--json", "orders", "--all") == 0
    every = json.loads(capsys.readouterr().out)

    assert "65000.5" in first_page and "0.003" in first_page and "--all" in first_page
    assert len(first_page.splitlines()) == 1 + 100 + 1
    assert len(every["orders"]) == 120 and every["nextCursor"] is None


def test_balance_and_positions(exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    exchange.reads.balances[ALICE] = {
        "trader": ALICE,
        "free": 1_250_000,
        "reserved": 0,
        "withdrawing": 0,
        "locked": 0,
    }
    exchange.reads.position_rows.append(
        {"trader": ALICE, "market": "BTC-PERP", "size": 3, "basis": 195_001_500, "collateral": 0,
         "realized_pnl": -500, "last_px": 650_010}
    )  # fmt: skip

    assert run(exchange, "balance") == 0
    assert run(exchange, "positions") == 0

    out = capsys.readouterr().out
    assert "1.250000 USDC" in out
    assert ["BTC-PERP", "0.003", "65000.5", "65001", "-0.000500", "0.000000"] in [
        line.split() for line in out.splitlines()
    ]


def test_info_shows_the_domain(exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(exchange, "info") == 0

    out = capsys.readouterr().out
    assert "31337" in out and "CXPT Exchange v1" in out and "ms from your clock" in out


def test_key_new_writes_a_private_keystore_and_never_prints_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(keys.ENV_PRIVATE_KEY)
    monkeypatch.setenv(keys.ENV_PASSWORD, "correct horse")
    path = tmp_path / "k" / "key.json"

    assert cli.main(["key", "new", "--path", str(path)]) == 0
    made = capsys.readouterr().out
    assert cli.main(["key", "show", "--path", str(path)]) == 0
    shown = capsys.readouterr().out
    again = cli.main(["key", "new", "--path", str(path)])

    account = keys.load_keystore(path, "correct horse")
    address = account.address.lower()
    assert address in made and address in shown
    assert account.key.hex() not in made + shown
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert again == cli.EXIT_USAGE and "--force" in capsys.readouterr().err


def test_key_show_with_a_raw_key_shows_its_address_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["key", "show"]) == 0

    out = capsys.readouterr().out
    assert ALICE in out and ALICE_KEY[2:] not in out


def test_no_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(keys.ENV_PRIVATE_KEY)

    assert cli.main(["balance"]) == cli.EXIT_USAGE
    assert "cxpt key new" in capsys.readouterr().err


def test_bad_arguments_exit_2_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["order", "limit", "BTC-PERP", "hold", "1", "2"])

    assert exited.value.code == 2
    assert "buy or sell" in capsys.readouterr().err
