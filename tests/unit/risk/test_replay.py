"""Replay protection in risk, the authority: every signed command runs at most once per trader.

Risk checks each command's nonce (the signer's µs timestamp) against the trader's kept nonces and
the window around the command's `ts_init` before anything else, and spends it whatever happens
next. The rules are `services.common.nonces.ReplayGuard`'s (tested in
tests/unit/gateway/test_nonces.py); here: the codes, the order of checks, what is spent, and
that the trader's part of the guard is bounded and travels with the trader's state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest
from msgspec.structs import replace

from services.common.records import OrderRejected, RequestWithdrawal, Side
from services.risk.core import RiskReject
from services.risk.core.state import export_state, export_trader, import_state
from tests.kit import ALICE, BOB, btc_perp
from tests.unit.risk.exchange import USDC, Exchange, Step

PERP = "BTC-PERP"
DAY = 86_400 * 1_000_000
"""One day in µs."""


def exchange_alice_and_bob_1000_usdc() -> Exchange:
    x = Exchange(btc_perp())
    x.deposit(ALICE, 1_000 * USDC)
    x.deposit(BOB, 1_000 * USDC)
    return x


def _resend(x: Exchange, step: Step) -> Step:
    """The same signed body again, as a new command (another gateway, a retry, an attacker)."""
    return x.submit(step.result.command.trader, step.result.command.body)


# -- every signed command ---------------------------------------------------------------------------


class Signed(NamedTuple):
    name: str
    send: Callable[[Exchange], Step]


SIGNED = [
    Signed("place", lambda x: x.place(ALICE, PERP, Side.BUY, 1, 500_000)),
    Signed("cancel", lambda x: x.cancel(ALICE, PERP, x.place(ALICE, PERP, Side.BUY, 1, 500_000).order_id)),
    Signed("cancel_all", lambda x: x.cancel_all(ALICE, PERP)),
    Signed(
        "amend",
        lambda x: x.amend(ALICE, PERP, x.place(ALICE, PERP, Side.BUY, 1, 500_000).order_id, new_size=2),
    ),
    Signed("withdraw", lambda x: x.withdraw(ALICE, USDC, "w1")),
]


@pytest.mark.parametrize("signed", SIGNED, ids=[s.name for s in SIGNED])
def test_every_signed_command_runs_once_then_is_refused_as_reused(signed: Signed) -> None:
    # State: Alice's command was accepted.
    x = exchange_alice_and_bob_1000_usdc()
    first = signed.send(x)
    assert first.code is None
    state = x.risk.state_hash()

    # Action: the same signed body arrives again, later, as another command.
    again = _resend(x, first)

    # Expectation: NONCE_REUSED on an OrderRejected naming the command's ids, nothing forwarded,
    # nothing changed (a nonce the guard refuses is not spent again).
    rejection = again.result.rejection
    assert isinstance(rejection, OrderRejected)
    assert (rejection.reason_code, rejection.reason) == (2013, "NONCE_REUSED")
    assert rejection.order_id == getattr(first.result.command.body, "order_id", None)
    assert again.result.forward == () and again.result.events == ()
    assert x.risk.state_hash() == state


def test_nonces_are_per_trader() -> None:
    x = exchange_alice_and_bob_1000_usdc()
    alice = x.place(ALICE, PERP, Side.BUY, 1, 500_000)

    bob = x.place(BOB, PERP, Side.BUY, 1, 500_000, nonce=alice.result.command.body.nonce)

    assert bob.code is None


# -- the window around ts_init -----------------------------------------------------------------------


class WindowCase(NamedTuple):
    nonce_minus_ts_init: int
    code: RiskReject | None


@pytest.mark.parametrize(
    "case",
    [
        WindowCase(0, None),
        WindowCase(-2 * DAY, None),
        WindowCase(-2 * DAY - 1, RiskReject.NONCE_TOO_OLD),
        WindowCase(DAY, None),
        WindowCase(DAY + 1, RiskReject.NONCE_TOO_FAR_AHEAD),
    ],
    ids=repr,
)
def test_the_nonce_must_lie_within_2_days_before_and_1_day_after_ts_init(case: WindowCase) -> None:
    x = exchange_alice_and_bob_1000_usdc()

    step = x.place(ALICE, PERP, Side.BUY, 1, 500_000, nonce=x.next_nonce() + case.nonce_minus_ts_init)

    assert step.code == case.code


def test_a_nonce_refused_by_the_window_is_not_spent() -> None:
    # State: Alice's clock runs more than a day ahead; her order is refused.
    x = exchange_alice_and_bob_1000_usdc()
    ahead = x.next_nonce() + DAY + 1
    assert x.place(ALICE, PERP, Side.BUY, 1, 500_000, nonce=ahead).code == RiskReject.NONCE_TOO_FAR_AHEAD

    # Action: the exchange's time catches up; she sends the same signed order again.
    x.now += 2 * DAY
    step = x.place(ALICE, PERP, Side.BUY, 1, 500_000, nonce=ahead)

    # Expectation: now it runs.
    assert step.code is None


def test_beyond_100_out_of_order_a_nonce_below_the_kept_ones_is_too_old() -> None:
    # State: Alice signed 100 commands with increasing nonces, leaving out one early timestamp.
    x = exchange_alice_and_bob_1000_usdc()
    skipped = x.next_nonce()
    x.now += 1
    for _ in range(100):
        assert x.cancel_all(ALICE, PERP).code is None

    # Action: the command signed at the skipped timestamp arrives last.
    step = x.place(ALICE, PERP, Side.BUY, 1, 500_000, nonce=skipped)

    # Expectation: older than all 100 kept: refused (Hyperliquid's rule), though never used.
    assert step.code == RiskReject.NONCE_TOO_OLD


# -- the order of checks, and what a refusal spends ---------------------------------------------------


def test_the_nonce_is_checked_before_anything_else() -> None:
    # State: Alice's order on an unknown market was refused, spending its nonce.
    x = exchange_alice_and_bob_1000_usdc()
    first = x.place(ALICE, "DOGE-PERP", Side.BUY, 1, 500_000)
    assert first.code == RiskReject.UNKNOWN_MARKET

    # Action / Expectation: sent again, the replay is what is reported.
    assert _resend(x, first).code == RiskReject.NONCE_REUSED


def test_a_command_refused_for_collateral_stays_spent_after_a_deposit() -> None:
    """The record-on-refusal rule: a signature is consumed when risk has judged it, whatever the
    verdict, so a refused order cannot come back to life when the trader's balance changes."""
    # State: Alice's 100-lot order (5,025 USDC) was refused for collateral.
    x = exchange_alice_and_bob_1000_usdc()
    refused = x.place(ALICE, PERP, Side.BUY, 100, 500_000)
    assert refused.code == RiskReject.INSUFFICIENT_COLLATERAL

    # Action: she deposits enough; the same signed order is sent again.
    x.deposit(ALICE, 10_000 * USDC)
    again = _resend(x, refused)

    # Expectation: refused as reused; to place it she signs it anew (a new nonce).
    assert again.code == RiskReject.NONCE_REUSED
    assert x.place(ALICE, PERP, Side.BUY, 100, 500_000).code is None


