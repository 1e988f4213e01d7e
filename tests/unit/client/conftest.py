"""Fixtures: the real gateway app over fakes (`fakes.Exchange`), a client signing as Alice, and
a handle on the gateway's clock."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from services.client import CxptClient
from tests.unit.client.fakes import GATEWAY_URL, Exchange
from tests.unit.gateway.kit import ALICE_KEY


class GatewayClock:
    """The gateway's clock (`services.gateway.app._now_us`), moved by `advance` (the rate limiter,
    deadlines and nonces all read it). The client's own clock stays the real one."""

    def __init__(self) -> None:
        self.offset_us = 0

    def now_us(self) -> int:
        return time.time_ns() // 1_000 + self.offset_us

    def advance(self, seconds: float) -> None:
        self.offset_us += int(seconds * 1_000_000)


@pytest.fixture
def gateway_clock(monkeypatch: pytest.MonkeyPatch) -> GatewayClock:
    clock = GatewayClock()
    monkeypatch.setattr("services.gateway.app._now_us", clock.now_us)
    return clock


@pytest.fixture
def exchange() -> Exchange:
    return Exchange()


@pytest.fixture
def client(exchange: Exchange) -> Iterator[CxptClient]:
    with CxptClient(GATEWAY_URL, ALICE_KEY, http=exchange.http()) as alice:
        yield alice
