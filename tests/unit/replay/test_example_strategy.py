"""The example market maker runs as written through the CLI and produces every report file."""

from __future__ import annotations

import json
from pathlib import Path

from services.replay.cli import main

ROOT = Path(__file__).resolve().parents[3]
STRATEGY = f"{ROOT / 'examples/strategies/market_maker.py'}:MarketMaker"


def test_the_example_market_maker_backtests_a_recorded_log(tmp_path: Path) -> None:
    # State: a recorded trade log (a sample flow through the engine), as docs/replay.md makes one.
    commands, log = tmp_path / "cmds.avro", tmp_path / "log.avro"
    assert main(["sample", "--commands", "3000", "--output", str(commands)]) == 0
    assert main(["engine", "--input", str(commands), "--output", str(log)]) == 0

    # Action: backtest the example strategy on it, twice.
    for run in ("a", "b"):
        argv = ["backtest", "--strategy", STRATEGY, "--data", str(log), "--report", str(tmp_path / run)]
        assert main([*argv, "--param", "size=3", "--deposit", "50000"]) == 0

    # Expectation: the four files; it quoted, got filled as a maker, paid fees; PnL adds up.
    report = tmp_path / "a"
    summary = json.loads((report / "summary.json").read_text())
    assert summary["fills"] > 0 and summary["maker_fills"] == summary["fills"]
    assert summary["fees_micro"] > 0 and summary["deposit_micro"] == 50_000_000_000
    assert summary["total_pnl_micro"] == summary["equity_micro"] - summary["deposit_micro"]
    assert (report / "fills.csv").read_text().count("\n") == summary["fills"] + 1
    assert (report / "equity.csv").read_text().startswith("ts,equity,free,locked,")
    assert (report / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Expectation: deterministic — the second run's numbers and fills are the same.
    assert json.loads((tmp_path / "b" / "summary.json").read_text()) == summary
    assert (tmp_path / "b" / "fills.csv").read_bytes() == (report / "fills.csv").read_bytes()
