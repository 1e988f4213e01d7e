"""Offline replay: a commands file through the engine gives the same events as the engine in process."""

from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, reader, writer

from services.common.binding import to_avro
from services.common.schemas import load_current
from services.common.serde import without_logical_types
from services.matcher.core.engine import MatchingEngine
from services.replay.cli import main, read_commands
from services.replay.flows import realistic_flow


def test_sample_replays_to_byte_identical_event_files_and_matches_the_engine(tmp_path: Path) -> None:
    # State: a sample commands file.
    commands, first, second = tmp_path / "cmds.avro", tmp_path / "a.avro", tmp_path / "b.avro"
    assert main(["sample", "--commands", "2000", "--output", str(commands)]) == 0
    # Action: replay it twice.
    assert main(["engine", "--input", str(commands), "--output", str(first)]) == 0
    assert main(["engine", "--input", str(commands), "--output", str(second)]) == 0
    # Expectation: the same bytes both times, and the events the engine gives in process.
    assert first.read_bytes() == second.read_bytes()
    engine, flow = MatchingEngine(), realistic_flow(2000)
    expected = [to_avro(e) for c in flow for e in engine.apply(c).events]
    with first.open("rb") as fh:
        records: list[Any] = list(reader(fh, return_record_name=True, return_record_name_override=True))
    replayed = [event for r in records for _, event in r["events"]]
    assert replayed == expected
    assert len(records) == len(flow)  # one trade-log entry per command


def test_commands_file_keeps_every_field(tmp_path: Path) -> None:
    path = tmp_path / "cmds.avro"
    main(["sample", "--commands", "50", "--seed", "3", "--output", str(path)])
    assert [c for _, c in read_commands(path)] == realistic_flow(50, seed=3)


def test_a_file_written_with_another_schema_version_is_read_through_fastavro(tmp_path: Path) -> None:
    # State: commands written with an older MatcherCommand that carried one more field (what the
    # compiled codec, made for the current schema, cannot read).
    older = without_logical_types(load_current("MatcherCommand"))
    older = {**older, "fields": [*older["fields"], {"name": "retired", "type": "string", "default": ""}]}
    flow = realistic_flow(30, seed=5)
    path = tmp_path / "old.avro"
    with path.open("wb") as fh:
        writer(fh, parse_schema(older), [{**to_avro(c), "retired": "x"} for c in flow])
    # Action: read it.
    read = [command for _, command in read_commands(path)]
    # Expectation: resolved to the current schema, every command as it was.
    assert read == flow


@pytest.mark.parametrize("damage", ["not avro at all", "cut short"])
def test_an_unreadable_input_file_is_a_clear_error_not_a_traceback(
    tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # State: a commands file that is not one, or a real one missing its last bytes.
    path = tmp_path / "cmds.avro"
    if damage == "not avro at all":
        path.write_bytes(b"garbage")
    else:
        main(["sample", "--commands", "200", "--output", str(path)])
        path.write_bytes(path.read_bytes()[:-40])
    capsys.readouterr()
    # Action
    code = main(["engine", "--input", str(path), "--output", str(tmp_path / "log.avro")])
    # Expectation: exit 2 and a line naming the file.
    assert code == 2
    assert f"error: {path} is not an Avro container file of MatcherCommand records" in capsys.readouterr().err
