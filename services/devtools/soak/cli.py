"""`python -m services.devtools.soak`: traffic, SIGKILLs and bad input at once, then the invariants.

    python -m services.devtools.soak                       # 10 minutes, 100 actions/s, a kill every 30 s
    python -m services.devtools.soak --minutes 2 --kill-every 20

Ends with one JSON line (the figures and every invariant's verdict); the exit status is 0 only if
every invariant held.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from tqdm import tqdm

from deploy.local.launcher import Endpoints
from services.common.bus import Bus
from services.devtools.soak import checker
from services.devtools.soak.driver import Driver, Tally, Traders, kill_plan, list_markets
from services.devtools.soak.invariants import Check
from services.devtools.soak.stack import SERVICES, GroupPartition, Kill, Stack

QUIESCE_S = 60.0
"""Longest wait, after the traffic stops, for every service to catch up with the log."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.devtools.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the traffic (default 10)")
    parser.add_argument("--rate", type=float, default=100.0, help="actions offered per second (default 100)")
    parser.add_argument(
        "--kill-every", type=float, default=30.0, help="seconds between SIGKILLs (default 30)"
    )
    parser.add_argument("--traders", type=int, default=50, help="funded traders (default 50)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the kills, the traders and their actions")
    parser.add_argument("--no-infra-kills", action="store_true", help="do not kill the broker and Cassandra")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, endpoints: Endpoints | None = None) -> dict[str, Any]:
    """One soak: start, drive, kill, stop, check. Returns the report (also the JSON line)."""
    seconds = args.minutes * 60
    stack = Stack.start(endpoints)
    tally = Tally()
    traders = Traders(stack, args.traders, args.seed)
    try:
        stack.wait_ready()
        expiry_us = (time.time_ns() // 1000) + int(seconds * 0.5 * 1_000_000) + 20_000_000
        list_markets(stack, expiry_us)
        traders.fund(Bus(stack.settings))
        time.sleep(3)  # listings and deposits reach risk before the first order
        driver = Driver(stack, traders, tally, args.seed)
        plan = [(t, what) for t, what in kill_plan(seconds, args.kill_every, args.seed)
                if not (args.no_infra_kills and what in ("kafka", "cassandra"))]  # fmt: skip
        _drive(stack, driver, tally, plan, seconds=seconds, args=args)
        catch_up = _quiesce(stack)
    finally:
        stack.stop()
        traders.close()
    return _report(args, stack, tally, catch_up)


def _drive(
    stack: Stack,
    driver: Driver,
    tally: Tally,
    plan: list[tuple[float, str]],
    *,
    seconds: float,
    args: argparse.Namespace,
) -> None:
    stop = threading.Event()
    bar = tqdm(total=int(seconds), unit="s", desc="soak", disable=args.no_progress)
    start = time.monotonic()

    def tick() -> None:
        with tally.lock:
            bar.set_postfix(acked=len(tally.acknowledged), kills=len(tally.kills),
                            errors=len(tally.server_errors), refresh=False)  # fmt: skip

    traffic = threading.Thread(target=driver.offer, args=(args.rate, stop, tick), daemon=True)
    traffic.start()
    poison_every = max(args.kill_every / 2, 5.0)
    next_poison, n_poison = poison_every / 2, 0
    pending: list[tuple[Kill, dict[GroupPartition, int] | None]] = []
    try:
        while (now := time.monotonic() - start) < seconds:
            while plan and plan[0][0] <= now:
                _, target = plan.pop(0)
                backlog = stack.backlog(target) if target in SERVICES else None
                kill = (
                    stack.kill_infrastructure(target, now)
                    if target in ("kafka", "cassandra")
                    else stack.kill(target, now)
                )
                tally.kills.append(kill)
                pending.append((kill, backlog))
            if now >= next_poison:
                driver.inject_poison(n_poison)
                n_poison += 1
                next_poison += poison_every
            stack.revive_exited()
            pending = _measure_catch_up(stack, pending, start)
            bar.n = int(now)
            bar.refresh()
            time.sleep(0.5)
    finally:
        stop.set()
        traffic.join()
        bar.close()
        driver.close()
    for kill, backlog in pending:
        _wait_caught_up(stack, kill, backlog, start, QUIESCE_S)


def _measure_catch_up(
    stack: Stack, pending: list[tuple[Kill, dict[GroupPartition, int] | None]], start: float
) -> list[tuple[Kill, dict[GroupPartition, int] | None]]:
    left: list[tuple[Kill, dict[GroupPartition, int] | None]] = []
    for kill, backlog in pending:
        if backlog is None:
            kill.caught_up_after_s = kill.restarted_after_s
        elif stack.caught_up(kill.target, backlog):
            kill.caught_up_after_s = time.monotonic() - start - kill.at_s
        else:
            left.append((kill, backlog))
    return left


def _wait_caught_up(
    stack: Stack, kill: Kill, backlog: dict[GroupPartition, int] | None, start: float, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while backlog is not None and time.monotonic() < deadline:
        if stack.caught_up(kill.target, backlog):
            kill.caught_up_after_s = time.monotonic() - start - kill.at_s
            return
        time.sleep(0.5)


def _quiesce(stack: Stack) -> tuple[float, list[str]]:
    """Wait until every service has caught up with the log as it is when the traffic stopped;
    returns the seconds waited and the services that had not caught up by `QUIESCE_S`."""
    t0 = time.monotonic()
    backlogs = {s: b for s in SERVICES if (b := stack.backlog(s)) is not None}
    while backlogs and time.monotonic() - t0 < QUIESCE_S:
        stack.revive_exited()
        backlogs = {s: b for s, b in backlogs.items() if not stack.caught_up(s, b)}
        time.sleep(0.5)
    return time.monotonic() - t0, sorted(backlogs)


def _report(
    args: argparse.Namespace, stack: Stack, tally: Tally, quiesce: tuple[float, list[str]]
) -> dict[str, Any]:
    checks, facts = checker.log_checks(
        stack.settings, tally.acknowledged, tally.refused, tally.sent, tally.poison
    )
    checks.append(checker.read_model_check(stack.settings))
    checks.append(checker.metrics_check(stack.env))
    checks.append(Check("no server error to bad input", not tally.server_errors,
                        f"{len(tally.server_errors)}: {tally.server_errors[:3]}"))  # fmt: skip
    for check in checks:
        print(check.describe(), file=sys.stderr)
    kills: dict[str, int] = {}
    for kill in tally.kills:
        kills[kill.target] = kills.get(kill.target, 0) + 1
    caught = [k.caught_up_after_s for k in tally.kills if k.caught_up_after_s is not None]
    return {
        "bench": "soak", "minutes": args.minutes, "offered_per_s": args.rate, "seed": args.seed,
        "orders_sent": len(tally.sent), "orders_acknowledged": len(tally.acknowledged),
        "orders_in_log": len(facts.decided), "fills": len(facts.fills), "statuses": dict(tally.statuses),
        "unanswered": tally.unanswered, "dropped": tally.dropped,
        "markets_settled": sorted(facts.settled), "funding_rounds": facts.funding_rounds,
        "kills": {k: v for k, v in kills.items() if k not in ("kafka", "cassandra")},
        "broker_restarts": kills.get("kafka", 0), "cassandra_restarts": kills.get("cassandra", 0),
        "unplanned_exits": stack.unplanned_exits,
        "bad_inputs": {"sent": sum(tally.bad_sent.values()), "rejected": sum(tally.bad_rejected.values()),
                       "poison_injected": len(tally.poison), "by_kind": dict(tally.bad_sent)},
        "invariants": {c.name: c.ok for c in checks},
        "longest_catch_up_s": round(max(caught, default=0.0), 1),
        "quiesce_s": round(quiesce[0], 1), "not_caught_up": quiesce[1], "tag": stack.settings.topic_prefix,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    report = run(parse_args(argv))
    print(json.dumps(report))
    return 0 if all(report["invariants"].values()) else 1
