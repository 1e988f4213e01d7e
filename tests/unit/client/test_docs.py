"""docs/client.md's market-making loop runs as written (here against the gateway app in-process)."""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import pytest

import services.client
from services.common.records import PlaceOrder
from services.common.settings import REPO_ROOT
from tests.unit.client.fakes import Exchange
from tests.unit.gateway.kit import ALICE, ALICE_KEY

DOC = REPO_ROOT / "docs" / "client.md"


def python_block(containing: str) -> str:
    blocks: list[str] = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    (block,) = [b for b in blocks if containing in b]
    return block


def test_the_market_making_loop_quotes_both_sides_and_leans_on_inventory(
    monkeypatch: pytest.MonkeyPatch, exchange: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    # State: Alice is long 2 lots; the loop's key comes from the environment, its gateway in-process.
    exchange.reads.position_rows.append(
        {"trader": ALICE, "market": "BTC-PERP", "size": 2, "basis": 130_000_000}
    )
    monkeypatch.setenv("CXPT_PRIVATE_KEY", ALICE_KEY)
    real = services.client.CxptClient

    def in_process(url: str, key: Any, **options: Any) -> services.client.CxptClient:
        return real(url, key, http=exchange.http(), **options)

    monkeypatch.setattr(services.client, "CxptClient", in_process)
    monkeypatch.setattr(time, "sleep", lambda _: None)
    monkeypatch.setattr(sys, "argv", ["mm.py", "65000"])

    # Action.
    exec(compile(python_block("def main(reference"), str(DOC), "exec"), {"__name__": "__main__"})

    # Expectation: each round cancels, then quotes 1 lot post-only at 65000 ∓ 5 USDC, 2 ticks lower.
    quotes = [c.body for c in exchange.sender.sent if isinstance(c.body, PlaceOrder)]
    assert {(q.side.value, q.price, q.size, q.post_only) for q in quotes} == {
        ("BUY", 649_948, 1, True),
        ("SELL", 650_048, 1, True),
    }
    assert len(quotes) == 2 * 30
    assert len(exchange.sender.sent) == 3 * 30 + 1  # and a last cancel-all on the way out
    assert "buy  0.001 @ 64994.8: RESTING" in capsys.readouterr().out


def test_every_python_example_compiles() -> None:
    for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL):
        compile(block, str(DOC), "exec")