def test_a_withdrawal_refused_as_expired_cannot_be_replayed_under_another_id() -> None:
    x = exchange_alice_and_bob_1000_usdc()
    expired = x.withdraw(ALICE, USDC, "w1", expire_at=x.now)
    assert expired.code == RiskReject.WITHDRAWAL_EXPIRED
    body = expired.result.command.body
    assert isinstance(body, RequestWithdrawal)

    # Action: the same nonce on a fresh body (not a valid signature, but risk checks nonces alone).
    step = x.submit(ALICE, replace(body, withdrawal_id="w2"))

    assert step.code == RiskReject.NONCE_REUSED


# -- the trader's part of the guard: bounded, and part of their state ---------------------------------


def test_a_trader_keeps_at_most_100_nonces_and_forgets_those_older_than_2_days() -> None:
    # State: Alice signed 150 commands.
    x = exchange_alice_and_bob_1000_usdc()
    for _ in range(150):
        x.cancel_all(ALICE, PERP)
    kept = export_trader(x.risk, ALICE)["nonces"]
    assert len(kept["nonces"]) == 100

    # Action: three days later, one more command.
    x.now += 3 * DAY
    last = x.cancel_all(ALICE, PERP)

    # Expectation: only that one is kept, above a floor 2 days before it; the old ones stay refused.
    nonce = last.result.command.body.nonce
    assert export_trader(x.risk, ALICE)["nonces"] == {"floor": nonce - 2 * DAY, "nonces": [nonce]}
    x.risk.validate()


def test_the_nonces_travel_with_the_traders_state() -> None:
    # State: Alice and Bob each signed commands, one refused for collateral.
    x = exchange_alice_and_bob_1000_usdc()
    placed = x.place(ALICE, PERP, Side.BUY, 1, 500_000)
    refused = x.place(BOB, PERP, Side.BUY, 100, 500_000)

    # Action: export and import, as the risk service's changelog does after a crash.
    copy = import_state(*export_state(x.risk))

    # Expectation: the same state hash, and the copy refuses both replays.
    assert copy.state_hash() == x.risk.state_hash()
    x.risk = copy
    assert _resend(x, placed).code == RiskReject.NONCE_REUSED
    assert _resend(x, refused).code == RiskReject.NONCE_REUSED


def test_a_trader_known_only_by_a_nonce_is_exported() -> None:
    # State: Bob, who never deposited, sends an order (refused: no collateral).
    x = Exchange(btc_perp())
    x.place(BOB, PERP, Side.BUY, 1, 500_000)

    _, traders, _ = export_state(x.risk)

    assert [t["trader"] for t in traders] == [BOB]
    assert traders[0]["account"] is None and len(traders[0]["nonces"]["nonces"]) == 1
