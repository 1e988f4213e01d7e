"""The determinism check: recorded commands through a fresh engine give the recorded trade log.

Each command goes through `MatchingEngine.apply` and `log_entry` with its log position as the
source — exactly what the matcher service does (`services/matcher/service.py: outputs`) — one
engine per input partition, as the service keeps them. Entry by entry, the replayed log must equal
the recorded one: same market, seq, source, command id, time and events, field for field. Where
the recording holds matcher snapshots, the replayed engine's `state_hash()` must also equal the
hash the service recorded at that offset. Pure: the caller reads the files or topics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from msgspec import Struct

from services.common.records import MatcherCommand, TradeLogEntry
from services.matcher.core.engine import MatchingEngine, log_entry
from services.replay.market_data import partition_of

_ENTRY_FIELDS = list(TradeLogEntry.__struct_fields__)


@dataclass(frozen=True)
class Divergence:
    """The first place the replayed log differs from the recorded one."""

    index: int
    """Position of the entry in the compared stream (0-based)."""
    source: str
    """The command's log position (or the recorded entry's, when no command is left)."""
    path: str
    """Which part differs: `events[3].fee`, `first_seq`, `entry` (one side has none), `state_hash`."""
    recorded: Any
    replayed: Any

    def describe(self) -> str:
        return (
            f"divergence at entry {self.index} (source {self.source}): {self.path}\n"
            f"  recorded: {self.recorded!r}\n  replayed: {self.replayed!r}"
        )


@dataclass
class DeterminismResult:
    """What the check compared, and the first divergence if any."""

    entries: int = 0
    events: int = 0
    snapshots_checked: int = 0
    divergence: Divergence | None = None
    state_hashes: dict[str, str] = field(default_factory=dict)
    """Final `state_hash()` of each partition's replayed engine."""
    recorded_digest: str = ""
    replayed_digest: str = ""
    """blake2b of the entries in order: equal digests, equal logs."""

    @property
    def ok(self) -> bool:
        return self.divergence is None

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "events": self.events,
            "snapshots_checked": self.snapshots_checked,
            "state_hashes": self.state_hashes,
            "recorded_digest": self.recorded_digest,
            "replayed_digest": self.replayed_digest,
            "divergence": None if self.divergence is None else self.divergence.describe(),
        }


def first_difference(recorded: Any, replayed: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first field (dotted path) where two records differ, and both values; None if equal."""
    if recorded == replayed:
        return None
    if type(recorded) is not type(replayed):
        return (path or "type", recorded, replayed)
    if isinstance(recorded, Struct):
        for name in recorded.__struct_fields__:
            found = first_difference(getattr(recorded, name), getattr(replayed, name), _join(path, name))
            if found is not None:
                return found
    if isinstance(recorded, list | tuple):
        for i, (a, b) in enumerate(zip(recorded, replayed, strict=False)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found is not None:
                return found
        return (f"{path} (length)", len(recorded), len(replayed))
    return (path, recorded, replayed)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def check(
    commands: Iterable[tuple[str, MatcherCommand]],
    recorded: Iterable[TradeLogEntry],
    *,
    engines: dict[str, MatchingEngine] | None = None,
    snapshots: dict[str, dict[int, str]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> DeterminismResult:
    """Replay `commands` (source, command) and compare with `recorded`, entry by entry.

    `engines` gives a starting engine per partition (`topic:partition`; from a snapshot), fresh
    otherwise. `snapshots` maps a partition to {next offset: recorded state hash}; the replayed
    engine is checked at each. Stops at the first divergence.
    """
    engines = dict(engines or {})
    snapshots = snapshots or {}
    result = DeterminismResult()
    recorded_hash, replayed_hash = hashlib.blake2b(digest_size=16), hashlib.blake2b(digest_size=16)
    expected: Iterator[TradeLogEntry] = iter(recorded)
    index = 0
    for index, (source, command) in enumerate(commands):
        partition = partition_of(source)
        engine = engines.get(partition)
        if engine is None:
            engine = engines[partition] = MatchingEngine()
        replayed = log_entry(command, engine.apply(command), source)
        original = next(expected, None)
        if original is None:
            result.divergence = Divergence(index, source, "entry", None, replayed)
            break
        recorded_hash.update(repr(original).encode())
        replayed_hash.update(repr(replayed).encode())
        if original != replayed:
            path, a, b = first_difference(original, replayed) or ("entry", original, replayed)
            result.divergence = Divergence(index, source, path, a, b)
            break
        result.entries += 1
        result.events += len(replayed.events)
        marks = snapshots.get(partition)
        if marks:
            offset = int(source.rsplit(":", 1)[1]) + 1
            hash_at = marks.get(offset)
            if hash_at is not None:
                result.snapshots_checked += 1
                if hash_at != engine.state_hash():
                    result.divergence = Divergence(index, source, "state_hash", hash_at, engine.state_hash())
                    break
        if progress is not None:
            progress(1)
    else:
        extra = next(expected, None)
        if extra is not None:
            result.divergence = Divergence(result.entries, extra.source, "entry", extra, None)
    for partition, engine in sorted(engines.items()):
        engine.validate()
        result.state_hashes[partition] = engine.state_hash()
    result.recorded_digest = recorded_hash.hexdigest()
    result.replayed_digest = replayed_hash.hexdigest()
    return result
