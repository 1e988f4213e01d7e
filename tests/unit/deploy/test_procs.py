"""The launcher's process plumbing: a server started with a timer slack keeps it, we do not."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from deploy.local import procs

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timer slack is Linux's")


def _own_timer_slack() -> int:
    return int(Path(f"/proc/{threading.get_native_id()}/timerslack_ns").read_text())


def _wait_for_line(log: Path, timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = [line for line in log.read_text().splitlines() if line.strip().isdigit()]
        if lines:
            return lines[-1].strip()
        time.sleep(0.05)
    raise AssertionError(f"the child wrote nothing to {log}")


def test_a_server_spawned_with_a_timer_slack_runs_with_it_and_the_launcher_keeps_its_own(
    tmp_path: Path,
) -> None:
    # State: the launcher thread runs with its usual slack.
    launcher_slack = _own_timer_slack()
    log = tmp_path / "child.log"

    # Action: spawn a child that reports its own slack after exec.
    procs.spawn_detached(["/bin/cat", "/proc/self/timerslack_ns"], log, cwd=tmp_path, timer_slack_ns=500_000)

    # Expectation: the child has 500 µs; the launcher thread is back to what it had.
    assert _wait_for_line(log) == "500000"
    assert _own_timer_slack() == launcher_slack


def test_no_timer_slack_leaves_the_child_with_the_launchers() -> None:
    # State / Action: a block with no slack asked for.
    before = _own_timer_slack()
    with procs.timer_slack(None):
        inside = _own_timer_slack()

    # Expectation: nothing changed.
    assert inside == before == _own_timer_slack()
