"""Ordered, idempotent schema migrations from `migrations/<store>/NNNN_name.(cql|sql)` files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class Migration:
    """One migration file: its id (the file stem) and its statements."""

    id: str
    statements: list[str]


def load_migrations(store: str, **placeholders: str) -> list[Migration]:
    """The migrations of `store`, in file-name order, with `{name}` placeholders filled in."""
    found = []
    for path in sorted((MIGRATIONS_DIR / store).glob("[0-9]*.*ql")):
        text = path.read_text().format(**placeholders)
        lines = [ln for ln in text.splitlines() if not ln.strip().startswith("--")]
        statements = [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
        found.append(Migration(path.stem, statements))
    return found


def apply_pending(
    migrations: list[Migration],
    applied: set[str],
    execute: Callable[[str], object],
    record: Callable[[str], object],
) -> list[str]:
    """Run every migration not in `applied`, recording each after its statements succeed."""
    done = []
    for migration in migrations:
        if migration.id in applied:
            continue
        for statement in migration.statements:
            execute(statement)
        record(migration.id)
        done.append(migration.id)
    return done
