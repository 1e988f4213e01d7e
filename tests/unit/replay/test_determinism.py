"""The determinism check: a faithful recording passes; any injected divergence is found, precisely."""

from __future__ import annotations

from pathlib import Path

from msgspec import structs

from services.common.binding import to_avro
from services.common.records import MatcherCommand, OrderFilled, TradeLogEntry
from services.matcher.core.engine import MatchingEngine, log_entry
from services.replay.cli import main
from services.replay.determinism import check, first_difference
from services.replay.flows import realistic_flow
from services.replay.sources import write_container

SOURCE = "matcher.commands:0:{}"


def recorded_session(
    n: int = 1500,
) -> tuple[list[tuple[str, MatcherCommand]], list[TradeLogEntry], MatchingEngine]:
    """A realistic flow and the trade log the engine wrote for it, with topic positions."""
    commands = [(SOURCE.format(i), c) for i, c in enumerate(realistic_flow(n, seed=11))]
    engine = MatchingEngine()
    return commands, [log_entry(c, engine.apply(c), s) for s, c in commands], engine


def first_fill(entries: list[TradeLogEntry], after: int) -> tuple[int, int]:
    """(entry index, event index) of the first OrderFilled at or after entry `after`."""
    for i in range(after, len(entries)):
        for j, event in enumerate(entries[i].events):
            if isinstance(event, OrderFilled):
                return i, j
    raise AssertionError("the flow has no fill")


def test_a_faithful_recording_replays_to_the_same_entries_and_hash() -> None:
    # State: a recorded session (commands and the trade log the engine wrote).
    commands, entries, engine = recorded_session()

    # Action: check it.
    result = check(commands, entries)

    # Expectation: every entry equal, the same digests, and the live engine's state hash.
    assert result.ok, result.divergence
    assert result.entries == len(entries)
    assert result.recorded_digest == result.replayed_digest
    assert result.state_hashes == {"matcher.commands:0": engine.state_hash()}


def test_a_tampered_fee_is_reported_at_its_entry_and_field() -> None:
    # State: one fill's fee changed by one micro-USDC in the recording.
    commands, entries, _ = recorded_session()
    i, j = first_fill(entries, after=700)
    events = list(entries[i].events)
    fill = events[j]
    assert isinstance(fill, OrderFilled)
    events[j] = structs.replace(fill, fee=fill.fee + 1)
    entries[i] = structs.replace(entries[i], events=events)

    # Action: check it.
    result = check(commands, entries)

    # Expectation: the first divergence, exactly where it was injected.
    assert result.divergence is not None
    assert (result.divergence.index, result.divergence.path) == (i, f"events[{j}].fee")
    assert (result.divergence.recorded, result.divergence.replayed) == (fill.fee + 1, fill.fee)
    assert result.divergence.source == SOURCE.format(i)
    assert result.entries == i


def test_a_missing_entry_an_extra_entry_and_a_wrong_snapshot_hash_are_reported() -> None:
    commands, entries, _ = recorded_session(300)

    # A command whose entry the recording lacks: the next entry is compared with it and differs.
    dropped = check(commands, entries[:100] + entries[101:])
    assert dropped.divergence is not None and dropped.divergence.index == 100

    # A recording that ends early, and one with an entry no command produced.
    short = check(commands, entries[:-1])
    assert short.divergence is not None and short.divergence.path == "entry"
    extra = check(commands[:-1], entries)
    assert extra.divergence is not None and extra.divergence.recorded == entries[-1]

    # A recorded snapshot whose hash is not the replayed engine's at that offset.
    wrong = check(commands, entries, snapshots={"matcher.commands:0": {50: "0" * 32}})
    assert wrong.divergence is not None
    assert (wrong.divergence.index, wrong.divergence.path) == (49, "state_hash")


def test_first_difference_names_nested_fields() -> None:
    _, entries, _ = recorded_session(20)
    entry = entries[3]
    assert first_difference(entry, entry) is None
    assert first_difference(entry, structs.replace(entry, first_seq=99)) == (
        "first_seq",
        entry.first_seq,
        99,
    )
    shorter = structs.replace(entry, events=entry.events[:-1])
    assert first_difference(entry, shorter) == ("events (length)", len(entry.events), len(entry.events) - 1)


def test_the_cli_checks_files_and_exits_1_on_a_divergence(tmp_path: Path) -> None:
    # State: a commands file and its trade log (positions kept), and a tampered copy of the log.
    commands, entries, _ = recorded_session(400)
    write_container(
        tmp_path / "cmds.avro", "MatcherCommand", [to_avro(c) for _, c in commands], [s for s, _ in commands]
    )
    write_container(tmp_path / "log.avro", "TradeLogEntry", [to_avro(e) for e in entries])
    tampered = [structs.replace(e, ts_event=e.ts_event + 1) if k == 250 else e for k, e in enumerate(entries)]
    write_container(tmp_path / "bad.avro", "TradeLogEntry", [to_avro(e) for e in tampered])

    # Action / Expectation: the faithful log passes (exit 0), the tampered one fails (exit 1).
    files = ["check-determinism", "--commands", str(tmp_path / "cmds.avro"), "--trade-log"]
    assert main([*files, str(tmp_path / "log.avro")]) == 0
    assert main([*files, str(tmp_path / "bad.avro")]) == 1
